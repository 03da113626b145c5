r"""Joint layouts as data: joint names and parents, for SMPL, SMPL-H, SMPL-X and MANO.

Every layout names its joints with the SMPL-X names, so that selecting and converting between
layouts is done by name, never by position. ``parents[i]`` is the index (in the same layout) of
joint ``i``'s parent, or ``-1`` when the joint is a root *of this layout* (the pelvis in a full
layout, or a joint whose parent lies outside a selection, e.g. the hips in ``"body"``).

Full layouts (the root, ``pelvis``, is joint 0 and carries the global orientation):

=============  ======  ====================================================================
name           joints  content
=============  ======  ====================================================================
``smpl``       24      22 body joints (pelvis + 21) + ``left_hand``, ``right_hand``
``smplh``      52      22 body joints + 2 x 15 finger joints
``smplx``      55      22 body joints + jaw, left_eye, right_eye + 2 x 15 finger joints
``smplx53``    53      ``smplx`` without the eyes: [global_orient, 21 body, jaw, 30 hand]
=============  ======  ====================================================================

Selections used by priors (the root is *not* included; its rotation is the global orientation):

=================  ======  ==========================================================
``body``           21      SMPL-X body joints 1..21 (= SMPL-H body = SMPL joints 1..21)
``left_hand``      15      MANO order: index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3
``right_hand``     15      same order, right hand
``hands``          30      left hand then right hand
``body_hands``     51      body, then both hands (SMPL-H without the root)
``mano_left``      15      alias of ``left_hand`` (the MANO layout)
``mano_right``     15      alias of ``right_hand``
=================  ======  ==========================================================
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import UnknownPriorError

__all__ = [
    "JointLayout",
    "LAYOUTS",
    "BODY_JOINT_NAMES",
    "HAND_JOINT_NAMES",
    "get_layout",
    "list_layouts",
]


@dataclass(frozen=True)
class JointLayout:
    r"""An ordered set of named joints with their kinematic parents.

    Arguments:
        name: The layout's registry name, e.g. ``"body"``.
        joints: The joint names, in order.
        parents: For every joint, the index of its parent in ``joints``, or -1 for a root.
    """

    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.joints) != len(self.parents):
            raise ValueError(
                f"layout {self.name!r}: {len(self.joints)} joint names but {len(self.parents)} parents"
            )
        if len(set(self.joints)) != len(self.joints):
            raise ValueError(f"layout {self.name!r}: joint names are not unique")
        for i, p in enumerate(self.parents):
            if not -1 <= p < i:
                raise ValueError(
                    f"layout {self.name!r}: joint {self.joints[i]!r} (index {i}) has parent {p}; "
                    "parents must come before their children (-1 for a root)"
                )

    def __len__(self) -> int:
        return len(self.joints)

    @property
    def num_joints(self) -> int:
        """The number of joints :math:`J`."""
        return len(self.joints)

    def index(self, joint: str) -> int:
        """The index of ``joint``; raises ``KeyError`` naming the closest joint names."""
        try:
            return self.joints.index(joint)
        except ValueError:
            close = difflib.get_close_matches(joint, self.joints, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownPriorError(
                f"joint {joint!r} is not in layout {self.name!r} ({self.num_joints} joints){hint}"
            ) from None

    def indices(self, joints: Iterable[str]) -> list[int]:
        """The indices of several joints (see :meth:`index`)."""
        return [self.index(j) for j in joints]

    def depths(self) -> tuple[int, ...]:
        """The depth of every joint in the tree (roots have depth 0)."""
        depth: list[int] = []
        for p in self.parents:
            depth.append(0 if p < 0 else depth[p] + 1)
        return tuple(depth)

    def chains(self) -> tuple[tuple[int, ...], ...]:
        """The limbs: the non-branching chains of the tree, as tuples of joint indices, root end first.

        A joint starts a new chain when it is a root or its parent has more (or fewer) than one
        child; otherwise it continues its parent's. For the body: each leg (hip to foot), the
        spine (spine1 to spine3), neck and head, each arm (collar to wrist); for a hand, each finger.
        """
        children = [0] * len(self.parents)
        for p in self.parents:
            if p >= 0:
                children[p] += 1
        chain_of: list[int] = []
        chains: list[list[int]] = []
        for j, p in enumerate(self.parents):
            if p < 0 or children[p] != 1:
                chain_of.append(len(chains))
                chains.append([j])
            else:
                chain_of.append(chain_of[p])
                chains[chain_of[p]].append(j)
        return tuple(tuple(c) for c in chains)

    def select(self, joints: Sequence[str], name: str) -> JointLayout:
        """A sub-layout of ``joints`` (in the given order); parents outside it become -1."""
        idx = self.indices(joints)
        pos = {j: k for k, j in enumerate(idx)}
        parents = []
        for k, j in enumerate(idx):
            p = self.parents[j]
            # Walk up until an ancestor inside the selection is found, or none is.
            while p >= 0 and p not in pos:
                p = self.parents[p]
            parents.append(pos[p] if p >= 0 and pos[p] < k else -1)
        return JointLayout(name, tuple(self.joints[j] for j in idx), tuple(parents))


BODY_JOINT_NAMES: tuple[str, ...] = (
    "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip
"""The 21 body joints of SMPL, SMPL-H and SMPL-X after the pelvis, in model order."""

_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")

HAND_JOINT_NAMES: tuple[str, ...] = tuple(f"{f}{k}" for f in _FINGERS for k in (1, 2, 3))
"""The 15 finger joints of one hand in MANO / SMPL-H / SMPL-X order, without the side prefix."""


def _hand(side: str, wrist: int, start: int) -> tuple[list[str], list[int]]:
    names = [f"{side}_{j}" for j in HAND_JOINT_NAMES]
    parents = []
    for f in range(5):
        parents += [wrist, start + 3 * f, start + 3 * f + 1]
    return names, parents


def _full(name: str, extra: list[tuple[str, int]], hands: bool) -> JointLayout:
    names = ["pelvis", *BODY_JOINT_NAMES]
    parents = list(_BODY_PARENTS)
    for joint, parent in extra:
        names.append(joint)
        parents.append(parent)
    if hands:
        for side, wrist in (("left", 20), ("right", 21)):
            n, p = _hand(side, wrist, len(names))
            names += n
            parents += p
    return JointLayout(name, tuple(names), tuple(parents))


SMPL = _full("smpl", [("left_hand", 20), ("right_hand", 21)], hands=False)
SMPLH = _full("smplh", [], hands=True)
SMPLX = _full("smplx", [("jaw", 15), ("left_eye", 15), ("right_eye", 15)], hands=True)
SMPLX53 = _full("smplx53", [("jaw", 15)], hands=True)

_LEFT = tuple(f"left_{j}" for j in HAND_JOINT_NAMES)
_RIGHT = tuple(f"right_{j}" for j in HAND_JOINT_NAMES)

LAYOUTS: dict[str, JointLayout] = {
    layout.name: layout
    for layout in (
        SMPL,
        SMPLH,
        SMPLX,
        SMPLX53,
        SMPLX.select(BODY_JOINT_NAMES, "body"),
        SMPLX.select(_LEFT, "left_hand"),
        SMPLX.select(_RIGHT, "right_hand"),
        SMPLX.select(_LEFT + _RIGHT, "hands"),
        SMPLX.select(BODY_JOINT_NAMES + _LEFT + _RIGHT, "body_hands"),
        SMPLX.select(_LEFT, "mano_left"),
        SMPLX.select(_RIGHT, "mano_right"),
    )
}
"""Every named layout, by name."""


def list_layouts() -> list[str]:
    """The names of the known layouts."""
    return sorted(LAYOUTS)


def get_layout(layout: str | JointLayout) -> JointLayout:
    """The layout of that name (a :class:`JointLayout` is returned unchanged)."""
    if isinstance(layout, JointLayout):
        return layout
    try:
        return LAYOUTS[layout]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(layout), LAYOUTS, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownPriorError(
            f"unknown joint layout {layout!r}; known layouts: {', '.join(list_layouts())}.{hint}"
        ) from None
