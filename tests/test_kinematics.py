"""Forward kinematics on the built-in skeleton: rest geometry, sign conventions, gradients, shapes."""

from __future__ import annotations

import pytest
import torch

from poseprior.formats.layouts import BODY_JOINT_NAMES
from poseprior.formats.rotations import axis_angle_to_matrix, random_axis_angle
from poseprior.kinematics import SKELETON_JOINTS, SKELETON_PARENTS, forward_kinematics, rest_joints

J = {name: i for i, name in enumerate(SKELETON_JOINTS)}  # index among the 22 skeleton joints
B = {name: i for i, name in enumerate(BODY_JOINT_NAMES)}  # index in a (21, 3) body pose


def test_skeleton_is_pelvis_plus_body_joints() -> None:
    assert SKELETON_JOINTS == ("pelvis", *BODY_JOINT_NAMES)
    assert SKELETON_PARENTS[0] == -1
    assert all(0 <= SKELETON_PARENTS[j] < j for j in range(1, 22))


def test_rest_bone_lengths_positive_and_symmetric(dtype: torch.dtype) -> None:
    rest = rest_joints(dtype)
    assert rest.shape == (22, 3) and rest.dtype == dtype
    lengths = {
        SKELETON_JOINTS[j]: float(torch.linalg.vector_norm(rest[j] - rest[SKELETON_PARENTS[j]]))
        for j in range(1, 22)
    }
    assert min(lengths.values()) > 0.02  # every bone has a real length (metres)
    mirror = torch.tensor([-1.0, 1.0, 1.0], dtype=dtype)
    pairs = [n for n in SKELETON_JOINTS if n.startswith("left_")]
    assert len(pairs) == 8
    for left in pairs:
        right = "right_" + left[len("left_") :]
        assert lengths[left] == pytest.approx(lengths[right], abs=1e-9)
        torch.testing.assert_close(rest[J[right]], rest[J[left]] * mirror)
        assert rest[J[left], 0] > 0  # the subject's left is +x
    for mid in ("pelvis", "spine1", "spine2", "spine3", "neck", "head"):
        assert float(rest[J[mid], 0]) == 0.0


def test_t_pose_directions(dtype: torch.dtype) -> None:
    rest = rest_joints(dtype)
    assert rest[J["left_ankle"], 1] < rest[J["left_knee"], 1] < rest[J["left_hip"], 1]  # legs along -y
    assert rest[J["left_wrist"], 0] > rest[J["left_elbow"], 0] > rest[J["left_shoulder"], 0]  # arms along +-x
    assert rest[J["right_wrist"], 0] < rest[J["right_elbow"], 0] < rest[J["right_shoulder"], 0]
    assert rest[J["head"], 1] > rest[J["neck"], 1] > rest[J["spine3"], 1] > 0  # torso along +y
    assert rest[J["left_foot"], 2] > rest[J["left_ankle"], 2]  # feet point forward (+z)


def test_zero_pose_gives_rest(dtype: torch.dtype) -> None:
    torch.testing.assert_close(forward_kinematics(torch.zeros(21, 3, dtype=dtype)), rest_joints(dtype))


@pytest.mark.parametrize("side", ["left", "right"])
def test_positive_x_knee_rotation_moves_ankle_backwards(side: str, dtype: torch.dtype) -> None:
    pose = torch.zeros(21, 3, dtype=dtype)
    pose[B[f"{side}_knee"], 0] = 0.8  # knee flexion: +x, as in the CMU/AMASS data
    out, rest = forward_kinematics(pose), rest_joints(dtype)
    torch.testing.assert_close(out[J[f"{side}_knee"]], rest[J[f"{side}_knee"]])  # the knee itself stays
    assert out[J[f"{side}_ankle"], 2] < rest[J[f"{side}_ankle"], 2] - 0.2  # the shin swings back (-z)
    assert out[J[f"{side}_ankle"], 1] > rest[J[f"{side}_ankle"], 1]  # and up
    other = "right" if side == "left" else "left"
    torch.testing.assert_close(out[J[f"{other}_ankle"]], rest[J[f"{other}_ankle"]])


def test_negative_x_hip_rotation_lifts_thigh_forward(dtype: torch.dtype) -> None:
    pose = torch.zeros(21, 3, dtype=dtype)
    pose[B["left_hip"], 0] = -0.8  # hip flexion is -x in the data
    out = forward_kinematics(pose)
    assert out[J["left_knee"], 2] > 0.2


def test_bone_lengths_preserved_and_root_is_rigid(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    pose = 0.4 * torch.randn(6, 21, 3, generator=gen, dtype=dtype)
    root = random_axis_angle(6, generator=gen, dtype=dtype)
    trans = torch.randn(6, 3, generator=gen, dtype=dtype)
    local = forward_kinematics(pose)
    world = forward_kinematics(pose, root, trans)
    expected = local @ axis_angle_to_matrix(root).transpose(-1, -2) + trans.unsqueeze(-2)
    torch.testing.assert_close(world, expected)
    parents = list(SKELETON_PARENTS[1:])
    rest = rest_joints(dtype)
    torch.testing.assert_close(
        torch.linalg.vector_norm(world[:, 1:] - world[:, parents], dim=-1),
        torch.linalg.vector_norm(rest[1:] - rest[parents], dim=-1).expand(6, -1),
    )


def test_differentiable_with_finite_gradients_at_zero_pose() -> None:
    pose = torch.zeros(2, 21, 3, dtype=torch.float64, requires_grad=True)
    root = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    trans = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    out = forward_kinematics(pose, root, trans)
    grads = torch.autograd.grad(out.pow(2).sum() + out.sum(), [pose, root, trans])
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert float(grads[0].abs().sum()) > 0 and float(grads[1].abs().sum()) > 0
    assert torch.autograd.gradcheck(lambda p, r, t: forward_kinematics(p, r, t), (pose, root, trans))


@pytest.mark.parametrize("batch", [(), (1,), (4,), (2, 3)])
def test_batch_shapes(batch: tuple[int, ...], dtype: torch.dtype) -> None:
    pose = torch.zeros(*batch, 21, 3, dtype=dtype)
    assert forward_kinematics(pose).shape == (*batch, 22, 3)
    root, trans = torch.zeros(*batch, 3, dtype=dtype), torch.ones(*batch, 3, dtype=dtype)
    out = forward_kinematics(pose, root, trans)
    assert out.shape == (*batch, 22, 3) and out.dtype == dtype
    torch.testing.assert_close(out[..., 0, :], trans)


def test_batched_equals_one_at_a_time(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    pose = 0.5 * torch.randn(5, 21, 3, generator=gen, dtype=dtype)
    root = 0.5 * torch.randn(5, 3, generator=gen, dtype=dtype)
    together = forward_kinematics(pose, root)
    for i in range(5):
        torch.testing.assert_close(together[i], forward_kinematics(pose[i], root[i]))


def test_wrong_shape_raises() -> None:
    with pytest.raises(ValueError, match=r"expected body_pose with shape \(\*, 21, 3\).*got \(2, 22, 3\)"):
        forward_kinematics(torch.zeros(2, 22, 3))
    with pytest.raises(ValueError, match=r"\(\*, 21, 3\).*got \(63,\)"):
        forward_kinematics(torch.zeros(63))
