"""Adapters: flat <-> joints, layouts by name, SMPL-family conversions, hand conventions, to_prior."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from poseprior.errors import ShapeError, UnknownPriorError
from poseprior.formats.adapters import (
    flatten,
    hand_flat_to_relative,
    hand_relative_to_flat,
    joint_mask,
    mirror_hand,
    smplh_to_smplx,
    smplx53_to_smplx,
    smplx_to_smplh,
    smplx_to_smplx53,
    swap_limbs,
    to_layout,
    to_prior,
    unflatten,
)
from poseprior.formats.layouts import LAYOUTS, get_layout


def labelled(layout: str, *batch: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Poses whose joint ``j`` of ``layout`` holds the id of its SMPL-X name: (j_smplx + 1) * (1, 10, 100)."""
    smplx = LAYOUTS["smplx"].joints
    extra = {"left_hand": 55, "right_hand": 56}  # SMPL's hand joints have no SMPL-X index
    ids = torch.tensor(
        [smplx.index(j) + 1 if j in smplx else extra[j] + 1 for j in get_layout(layout).joints], dtype=dtype
    )
    x = ids[:, None] * torch.tensor([1.0, 10.0, 100.0], dtype=dtype)
    return x.expand(*batch, -1, -1).clone()


# ---------------------------------------------------------------------------------- flat poses
def test_flatten_unflatten_round_trip(gen: torch.Generator) -> None:
    x = torch.randn(2, 3, 21, 3, generator=gen)
    flat = flatten(x)
    assert flat.shape == (2, 3, 63)
    # Components of one joint are contiguous, as in AMASS files.
    assert torch.equal(flat[0, 0, 3:6], x[0, 0, 1])
    assert torch.equal(unflatten(flat, "body"), x)
    assert torch.equal(unflatten(flat[0, 0], get_layout("body")), x[0, 0])


def test_flatten_rejects_non_axis_angle() -> None:
    with pytest.raises(
        ShapeError, match=r"expected axis-angle poses with shape \(\*, J, 3\), got \(2, 21, 6\)"
    ):
        flatten(torch.zeros(2, 21, 6))
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        flatten([[0.0, 0.0, 0.0]])  # type: ignore[arg-type]


def test_unflatten_wrong_width() -> None:
    with pytest.raises(
        ShapeError,
        match=r"expected flat poses with shape \(\*, 63\) for layout 'body'.*got \(4, 66\) \(22 joints\)",
    ):
        unflatten(torch.zeros(4, 66), "body")
    with pytest.raises(UnknownPriorError, match="unknown joint layout 'bodyy'"):
        unflatten(torch.zeros(4, 63), "bodyy")


# ---------------------------------------------------------------------------------- to_layout
@pytest.mark.parametrize(
    ("src", "dst"),
    [("smplx", "body"), ("smplx", "hands"), ("smplx", "smplh"), ("smplh", "body_hands"), ("smplx53", "body"),
     ("smpl", "body"), ("body_hands", "right_hand"), ("smplx", "smplx53"), ("hands", "left_hand")],
)  # fmt: skip
def test_to_layout_selects_by_name(src: str, dst: str) -> None:
    x = labelled(src, 2, 3)
    assert torch.equal(to_layout(x, src, dst), labelled(dst, 2, 3))


def test_to_layout_missing_joints_error_lists_them() -> None:
    x = labelled("smplh", 4)
    with pytest.raises(
        ShapeError,
        match=r"3 joint\(s\) of layout 'smplx' are not in layout 'smplh': "
        r"jaw, left_eye, right_eye; pass missing=\"zero\"",
    ):
        to_layout(x, "smplh", "smplx")
    with pytest.raises(ShapeError, match=r"not in layout 'body': pelvis"):
        to_layout(labelled("body"), "body", "smpl")


def test_to_layout_missing_zero_fills_and_records() -> None:
    x = labelled("body", 5)
    y = to_layout(x, "body", "smplx", missing="zero")
    mask = joint_mask("body", "smplx")
    assert y.shape == (5, 55, 3)
    assert mask.sum() == 21 and not mask[0] and not mask[22:].any()
    assert torch.equal(y[:, mask], x)
    assert torch.equal(y[:, ~mask], torch.zeros(5, 34, 3, dtype=x.dtype))


def test_to_layout_wrong_joint_count() -> None:
    with pytest.raises(ShapeError, match=r"got 53 joints but layout 'smplx' has 55.*'smplx53'"):
        to_layout(torch.zeros(2, 53, 3), "smplx", "body")
    with pytest.raises(ShapeError, match=r"look like rotation matrices"):
        to_layout(torch.zeros(2, 21, 3, 3), "body", "body")
    with pytest.raises(ShapeError, match=r"looks like a flat pose: use .*unflatten\(x, 'smplx'\)"):
        to_layout(torch.zeros(2, 165), "smplx", "body")
    with pytest.raises(ShapeError, match=r"poses must be axis-angle with shape \(\*, 21, 3\)"):
        to_layout(torch.zeros(7), "body", "body")


def test_to_layout_bad_missing_option() -> None:
    with pytest.raises(ValueError, match="missing must be 'error' or 'zero', got 'fill'"):
        to_layout(labelled("body"), "body", "smplx", missing="fill")  # type: ignore[arg-type]


@pytest.mark.parametrize("missing", ["error", "zero"])
def test_to_layout_never_modifies_input(missing: str, gen: torch.Generator) -> None:
    x = torch.randn(3, 52, 3, generator=gen)
    before = x.clone()
    dst = "body_hands" if missing == "error" else "smplx"
    y = to_layout(x, "smplh", dst, missing=missing)  # type: ignore[arg-type]
    y.add_(1.0)  # the result is not a view of the input
    assert torch.equal(x, before)


def test_to_layout_gradient_flows(gen: torch.Generator) -> None:
    x = torch.randn(2, 52, 3, generator=gen, requires_grad=True)
    to_layout(x, "smplh", "smplx", missing="zero").sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.ones_like(x))


# ---------------------------------------------------------------------------------- SMPL family
def test_smplx53_round_trip(gen: torch.Generator) -> None:
    x = torch.randn(4, 53, 3, generator=gen)
    y = smplx53_to_smplx(x)
    assert y.shape == (4, 55, 3)
    assert torch.equal(y[:, 23:25], torch.zeros(4, 2, 3))
    assert torch.equal(y[:, :23], x[:, :23])  # root, body, jaw
    assert torch.equal(y[:, 25:], x[:, 23:])  # hands
    assert torch.equal(smplx_to_smplx53(y), x)


def test_smplx_to_smplx53_nonzero_eyes() -> None:
    y = labelled("smplx", 2)
    with pytest.raises(ShapeError, match=r"left_eye, right_eye are not zero .*pass drop_nonzero_eyes=True"):
        smplx_to_smplx53(y)
    assert torch.equal(smplx_to_smplx53(y, drop_nonzero_eyes=True), labelled("smplx53", 2))


def test_smplh_smplx_round_trip(gen: torch.Generator) -> None:
    x = torch.randn(6, 52, 3, generator=gen)
    with pytest.raises(ShapeError, match=r"jaw, left_eye, right_eye; pass missing=\"zero\""):
        smplh_to_smplx(x)
    y = smplh_to_smplx(x, missing="zero")
    assert torch.equal(y[:, 22:25], torch.zeros(6, 3, 3))
    assert torch.equal(smplx_to_smplh(y), x)


def test_smplx_to_smplh_nonzero_face() -> None:
    y = torch.zeros(3, 55, 3)
    y[1, 22, 0] = 0.3  # jaw open in one frame
    with pytest.raises(
        ShapeError, match=r"joint\(s\) jaw are not zero \(max \|value\| 0.3 rad\).*drop_nonzero=True"
    ):
        smplx_to_smplh(y)
    assert smplx_to_smplh(y, drop_nonzero=True).shape == (3, 52, 3)
    with pytest.raises(ShapeError, match=r"got 52 joints but layout 'smplx' has 55"):
        smplx_to_smplh(torch.zeros(3, 52, 3))


def test_empty_batch() -> None:
    assert smplx_to_smplh(torch.zeros(0, 55, 3)).shape == (0, 52, 3)
    assert smplh_to_smplx(torch.zeros(0, 52, 3), missing="zero").shape == (0, 55, 3)


# ---------------------------------------------------------------------------------- hands
def test_hand_relative_round_trip_and_convention(gen: torch.Generator) -> None:
    mean = torch.randn(45, generator=gen, dtype=torch.float64) * 0.2
    x = torch.randn(4, 15, 3, generator=gen, dtype=torch.float64)
    flat = hand_relative_to_flat(x, mean)
    # smplx with flat_hand_mean=False adds the mean in axis-angle space: full = hand_pose + mean.
    assert torch.equal(flat, x + mean.reshape(15, 3))
    assert torch.allclose(hand_flat_to_relative(flat, mean.reshape(15, 3)), x, atol=1e-12)
    assert torch.allclose(hand_flat_to_relative(hand_relative_to_flat(x, mean.tolist()), mean), x, atol=1e-12)


def test_hand_shape_errors() -> None:
    with pytest.raises(
        ShapeError, match=r"expected one hand's pose with shape \(\*, 15, 3\), got \(2, 45\); for a flat"
    ):
        hand_relative_to_flat(torch.zeros(2, 45), torch.zeros(45))
    with pytest.raises(ShapeError, match=r"got \(2, 30, 3\); for both hands"):
        mirror_hand(torch.zeros(2, 30, 3))
    with pytest.raises(
        ShapeError, match=r"expected the hand mean with shape \(15, 3\) or \(45,\), got \(16, 3\)"
    ):
        hand_flat_to_relative(torch.zeros(2, 15, 3), torch.zeros(16, 3))


def test_mirror_hand_known_value_and_involution(gen: torch.Generator) -> None:
    x = torch.randn(3, 15, 3, generator=gen, dtype=torch.float64)
    m = mirror_hand(x)
    assert torch.equal(m[..., 0], x[..., 0])
    assert torch.equal(m[..., 1:], -x[..., 1:])
    assert torch.equal(mirror_hand(m), x)


def test_mirror_hand_is_reflection_conjugation(gen: torch.Generator) -> None:
    rotations = pytest.importorskip("poseprior.formats.rotations")
    x = torch.randn(5, 15, 3, generator=gen, dtype=torch.float64)
    reflect = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    expected = reflect @ rotations.axis_angle_to_matrix(x) @ reflect
    got = rotations.axis_angle_to_matrix(mirror_hand(x))
    assert torch.allclose(got, expected, atol=1e-12)


# ---------------------------------------------------------------------------------- to_prior
def test_to_prior_axis_angle_selects_prior_joints() -> None:
    prior = SimpleNamespace(layout=get_layout("body"))
    x = labelled("smplx", 3)
    assert torch.equal(to_prior(x, prior), labelled("body", 3))  # type: ignore[arg-type]
    assert torch.equal(to_prior(labelled("smplh", 3), prior, layout="smplh"), labelled("body", 3))  # type: ignore[arg-type]


@pytest.mark.parametrize("rotation", ["matrix", "rot6d", "quaternion"])
def test_to_prior_converts_rotations(rotation: str, gen: torch.Generator) -> None:
    rotations = pytest.importorskip("poseprior.formats.rotations")
    prior = SimpleNamespace(layout=get_layout("right_hand"))
    aa = torch.randn(4, 55, 3, generator=gen, dtype=torch.float64)
    x = rotations.convert(aa, "axis_angle", rotation)
    got = to_prior(x, prior, rotation=rotation)  # type: ignore[arg-type]
    assert got.shape == (4, 15, 3)
    want = to_layout(aa, "smplx", "right_hand")
    angle = rotations.geodesic_angle(
        rotations.axis_angle_to_matrix(got), rotations.axis_angle_to_matrix(want)
    )
    assert float(angle.max()) < 1e-5


def test_to_prior_errors() -> None:
    prior = SimpleNamespace(layout=get_layout("smplx"))
    with pytest.raises(
        ShapeError, match=r"not in layout 'smplh': jaw, left_eye, right_eye; pass missing=\"zero\""
    ):
        to_prior(torch.zeros(2, 52, 3), prior, layout="smplh")  # type: ignore[arg-type]
    assert to_prior(torch.zeros(2, 52, 3), prior, layout="smplh", missing="zero").shape == (2, 55, 3)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"got 52 joints but layout 'smplx' has 55"):
        to_prior(torch.zeros(2, 52, 3), prior)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expected a prior with a .layout JointLayout, got str"):
        to_prior(torch.zeros(2, 55, 3), "gaussian")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- limb swaps
def test_swap_limbs_moves_one_whole_limb_from_another_pose(gen: torch.Generator) -> None:
    layout = LAYOUTS["body"]
    x = torch.randn(64, 21, 3, generator=gen, dtype=torch.float64)
    before = x.clone()
    y = swap_limbs(x, "body", 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(x, before)  # the input is left as it was
    chains = layout.chains()
    for i in range(len(x)):
        changed = (y[i] != x[i]).any(-1).nonzero().flatten().tolist()
        assert changed in [sorted(c) for c in chains], changed  # exactly one whole limb
        donors = [k for k in range(len(x)) if k != i and torch.equal(y[i, changed], x[k, changed])]
        assert donors  # ... taken from another pose of the batch
    assert torch.equal(swap_limbs(x, "body", 0.0, gen), x)
    again = swap_limbs(x, "body", 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(again, y)  # the generator drives every draw
    half = swap_limbs(x, "body", 0.5, torch.Generator().manual_seed(4))
    assert 0 < int((half != x).any(-1).any(-1).sum()) < len(x)


def test_swap_limbs_rejects_bad_input(gen: torch.Generator) -> None:
    with pytest.raises(ShapeError, match=r"expected poses with shape \(N, 21, 3\).*got \(4, 63\)"):
        swap_limbs(torch.zeros(4, 63), "body", 0.5, gen)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 1.5"):
        swap_limbs(torch.zeros(4, 21, 3), "body", 1.5, gen)
