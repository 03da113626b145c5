"""fit_to_joints and the body models: recovery, the prior's effect on real data, isolation, smplx, errors."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import poseprior
from poseprior.amass import PoseData, load_split
from poseprior.data import sample_path
from poseprior.errors import ShapeError, ValueCheckError
from poseprior.fitting import (
    SMPLXFK,
    BodyModel,
    FitResult,
    SkeletonFK,
    fit_to_joints,
    mpjpe,
    pa_mpjpe,
    pck,
    procrustes_align,
)
from poseprior.formats.layouts import LAYOUTS
from poseprior.kinematics import SKELETON_JOINTS, forward_kinematics, rest_joints

LEFT_LEG = ("left_hip", "left_knee", "left_ankle", "left_foot")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def train() -> PoseData:
    return load_split(sample_path(), "train")


@pytest.fixture(scope="module")
def val() -> PoseData:
    return load_split(sample_path(), "val")


def val_frames(val: PoseData, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    idx = torch.linspace(0, len(val) - 1, n).round().long()
    return val.poses_for("body")[idx].double(), val.root_orient[idx].double(), val.trans[idx].double()


def hidden_mask(names: tuple[str, ...]) -> torch.Tensor:
    return torch.tensor([j in names for j in SKELETON_JOINTS])


# ---------------------------------------------------------------------------------- recovery
def test_no_prior_recovers_pose_from_clean_joints(val: PoseData) -> None:
    pose, root, trans = val_frames(val, 16)
    observed = forward_kinematics(pose, root, trans)
    res = fit_to_joints(observed, None, steps=250)
    rest_error = mpjpe(forward_kinematics(torch.zeros_like(pose), root, trans), observed)
    assert rest_error > 0.1  # the rest pose is far off: recovery is not trivial
    assert mpjpe(res.joints, observed) < 0.003  # metres
    torch.testing.assert_close(res.joints, forward_kinematics(res.body_pose, res.root_orient, res.trans))
    assert res.body_pose.shape == (16, 21, 3)
    assert res.root_orient.shape == (16, 3) and res.trans.shape == (16, 3)
    assert res.history[-1]["loss"] < res.history[0]["loss"] and res.history[-1]["prior"] == 0.0


def test_root_is_estimated_for_any_orientation(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    pose = 0.2 * torch.randn(8, 21, 3, generator=gen, dtype=dtype)
    root = poseprior.formats.rotations.random_axis_angle(8, generator=gen, dtype=dtype)
    observed = forward_kinematics(pose, root, torch.randn(8, 3, generator=gen, dtype=dtype))
    res = fit_to_joints(observed, None, steps=150)
    assert res.joints.dtype == dtype
    assert mpjpe(res.joints, observed) < 0.005


def test_adam_optimizer_also_fits(val: PoseData) -> None:
    pose, root, trans = val_frames(val, 8)
    observed = forward_kinematics(pose, root, trans)
    res = fit_to_joints(observed, None, optimizer="adam", steps=200)
    assert len(res.history) == 200
    assert mpjpe(res.joints, observed) < 0.02  # from > 0.1 m at the rest pose


def test_fixed_root_stays_fixed(val: PoseData) -> None:
    pose, root, trans = val_frames(val, 4)
    observed = forward_kinematics(pose, root, trans)
    res = fit_to_joints(observed, None, fit_root=False, root_orient=root, trans=trans, steps=100)
    torch.testing.assert_close(res.root_orient, root)
    torch.testing.assert_close(res.trans, trans)
    assert mpjpe(res.joints, observed) < 0.005


def test_prior_beats_no_prior_on_hidden_joints(train: PoseData, val: PoseData) -> None:
    # Real CMU val poses, a hidden left leg and 10 mm noise: the per-frame improvement of the
    # hidden-joint error must be significant (paired t statistic), not a lucky average.
    pose, root, trans = val_frames(val, 128)
    truth = forward_kinematics(pose, root, trans)
    gen = torch.Generator().manual_seed(0)
    observed = truth + 0.01 * torch.randn(truth.shape, generator=gen, dtype=truth.dtype)
    hidden = hidden_mask(LEFT_LEG)

    def hidden_error(prior: poseprior.PosePrior | None) -> torch.Tensor:
        res = fit_to_joints(observed, prior, visible=~hidden)
        return torch.linalg.vector_norm(res.joints - truth, dim=-1)[:, hidden].mean(-1)

    base = hidden_error(None)
    x = train.poses_for("body").double()
    for covariance, t_min in (("full", 4.0), ("diagonal", 2.0)):
        prior = poseprior.create("gaussian", covariance=covariance).double().fit(x)
        gain = base - hidden_error(prior)
        t = float(gain.mean() / (gain.std() / math.sqrt(len(gain))))
        assert float(gain.mean()) > 0.003, covariance  # metres
        assert t > t_min, (covariance, t)


# ---------------------------------------------------------------------------------- isolation
def test_no_gradients_or_updates_reach_the_prior_and_inputs_are_untouched(train: PoseData) -> None:
    prior = poseprior.create("gaussian").double().fit(train.poses_for("body").double())
    prior.train()  # the fitter evaluates in eval mode and restores this
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    observed = forward_kinematics(0.3 * torch.randn(3, 21, 3, generator=gen, dtype=torch.float64))
    observed[0, 5] = float("nan")  # a hidden joint may hold NaN
    visible = torch.ones(3, 22, dtype=torch.bool)
    visible[0, 5] = False
    init = torch.zeros(21, 3, dtype=torch.float64)
    copies = [observed.clone(), visible.clone(), init.clone()]
    res = fit_to_joints(observed, prior, visible=visible, init=init, steps=20)
    assert all(p.grad is None for p in prior.parameters())
    assert all(p.requires_grad for p in prior.parameters())
    assert prior.training
    for k, v in prior.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    torch.testing.assert_close(observed, copies[0], equal_nan=True, rtol=0, atol=0)
    assert torch.equal(visible, copies[1]) and torch.equal(init, copies[2])
    assert bool(torch.isfinite(res.body_pose).all()) and not res.body_pose.requires_grad
    assert res.history[-1]["prior"] != 0.0


def test_warm_start_from_a_fit_result(val: PoseData) -> None:
    pose, root, trans = val_frames(val, 4)
    observed = forward_kinematics(pose, root, trans)
    first = fit_to_joints(observed, None, steps=40)
    again = fit_to_joints(observed, None, init=first, steps=0)
    torch.testing.assert_close(again.joints, first.joints)
    assert isinstance(again, FitResult) and again.history == []


def test_works_with_every_body_prior_interface(train: PoseData) -> None:
    # The fitter uses only the PosePrior interface: a float32 diagonal prior on float64 joints.
    prior = poseprior.create("gaussian", covariance="diagonal").fit(train.poses_for("body"))
    observed = forward_kinematics(torch.zeros(2, 21, 3, dtype=torch.float64))
    res = fit_to_joints(observed, prior, steps=10)
    assert res.body_pose.dtype == torch.float64
    assert isinstance(SkeletonFK(), BodyModel)


# ---------------------------------------------------------------------------------- smplx
def write_synthetic_smplx(folder: Path, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A random but valid SMPL-X model file (the 13 keys smplx reads; 10,475 vertices).

    Vertex ``j < 55`` is placed at joint ``j`` and ``J_regressor`` picks it, so the rest joints are
    known: the 22 body joints are the built-in skeleton lifted by 0.3 m. 20 shape components keep
    the file small (smplx then warns, which SMPLXFK turns into a Python warning).
    """
    rng = np.random.default_rng(seed)
    v, n_faces, n_lmk = 10475, 64, 8
    parents = np.array(LAYOUTS["smplx"].parents)
    parents[0] = 0
    joints = np.zeros((55, 3), np.float32)
    joints[:22] = rest_joints().numpy() + np.array([0.0, 0.3, 0.0], np.float32)
    for j in range(22, 55):
        joints[j] = joints[parents[j]] + rng.normal(0, 0.03, 3)
    vertices = rng.normal(0, 0.3, (v, 3)).astype(np.float32)
    vertices[:55] = joints
    regressor = np.zeros((55, v), np.float32)
    regressor[np.arange(55), np.arange(55)] = 1
    weights = np.zeros((v, 55), np.float32)
    weights[np.arange(v), rng.integers(0, 55, v)] = 1
    path = folder / "SMPLX_NEUTRAL.npz"
    np.savez(
        path,
        v_template=vertices,
        f=rng.integers(0, v, (n_faces, 3)),
        shapedirs=rng.standard_normal((v, 3, 20), dtype=np.float32) * 0.01,
        posedirs=rng.standard_normal((v, 3, 486), dtype=np.float32) * 1e-3,
        J_regressor=regressor,
        weights=weights,
        kintree_table=np.stack([parents, np.arange(55)]),
        hands_componentsl=np.eye(45, dtype=np.float32),
        hands_componentsr=np.eye(45, dtype=np.float32),
        hands_meanl=np.zeros(45, np.float32),
        hands_meanr=np.zeros(45, np.float32),
        lmk_faces_idx=rng.integers(0, n_faces, n_lmk),
        lmk_bary_coords=np.full((n_lmk, 3), 1 / 3, np.float32),
    )
    return path, joints


@pytest.fixture(scope="module")
def smplx_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, SMPLXFK]:
    pytest.importorskip("smplx")
    path, joints = write_synthetic_smplx(tmp_path_factory.mktemp("smplx"))
    with pytest.warns(UserWarning, match="smplx: WARNING"):
        fk = SMPLXFK(path)
    return path, joints, fk


def test_smplx_fk_matches_smplx_joints_and_the_skeleton(
    smplx_model: tuple[Path, np.ndarray, SMPLXFK],
) -> None:
    path, joints, fk = smplx_model
    gen = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(3, 21, 3, generator=gen, dtype=torch.float64)
    root = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    trans = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    out = fk(pose, root, trans)
    assert out.shape == (3, 22, 3) and out.dtype == torch.float64

    model = fk.model
    z = pose.new_zeros
    direct = model(
        betas=z(3, 10), global_orient=root, body_pose=pose.reshape(3, 63), transl=trans, jaw_pose=z(3, 3),
        leye_pose=z(3, 3), reye_pose=z(3, 3), left_hand_pose=z(3, 45), right_hand_pose=z(3, 45),
        expression=z(3, model.num_expression_coeffs),
    ).joints  # fmt: skip
    torch.testing.assert_close(out, direct[:, :22], rtol=0, atol=1e-10)

    # Joint positions do not depend on skinning: smplx's joints are the skeleton FK of its rest joints,
    # with the pelvis at transl + J_0.
    rest = torch.as_tensor(joints[:22], dtype=torch.float64)
    expected = forward_kinematics(pose, root, trans + rest[0], rest=rest)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_fit_through_smplx(smplx_model: tuple[Path, np.ndarray, SMPLXFK]) -> None:
    _, _, fk = smplx_model
    gen = torch.Generator().manual_seed(2)
    pose = 0.3 * torch.randn(2, 21, 3, generator=gen, dtype=torch.float64)
    observed = fk(pose, torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    start = mpjpe(fk(torch.zeros_like(pose), zeros, zeros), observed)
    res = fit_to_joints(observed, None, fk=fk, steps=60)
    assert mpjpe(res.joints, observed) < min(0.015, start / 5)
    torch.testing.assert_close(res.joints, fk(res.body_pose, res.root_orient, res.trans))


def test_smplx_fk_finds_the_file_in_a_folder(smplx_model: tuple[Path, np.ndarray, SMPLXFK]) -> None:
    path, _, _ = smplx_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert SMPLXFK(path.parent).path == path


def test_smplx_fk_betas_change_the_skeleton(smplx_model: tuple[Path, np.ndarray, SMPLXFK]) -> None:
    path, _, fk = smplx_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shaped = SMPLXFK(path, betas=torch.full((10,), 2.0))
    z = torch.zeros(1, 3, dtype=torch.float64)
    pose = torch.zeros(1, 21, 3, dtype=torch.float64)
    assert float((shaped(pose, z, z) - fk(pose, z, z)).abs().max()) > 1e-3
    with pytest.raises(ShapeError, match=r"betas must have shape \(B,\)"):
        SMPLXFK(path, betas=torch.zeros(1, 10))


def test_smplx_fk_errors(tmp_path: Path) -> None:
    pytest.importorskip("smplx")
    with pytest.raises(FileNotFoundError, match=r"no SMPLX_NEUTRAL.npz in"):
        SMPLXFK(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"model file .* not found"):
        SMPLXFK(tmp_path / "SMPLX_NEUTRAL.npz")
    pkl = tmp_path / "SMPLX_NEUTRAL.pkl"
    pkl.write_bytes(b"")
    with pytest.raises(ValueError, match=r"not an .npz model file.*chumpy"):
        SMPLXFK(pkl)
    with pytest.raises(ValueError, match=r"gender must be"):
        SMPLXFK(tmp_path, gender="other")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- errors
def test_input_errors() -> None:
    y = torch.zeros(2, 22, 3)
    with pytest.raises(ShapeError, match=r"shape \(N, 22, 3\), got \(2, 24, 3\) \(24 joints given"):
        fit_to_joints(torch.zeros(2, 24, 3))
    with pytest.raises(ShapeError, match=r"got \(22, 3\) \(add a batch dimension"):
        fit_to_joints(torch.zeros(22, 3))
    with pytest.raises(ShapeError, match=r"visible must have shape \(22,\) or \(N, 22\) = \(2, 22\), got"):
        fit_to_joints(y, visible=torch.ones(21, dtype=torch.bool))
    with pytest.raises(ValueCheckError, match=r"visible must be a bool tensor.*torch.int64"):
        fit_to_joints(y, visible=torch.ones(22, dtype=torch.long))
    with pytest.raises(ValueError, match=r"frame\(s\) \[1\] have no visible joint"):
        fit_to_joints(y, visible=torch.arange(2).unsqueeze(-1).expand(2, 22) == 0)
    bad = y.clone()
    bad[1, 4, 0] = float("nan")
    message = r"NaN or inf at 1 visible joint\(s\), first frame 1 joint"
    with pytest.raises(ValueCheckError, match=message) as e:
        fit_to_joints(bad)
    assert "'left_knee'" in str(e.value) and "mark such joints hidden" in str(e.value)
    with pytest.raises(ValueCheckError, match=r"floating point"):
        fit_to_joints(torch.zeros(2, 22, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"observed must be a torch.Tensor"):
        fit_to_joints(np.zeros((2, 22, 3)))  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"init must have shape \(2, 21, 3\) or \(21, 3\), got \(22, 3\)"):
        fit_to_joints(y, init=torch.zeros(22, 3))
    with pytest.raises(ValueError, match=r"optimizer must be 'adam' or 'lbfgs'"):
        fit_to_joints(y, optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"weight must be >= 0"):
        fit_to_joints(y, weight=-1.0)
    with pytest.raises(ValueError, match=r"steps must be a non-negative int"):
        fit_to_joints(y, steps=-1)


def test_prior_layout_must_be_body() -> None:
    hand = poseprior.create("gaussian", layout="left_hand")
    with pytest.raises(ShapeError, match=r"layout 'left_hand' \(15 joints\).*needs a prior over layout 'bo"):
        fit_to_joints(torch.zeros(2, 22, 3), hand)
    with pytest.raises(TypeError, match=r"prior must be a PosePrior or None"):
        fit_to_joints(torch.zeros(2, 22, 3), "gaussian")  # type: ignore[arg-type]


def test_skeleton_fk_rest_shape_error() -> None:
    with pytest.raises(ShapeError, match=r"rest must have shape \(22, 3\)"):
        SkeletonFK(torch.zeros(21, 3))


# ---------------------------------------------------------------------------- PA-MPJPE and PCK
SQUARE = torch.tensor([[[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]]], dtype=torch.float64)


def _random_rotation(gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.linalg.det(q) > 0 else -q


def test_pa_mpjpe_hand_computed() -> None:
    # Stretched along y: the best similarity is R = I, t = 0 and s = tr(S) / sum |p|^2 = 6 / 10, so the
    # aligned points are (+-0.6, 0, 0), (0, +-1.2, 0): errors 0.4, 0.4, 0.2, 0.2.
    stretched = SQUARE * torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    assert mpjpe(stretched, SQUARE) == pytest.approx(0.5)
    assert pa_mpjpe(stretched, SQUARE) == pytest.approx(0.3)
    expected = torch.tensor([[[0.6, 0, 0], [-0.6, 0, 0], [0, 1.2, 0], [0, -1.2, 0]]], dtype=torch.float64)
    torch.testing.assert_close(procrustes_align(stretched, SQUARE), expected)
    # A rotated, scaled and moved copy aligns exactly; MPJPE sees the whole difference.
    gen = torch.Generator().manual_seed(0)
    body = forward_kinematics(0.3 * torch.randn(4, 21, 3, generator=gen, dtype=torch.float64))  # (4, 22, 3)
    moved = 1.7 * body @ _random_rotation(gen).T + torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64)
    assert mpjpe(moved, body) > 0.5 and pa_mpjpe(moved, body) < 1e-9
    # A mirror image is not a rotation: it is not aligned away (no reflections).
    assert pa_mpjpe(body * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64), body) > 0.01


def test_pa_mpjpe_matches_scipy_procrustes_for_body_and_hand_joints() -> None:
    from scipy.spatial import procrustes

    gen = torch.Generator().manual_seed(1)
    for joints in (22, 21):  # the body joints of poseprior.kinematics, 21 hand keypoints
        target = torch.randn(3, joints, 3, generator=gen, dtype=torch.float64)
        pred = 0.8 * target @ _random_rotation(gen).T + 0.1 * torch.randn(
            3, joints, 3, generator=gen, dtype=torch.float64
        )
        aligned = procrustes_align(pred, target)
        for i in range(3):
            # scipy scales the target to unit norm: its disparity is our squared error over |target - mean|^2.
            _, _, disparity = procrustes(target[i].numpy(), pred[i].numpy())
            centred = target[i] - target[i].mean(0)
            ours = float((aligned[i] - target[i]).pow(2).sum() / centred.pow(2).sum())
            assert ours == pytest.approx(disparity, rel=1e-9)
        dist = (aligned - target).norm(dim=-1)
        assert pa_mpjpe(pred, target) == pytest.approx(float(dist.mean()))


def test_masked_alignment_and_pck() -> None:
    target = torch.cat([SQUARE, torch.tensor([[[0.0, 0, 5]]], dtype=torch.float64)], 1)  # a fifth joint
    pred = target.clone()
    pred[0, 4] = torch.tensor([0.0, 0, 9])  # only the fifth joint is wrong
    mask = torch.tensor([True, True, True, True, False])
    assert pa_mpjpe(pred, target, mask) == pytest.approx(0.0, abs=1e-12)  # aligned on the right four
    torch.testing.assert_close(procrustes_align(pred, target, mask)[0, 4], pred[0, 4])
    # Distances 0, 0.05, 0.1, 0.2 (and the fifth joint's 4).
    shift = torch.tensor([0.0, 0.05, 0.1, 0.2, 4.0], dtype=torch.float64)
    moved = target + torch.stack([torch.zeros(5), torch.zeros(5), shift], -1).double()
    assert pck(moved, target, 0.1) == pytest.approx(3 / 5)
    assert pck(moved, target, 0.1, mask) == pytest.approx(3 / 4)
    assert pck(moved, target, 0.0) == pytest.approx(1 / 5)
    frames = torch.cat([moved, target])  # a second, perfect frame; a per-frame mask
    per_frame = torch.tensor([[True] * 5, [True, True, False, False, False]])
    assert pck(frames, torch.cat([target, target]), 0.1, per_frame) == pytest.approx(5 / 7)
    stretched = SQUARE * torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    assert pck(stretched, SQUARE, 0.3) == pytest.approx(0.5)  # errors 0, 0, 1, 1
    assert pck(stretched, SQUARE, 0.3, align=True) == pytest.approx(0.5)  # errors 0.4, 0.4, 0.2, 0.2
    assert pck(stretched, SQUARE, 0.45, align=True) == pytest.approx(1.0)


def test_joint_metric_errors() -> None:
    with pytest.raises(ShapeError, match=r"pa_mpjpe: pred and target must have the same shape"):
        pa_mpjpe(SQUARE, SQUARE[:, :3])
    with pytest.raises(ShapeError, match=r"pck: target must be joint positions with shape \(N, J, 3\)"):
        pck(SQUARE, SQUARE[0], 0.1)
    with pytest.raises(ShapeError, match=r"mask must be booleans with shape \(4,\) or \(1, 4\)"):
        pa_mpjpe(SQUARE, SQUARE, torch.ones(4))
    with pytest.raises(ShapeError, match=r"at least 3 joints in the mask .* frame 0 has 2"):
        pa_mpjpe(SQUARE, SQUARE, torch.tensor([True, True, False, False]))
    with pytest.raises(ValueError, match=r"threshold must be a finite distance >= 0"):
        pck(SQUARE, SQUARE, -1.0)
