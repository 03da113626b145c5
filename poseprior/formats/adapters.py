r"""Adapters between pose formats: flat vectors, joint layouts, hand conventions and priors.

An adapter changes a tensor's *format* (shape, joint order, hand convention, rotation
representation); it never changes which density a pose is measured against. Joints are always
matched **by name** (see :mod:`poseprior.formats.layouts`), never by position.

Conventions:

* Poses are axis-angle with shape :math:`(*, J, 3)`; flat poses are :math:`(*, 3J)` with the three
  components of a joint contiguous (``[j0.x, j0.y, j0.z, j1.x, ...]``), as in SMPL/AMASS files.
* Missing joints are never filled silently. :func:`to_layout` raises unless called with
  ``missing="zero"``, and :func:`joint_mask` tells which joints of the result really come from
  the input. The only implicit zeros are the two eye joints that :func:`smplx53_to_smplx` inserts:
  the 53-joint format has no eyes by definition, and SMPL-X's eyes at zero is its rest gaze.
* Hand poses are *flat-relative* (rotations from the flat, open hand; what ``smplx`` expects with
  ``flat_hand_mean=True``) or *mean-relative* (offsets from the MANO mean hand; what ``smplx``
  expects with its default ``flat_hand_mean=False``, where the model computes
  ``flat = hand_pose + hand_mean`` in axis-angle space). :func:`hand_relative_to_flat` and
  :func:`hand_flat_to_relative` convert between the two; the priors and the data loader use
  flat-relative hands (AMASS files store flat-relative hands).
* :func:`mirror_hand` reflects a hand pose across the body's sagittal plane (:math:`x \mapsto -x`
  in the SMPL rest frame, where the subject's left is :math:`+x`), which maps a left-hand pose to
  the right-hand pose that looks like its mirror image, and back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from .._rng import rand, randint
from ..errors import ShapeError
from .layouts import HAND_JOINT_NAMES, JointLayout, get_layout

if TYPE_CHECKING:
    from ..base import PosePrior

__all__ = [
    "flatten",
    "unflatten",
    "to_layout",
    "joint_mask",
    "smplx53_to_smplx",
    "smplx_to_smplx53",
    "smplh_to_smplx",
    "smplx_to_smplh",
    "hand_relative_to_flat",
    "hand_flat_to_relative",
    "mirror_hand",
    "mirror_pose",
    "symmetric",
    "to_prior",
]

logger = logging.getLogger(__name__)

Missing = Literal["error", "zero"]
_NUM_HAND_JOINTS = len(HAND_JOINT_NAMES)
# Layouts suggested when a pose has another joint count than the layout it was said to be in.
_HINT_LAYOUTS = (
    "smpl",
    "smplh",
    "smplx",
    "smplx53",
    "body",
    "hands",
    "body_hands",
    "left_hand",
    "right_hand",
)


def _check_tensor(x: object, where: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(x).__name__}; use torch.as_tensor(x)")
    return x


def _check_missing(missing: object, where: str) -> None:
    if missing not in ("error", "zero"):
        raise ValueError(f"{where}: missing must be 'error' or 'zero', got {missing!r}")


def _check_joints(x: Tensor, layout: JointLayout, where: str) -> None:
    """Checks ``x`` has shape (*, J, 3) for ``layout``, with a hint for the usual mistakes."""
    j = len(layout)
    shape = tuple(x.shape)
    if x.dim() >= 2 and shape[-1] == 3 and shape[-2] == j:
        return
    if x.dim() >= 3 and shape[-3:] == (j, 3, 3):
        hint = (
            "these look like rotation matrices: convert them with "
            "poseprior.formats.rotations.matrix_to_axis_angle"
        )
    elif x.dim() >= 1 and shape[-1] == 3 * j:
        hint = f"this looks like a flat pose: use poseprior.formats.adapters.unflatten(x, {layout.name!r})"
    elif x.dim() >= 2 and shape[-1] == 3:
        hint = (
            f"got {shape[-2]} joints but layout {layout.name!r} has {j}; "
            "pass the layout the pose is really in"
        )
        known = [n for n in _HINT_LAYOUTS if len(get_layout(n)) == shape[-2]]
        if known:
            hint += f" ({shape[-2]} joints: layout {' or '.join(map(repr, known))}?)"
    else:
        hint = f"poses must be axis-angle with shape (*, {j}, 3)"
    raise ShapeError(f"{where}: expected shape (*, {j}, 3) for layout {layout.name!r}, got {shape}: {hint}")


# ---------------------------------------------------------------------------------- flat poses
def flatten(x: Tensor) -> Tensor:
    r"""Flattens the joint and component axes of a pose.

    Arguments:
        x: Axis-angle poses with shape :math:`(*, J, 3)`.

    Returns:
        The same values with shape :math:`(*, 3J)`, the components of a joint contiguous.

    Example:
        >>> flatten(torch.zeros(2, 21, 3)).shape
        torch.Size([2, 63])
    """
    x = _check_tensor(x, "flatten")
    if x.dim() < 2 or x.shape[-1] != 3:
        raise ShapeError(
            f"flatten: expected axis-angle poses with shape (*, J, 3), got {tuple(x.shape)}; "
            "rotation matrices or 6D rotations must first be converted with "
            "poseprior.formats.rotations.convert"
        )
    return x.reshape(*x.shape[:-2], x.shape[-2] * 3)


def unflatten(x: Tensor, layout: str | JointLayout) -> Tensor:
    r"""Splits flat poses into joints, checking the width against ``layout``.

    Arguments:
        x: Flat axis-angle poses with shape :math:`(*, 3J)`.
        layout: The layout of the poses (a name or a :class:`JointLayout`) with :math:`J` joints.

    Returns:
        The same values with shape :math:`(*, J, 3)`.

    Example:
        >>> unflatten(torch.zeros(4, 63), "body").shape
        torch.Size([4, 21, 3])
    """
    x = _check_tensor(x, "unflatten")
    layout = get_layout(layout)
    j = len(layout)
    if x.dim() < 1 or x.shape[-1] != 3 * j:
        got = x.shape[-1] if x.dim() >= 1 else None
        hint = ""
        if got is not None and got % 3 == 0:
            hint = f" ({got // 3} joints)"
        raise ShapeError(
            f"unflatten: expected flat poses with shape (*, {3 * j}) for layout {layout.name!r} "
            f"({j} joints x 3), got {tuple(x.shape)}{hint}; pass the layout the poses are in"
        )
    return x.reshape(*x.shape[:-1], j, 3)


# ---------------------------------------------------------------------------------- layouts
def joint_mask(src: str | JointLayout, dst: str | JointLayout) -> Tensor:
    r"""Which joints of ``dst`` exist in ``src``.

    This is the record of a ``to_layout(x, src, dst, missing="zero")`` call: joints where the
    mask is ``False`` were filled with zeros, not taken from the data.

    Arguments:
        src: The source layout.
        dst: The target layout.

    Returns:
        A boolean tensor with shape :math:`(J_{dst},)`.

    Example:
        >>> joint_mask("smplh", "smplx")[22:25].tolist()
        [False, False, False]
    """
    src, dst = get_layout(src), get_layout(dst)
    have = set(src.joints)
    return torch.tensor([j in have for j in dst.joints], dtype=torch.bool)


def to_layout(
    x: Tensor,
    src: str | JointLayout,
    dst: str | JointLayout,
    *,
    missing: Missing = "error",
) -> Tensor:
    r"""Reorders and selects joints by name, from layout ``src`` to layout ``dst``.

    Joints of ``src`` absent from ``dst`` are dropped. Joints of ``dst`` absent from ``src`` raise
    a :class:`~poseprior.ShapeError` naming them, unless ``missing="zero"``: then they are set to
    zero (the identity rotation) and :func:`joint_mask` records which joints those are.

    The result is a new tensor; ``x`` is never modified. Gradients flow through the selected
    joints.

    Arguments:
        x: Axis-angle poses in layout ``src``, with shape :math:`(*, J_{src}, 3)`.
        src: The layout of ``x`` (a name such as ``"smplx"`` or a :class:`JointLayout`).
        dst: The layout wanted.
        missing: ``"error"`` (default) or ``"zero"`` to fill joints that ``src`` lacks with zeros.

    Returns:
        The poses in layout ``dst``, with shape :math:`(*, J_{dst}, 3)`.

    Example:
        >>> x = torch.zeros(8, 55, 3)
        >>> to_layout(x, "smplx", "body").shape
        torch.Size([8, 21, 3])
    """
    x = _check_tensor(x, "to_layout")
    _check_missing(missing, "to_layout")
    src, dst = get_layout(src), get_layout(dst)
    _check_joints(x, src, f"to_layout({src.name!r} -> {dst.name!r})")
    pos = {name: i for i, name in enumerate(src.joints)}
    absent = [j for j in dst.joints if j not in pos]
    if absent and missing == "error":
        raise ShapeError(
            f"to_layout: {len(absent)} joint(s) of layout {dst.name!r} are not in layout {src.name!r}: "
            f'{", ".join(absent)}; pass missing="zero" to fill them with zeros (identity rotations), '
            "or choose a target layout without them"
        )
    if not absent:
        idx = torch.tensor([pos[j] for j in dst.joints], dtype=torch.long, device=x.device)
        return x.index_select(-2, idx)
    logger.debug("to_layout(%s -> %s): zero-filled joints %s", src.name, dst.name, absent)
    have = [k for k, j in enumerate(dst.joints) if j in pos]
    out = x.new_zeros(*x.shape[:-2], len(dst), 3)
    if have:
        src_idx = torch.tensor([pos[dst.joints[k]] for k in have], dtype=torch.long, device=x.device)
        dst_idx = torch.tensor(have, dtype=torch.long, device=x.device)
        # index_copy is out-of-place: differentiable with respect to x, and x is untouched.
        out = out.index_copy(-2, dst_idx, x.index_select(-2, src_idx))
    return out


def _check_zero(x: Tensor, layout: str, joints: Sequence[str], flag: str, where: str) -> None:
    lay = get_layout(layout)
    idx = torch.tensor(lay.indices(joints), dtype=torch.long, device=x.device)
    part = x.detach().index_select(-2, idx).movedim(-2, 0).reshape(len(joints), -1).abs()
    if part.shape[1] == 0:  # an empty batch holds nothing to lose
        return
    largest = part.amax(dim=1).tolist()
    bad = [j for j, v in zip(joints, largest, strict=True) if v != 0]
    if bad:
        worst = max(largest)
        raise ShapeError(
            f"{where}: joint(s) {', '.join(bad)} are not zero (max |value| {worst:.3g} rad) and the "
            f"target layout has no place for them; pass {flag}=True to drop them anyway"
        )


def smplx53_to_smplx(x: Tensor) -> Tensor:
    r"""Converts the 53-joint format ``[global_orient, 21 body, jaw, 30 hand]`` to SMPL-X.

    The two eye joints (SMPL-X indices 23 and 24), which the 53-joint format does not have, are
    inserted as zeros (eyes looking straight ahead, SMPL-X's rest gaze).

    Arguments:
        x: Axis-angle poses with shape :math:`(*, 53, 3)`.

    Returns:
        Poses in the ``"smplx"`` layout, with shape :math:`(*, 55, 3)`.
    """
    return to_layout(x, "smplx53", "smplx", missing="zero")


def smplx_to_smplx53(x: Tensor, *, drop_nonzero_eyes: bool = False) -> Tensor:
    r"""Converts SMPL-X poses to the 53-joint format by removing the eye joints.

    Arguments:
        x: Axis-angle poses with shape :math:`(*, 55, 3)`.
        drop_nonzero_eyes: Drop the eyes even when they are not zero. By default non-zero eyes
            raise a :class:`~poseprior.ShapeError`, since dropping them loses data.

    Returns:
        Poses in the ``"smplx53"`` layout, with shape :math:`(*, 53, 3)`.
    """
    x = _check_tensor(x, "smplx_to_smplx53")
    _check_joints(x, get_layout("smplx"), "smplx_to_smplx53")
    if not drop_nonzero_eyes:
        _check_zero(x, "smplx", ("left_eye", "right_eye"), "drop_nonzero_eyes", "smplx_to_smplx53")
    return to_layout(x, "smplx", "smplx53")


def smplh_to_smplx(x: Tensor, *, missing: Missing = "error") -> Tensor:
    r"""Converts SMPL-H poses (52 joints) to SMPL-X (55 joints).

    SMPL-H has no jaw and no eyes, so by default this raises a :class:`~poseprior.ShapeError`;
    with ``missing="zero"`` those three joints are set to zero (closed mouth, straight gaze).

    Arguments:
        x: Axis-angle poses with shape :math:`(*, 52, 3)`.
        missing: ``"error"`` (default) or ``"zero"``.

    Returns:
        Poses in the ``"smplx"`` layout, with shape :math:`(*, 55, 3)`.
    """
    return to_layout(x, "smplh", "smplx", missing=missing)


def smplx_to_smplh(x: Tensor, *, drop_nonzero: bool = False) -> Tensor:
    r"""Converts SMPL-X poses (55 joints) to SMPL-H (52 joints), dropping the jaw and eyes.

    Arguments:
        x: Axis-angle poses with shape :math:`(*, 55, 3)`.
        drop_nonzero: Drop the jaw and eyes even when they are not zero. By default non-zero
            values raise a :class:`~poseprior.ShapeError`, since dropping them loses data.

    Returns:
        Poses in the ``"smplh"`` layout, with shape :math:`(*, 52, 3)`.
    """
    x = _check_tensor(x, "smplx_to_smplh")
    _check_joints(x, get_layout("smplx"), "smplx_to_smplh")
    if not drop_nonzero:
        _check_zero(x, "smplx", ("jaw", "left_eye", "right_eye"), "drop_nonzero", "smplx_to_smplh")
    return to_layout(x, "smplx", "smplh")


# ---------------------------------------------------------------------------------- hands
def _check_hand(x: object, where: str) -> Tensor:
    x = _check_tensor(x, where)
    if x.dim() < 2 or tuple(x.shape[-2:]) != (_NUM_HAND_JOINTS, 3):
        hint = ""
        if x.dim() >= 1 and x.shape[-1] == 3 * _NUM_HAND_JOINTS:
            hint = "; for a flat (*, 45) hand pose use x.reshape(*x.shape[:-1], 15, 3)"
        elif x.dim() >= 2 and x.shape[-1] == 3 and x.shape[-2] == 2 * _NUM_HAND_JOINTS:
            hint = "; for both hands (30 joints) call it on x[..., :15, :] and x[..., 15:, :] separately"
        raise ShapeError(
            f"{where}: expected one hand's pose with shape (*, 15, 3), got {tuple(x.shape)}{hint}"
        )
    return x


def _hand_mean(mean: Tensor | Sequence[float], x: Tensor, where: str) -> Tensor:
    m = torch.as_tensor(mean)
    if tuple(m.shape) == (3 * _NUM_HAND_JOINTS,):
        m = m.reshape(_NUM_HAND_JOINTS, 3)
    if tuple(m.shape) != (_NUM_HAND_JOINTS, 3):
        raise ShapeError(
            f"{where}: expected the hand mean with shape (15, 3) or (45,), got {tuple(m.shape)}; "
            "use the 'hands_meanl'/'hands_meanr' arrays of the MANO model (or smplx's "
            "left_hand_mean/right_hand_mean buffers)"
        )
    return m.to(dtype=x.dtype, device=x.device)


def hand_relative_to_flat(x: Tensor, mean: Tensor | Sequence[float]) -> Tensor:
    r"""Converts a mean-relative hand pose to a flat-relative one: ``x + mean``.

    A *mean-relative* pose is what ``smplx`` takes with ``flat_hand_mean=False`` (its default);
    the model then adds the MANO mean hand in axis-angle space. A *flat-relative* pose is the
    rotation from the flat, open hand (``flat_hand_mean=True``; AMASS and the priors).

    Arguments:
        x: One hand's mean-relative pose, with shape :math:`(*, 15, 3)`.
        mean: That hand's MANO mean pose, with shape :math:`(15, 3)` or :math:`(45,)`.

    Returns:
        The flat-relative pose, with shape :math:`(*, 15, 3)`.
    """
    x = _check_hand(x, "hand_relative_to_flat")
    return x + _hand_mean(mean, x, "hand_relative_to_flat")


def hand_flat_to_relative(x: Tensor, mean: Tensor | Sequence[float]) -> Tensor:
    r"""Converts a flat-relative hand pose to a mean-relative one: ``x - mean``.

    The inverse of :func:`hand_relative_to_flat`; the result is what ``smplx`` expects as
    ``left_hand_pose``/``right_hand_pose`` with ``flat_hand_mean=False``.

    Arguments:
        x: One hand's flat-relative pose, with shape :math:`(*, 15, 3)`.
        mean: That hand's MANO mean pose, with shape :math:`(15, 3)` or :math:`(45,)`.

    Returns:
        The mean-relative pose, with shape :math:`(*, 15, 3)`.
    """
    x = _check_hand(x, "hand_flat_to_relative")
    return x - _hand_mean(mean, x, "hand_flat_to_relative")


def mirror_hand(x: Tensor) -> Tensor:
    r"""Mirrors a hand pose across the sagittal plane: a left-hand pose becomes a right-hand pose.

    The reflection :math:`M = \mathrm{diag}(-1, 1, 1)` (:math:`x \mapsto -x` in the SMPL rest
    frame) maps a joint rotation :math:`R` to :math:`M R M`, i.e. an axis-angle vector
    :math:`(a, b, c)` to :math:`(a, -b, -c)`. Both hands list their 15 joints in the same MANO
    order, so no reordering is needed, and the map is its own inverse. Apply it to flat-relative
    poses (see :func:`hand_relative_to_flat`): the MANO left and right mean hands are only
    approximately mirror images of each other.

    Arguments:
        x: One hand's axis-angle pose, with shape :math:`(*, 15, 3)`.

    Returns:
        The mirrored pose for the other hand, with shape :math:`(*, 15, 3)`.

    Example:
        >>> mirror_hand(torch.tensor([[0.1, 0.2, 0.3]]).expand(15, 3))[0].tolist()
        [0.10000000149011612, -0.20000000298023224, -0.30000001192092896]
    """
    x = _check_hand(x, "mirror_hand")
    sign = torch.tensor([1.0, -1.0, -1.0], dtype=x.dtype, device=x.device)
    return x * sign


def symmetric(layout: str | JointLayout) -> bool:
    """Whether every ``left_`` joint of ``layout`` has its ``right_`` twin and the other way round
    (so :func:`mirror_pose` applies): the body, both hands, the full layouts; not one hand."""
    names = set(get_layout(layout).joints)
    sides = [n for n in names if n.startswith(("left_", "right_"))]
    swap = {"left_": "right_", "right_": "left_"}
    return bool(sides) and all(swap[n[: n.index("_") + 1]] + n[n.index("_") + 1 :] in names for n in sides)


def mirror_pose(x: Tensor, layout: str | JointLayout) -> Tensor:
    r"""Mirrors poses of ``layout`` across the sagittal plane: the left side becomes the right side.

    Every ``left_*`` joint swaps places with its ``right_*`` twin and every joint's rotation is
    reflected as in :func:`mirror_hand`, :math:`(a, b, c) \mapsto (a, -b, -c)`. The map is its own
    inverse. Used to augment training data with the mirror images of its poses.

    Arguments:
        x: Axis-angle poses with shape :math:`(*, J, 3)`.
        layout: Their layout; every ``left_`` joint must have its ``right_`` twin in it.

    Returns:
        The mirrored poses, a new tensor with shape :math:`(*, J, 3)`.
    """
    layout = get_layout(layout)
    names = list(layout.joints)
    twin = {"left_": "right_", "right_": "left_"}
    order = []
    for name in names:
        side = next((k for k in twin if name.startswith(k)), None)
        other = name if side is None else twin[side] + name[len(side):]
        if other not in names:
            raise ShapeError(f"mirror_pose: layout {layout.name!r} has {name!r} but not its twin {other!r}")
        order.append(names.index(other))
    if x.shape[-2:] != (len(names), 3):
        raise ShapeError(
            f"mirror_pose: expected poses with shape (*batch, {len(names)}, 3) for layout {layout.name!r}, "
            f"got {tuple(x.shape)}"
        )
    sign = torch.tensor([1.0, -1.0, -1.0], dtype=x.dtype, device=x.device)
    return x[..., order, :] * sign


def swap_limbs(
    x: Tensor, layout: str | JointLayout, p: float, generator: torch.Generator | None = None
) -> Tensor:
    r"""Training augmentation: each pose, with probability ``p``, takes one limb from another pose.

    For every pose of the batch, with probability ``p``, one limb (a chain of
    :meth:`~poseprior.formats.JointLayout.chains`, drawn uniformly) gets the rotations of the same
    limb of another pose of the batch (drawn uniformly). The result shows each limb in the poses
    the data holds, in combinations the data may not: a density trained on it generalizes to
    people who hold one limb differently from the training subjects (``docs/generalization.md``).

    Arguments:
        x: Axis-angle poses with shape :math:`(N, J, 3)`, ``J`` the joints of ``layout``.
        layout: Their layout.
        p: Probability in :math:`[0, 1]` that a pose gets a limb of another.
        generator: Drives every draw (on its device; see :mod:`poseprior._rng`).

    Returns:
        A new tensor with shape :math:`(N, J, 3)`; ``x`` is not modified.
    """
    layout = get_layout(layout)
    if x.ndim != 3 or x.shape[1:] != (len(layout), 3):
        raise ShapeError(
            f"swap_limbs: expected poses with shape (N, {len(layout)}, 3) for layout {layout.name!r}, "
            f"got {tuple(x.shape)}"
        )
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"swap_limbs: p must be a probability in [0, 1], got {p!r}")
    chains = layout.chains()
    n = x.shape[0]
    member = torch.zeros(len(chains), len(layout), dtype=torch.bool, device=x.device)
    for k, chain in enumerate(chains):
        member[k, list(chain)] = True
    swap = rand((n,), generator, x) < p
    limb = randint(len(chains), (n,), generator, x.device)
    # Another pose: an offset of 1 .. n-1 places (a batch of one keeps its pose).
    donor = (torch.arange(n, device=x.device) + 1 + randint(max(n - 1, 1), (n,), generator, x.device)) % n
    take = (member[limb] & swap[:, None])[:, :, None]
    return torch.where(take, x[donor], x)


# ---------------------------------------------------------------------------------- priors
def to_prior(
    x: Tensor,
    prior: PosePrior,
    *,
    layout: str | JointLayout = "smplx",
    rotation: str = "axis_angle",
    missing: Missing = "error",
) -> Tensor:
    r"""Converts poses to a prior's native input: axis-angle in the prior's layout.

    The rotations are converted with :func:`poseprior.formats.rotations.convert`, then the joints
    are selected by name with :func:`to_layout`. This changes the *format* only: a density over
    axis-angle vectors is not a density over matrices or 6D vectors (see the conventions docs).

    Arguments:
        x: Poses with shape :math:`(*, J, *R)`, :math:`R` being :math:`(3,)` for ``"axis_angle"``,
            :math:`(3, 3)` for ``"matrix"``, :math:`(6,)` for ``"rot6d"`` and :math:`(4,)` for
            ``"quaternion"``.
        prior: The prior (anything with a ``layout`` attribute, a :class:`JointLayout`).
        layout: The layout of ``x``, by default ``"smplx"`` (55 joints).
        rotation: The rotation representation of ``x``.
        missing: ``"error"`` (default) or ``"zero"`` for joints the prior needs that ``layout``
            lacks (see :func:`to_layout`).

    Returns:
        Axis-angle poses with shape :math:`(*, J_{prior}, 3)`.
    """
    from . import rotations

    x = _check_tensor(x, "to_prior")
    layout = get_layout(layout)
    target = getattr(prior, "layout", None)
    if not isinstance(target, JointLayout):
        raise TypeError(
            f"to_prior: expected a prior with a .layout JointLayout, got {type(prior).__name__}; "
            "pass a PosePrior instance"
        )
    if rotation != "axis_angle":
        x = rotations.convert(x, rotation, "axis_angle")  # type: ignore[arg-type]
    return to_layout(x, layout, target, missing=missing)
