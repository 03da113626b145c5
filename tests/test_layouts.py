"""Invariants of the joint layouts (names, parents, relations between the SMPL-family layouts)."""

from __future__ import annotations

import pytest

from poseprior.errors import UnknownPriorError
from poseprior.formats.layouts import (
    BODY_JOINT_NAMES,
    HAND_JOINT_NAMES,
    LAYOUTS,
    JointLayout,
    get_layout,
    list_layouts,
)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_names_unique_and_parents_precede_children(name: str) -> None:
    layout = LAYOUTS[name]
    assert layout.name == name
    assert len(set(layout.joints)) == len(layout.joints)
    assert len(layout.parents) == len(layout.joints)
    for i, p in enumerate(layout.parents):
        assert -1 <= p < i, (name, layout.joints[i], p)


@pytest.mark.parametrize(
    ("name", "count"),
    [("smpl", 24), ("smplh", 52), ("smplx", 55), ("smplx53", 53), ("body", 21), ("left_hand", 15),
     ("right_hand", 15), ("hands", 30), ("body_hands", 51), ("mano_left", 15), ("mano_right", 15)],
)  # fmt: skip
def test_joint_counts(name: str, count: int) -> None:
    assert len(get_layout(name)) == count
    assert get_layout(name).num_joints == count


def test_full_layouts_have_pelvis_root_and_one_root() -> None:
    for name in ("smpl", "smplh", "smplx", "smplx53"):
        layout = LAYOUTS[name]
        assert layout.joints[0] == "pelvis"
        assert layout.parents.count(-1) == 1


@pytest.mark.parametrize("name", ["smplh", "smplx", "smplx53"])
def test_body_is_first_21_smpl_body_joints(name: str) -> None:
    smpl = LAYOUTS["smpl"]
    layout = LAYOUTS[name]
    assert layout.joints[1:22] == smpl.joints[1:22] == BODY_JOINT_NAMES
    # Same kinematic tree over the body.
    assert layout.parents[:22] == smpl.parents[:22]


def test_smplx_order_and_face_joints() -> None:
    smplx = LAYOUTS["smplx"]
    assert smplx.joints[22:25] == ("jaw", "left_eye", "right_eye")
    assert all(smplx.joints[smplx.parents[i]] == "head" for i in (22, 23, 24))
    assert LAYOUTS["smplx53"].joints == smplx.joints[:23] + smplx.joints[25:]
    assert LAYOUTS["smplh"].joints == smplx.joints[:22] + smplx.joints[25:]


@pytest.mark.parametrize("side", ["left", "right"])
def test_mano_layouts(side: str) -> None:
    mano = get_layout(f"mano_{side}")
    hand = get_layout(f"{side}_hand")
    assert len(mano) == 15
    assert mano.joints == hand.joints == tuple(f"{side}_{j}" for j in HAND_JOINT_NAMES)
    assert mano.parents == hand.parents
    # Each finger is a chain of three joints attached to the (excluded) wrist.
    assert mano.parents == (-1, 0, 1) + (-1, 3, 4) + (-1, 6, 7) + (-1, 9, 10) + (-1, 12, 13)
    assert HAND_JOINT_NAMES[:3] == ("index1", "index2", "index3")
    assert HAND_JOINT_NAMES[-3:] == ("thumb1", "thumb2", "thumb3")


def test_body_layout_parents() -> None:
    body = get_layout("body")
    assert body.joints == BODY_JOINT_NAMES
    roots = [body.joints[i] for i, p in enumerate(body.parents) if p == -1]
    assert roots == ["left_hip", "right_hip", "spine1"]
    assert body.joints[body.parents[body.index("left_knee")]] == "left_hip"
    assert body.joints[body.parents[body.index("neck")]] == "spine3"
    assert body.joints[body.parents[body.index("right_wrist")]] == "right_elbow"
    # spine1, spine2, spine3, collar, shoulder, elbow, wrist
    assert body.depths()[body.index("left_wrist")] == 6


def test_combined_layouts_are_concatenations() -> None:
    assert get_layout("hands").joints == get_layout("left_hand").joints + get_layout("right_hand").joints
    assert get_layout("body_hands").joints == get_layout("body").joints + get_layout("hands").joints
    assert get_layout("body_hands").joints == LAYOUTS["smplh"].joints[1:]
    hands = get_layout("hands")
    # The right hand's finger chains point into the right half of the layout.
    assert hands.parents[15:] == tuple(p if p < 0 else p + 15 for p in hands.parents[:15])


def test_get_layout_returns_layouts_unchanged_and_lists() -> None:
    body = get_layout("body")
    assert get_layout(body) is body
    assert list_layouts() == sorted(LAYOUTS)


def test_get_layout_unknown_name_suggests() -> None:
    with pytest.raises(UnknownPriorError, match=r"unknown joint layout 'smlpx'.*Did you mean 'smplx'"):
        get_layout("smlpx")
    with pytest.raises(KeyError, match="known layouts: body"):
        get_layout("nothing_like_it")


def test_index_of_absent_joint_raises() -> None:
    with pytest.raises(UnknownPriorError, match=r"joint 'jaw' is not in layout 'smplh'"):
        LAYOUTS["smplh"].index("jaw")
    with pytest.raises(KeyError, match=r"did you mean 'left_hip'"):
        get_layout("body").index("left_hipp")


def test_select_with_absent_joint_raises() -> None:
    with pytest.raises(UnknownPriorError, match=r"joint 'left_eye' is not in layout 'smplh'"):
        LAYOUTS["smplh"].select(["pelvis", "left_eye"], "broken")


def test_select_keeps_parents_inside_selection() -> None:
    sub = LAYOUTS["smplx"].select(["left_hip", "left_knee", "left_foot"], "leg")
    # left_foot's parent (left_ankle) is not selected: it attaches to left_knee, its nearest
    # selected ancestor.
    assert sub.parents == (-1, 0, 1)
    assert sub.joints == ("left_hip", "left_knee", "left_foot")


def test_layout_constructor_validates() -> None:
    with pytest.raises(ValueError, match="parents must come before their children"):
        JointLayout("bad", ("a", "b"), (1, -1))
    with pytest.raises(ValueError, match="joint names are not unique"):
        JointLayout("bad", ("a", "a"), (-1, 0))
    with pytest.raises(ValueError, match="2 joint names but 1 parents"):
        JointLayout("bad", ("a", "b"), (-1,))


def test_chains_are_the_limbs_and_cover_every_joint_once() -> None:
    body = LAYOUTS["body"]
    named = [[body.joints[j] for j in c] for c in body.chains()]
    assert named == [
        ["left_hip", "left_knee", "left_ankle", "left_foot"],
        ["right_hip", "right_knee", "right_ankle", "right_foot"],
        ["spine1", "spine2", "spine3"],
        ["neck", "head"],
        ["left_collar", "left_shoulder", "left_elbow", "left_wrist"],
        ["right_collar", "right_shoulder", "right_elbow", "right_wrist"],
    ]
    for name in sorted(LAYOUTS):
        layout = LAYOUTS[name]
        flat = sorted(j for c in layout.chains() for j in c)
        assert flat == list(range(len(layout))), name
        for chain in layout.chains():  # each link's parent is the previous joint of its chain
            assert all(layout.parents[b] == a for a, b in zip(chain, chain[1:], strict=False)), name
    hand = LAYOUTS["mano_left"]
    first = [hand.joints[j] for j in hand.chains()[0]]
    assert first == ["left_index1", "left_index2", "left_index3"]
    assert len(hand.chains()) == 5
