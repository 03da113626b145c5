"""Tests for poseprior.formats.rotations."""

from __future__ import annotations

import math
from typing import get_args

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.transform import Rotation as ScipyRotation

from poseprior.errors import ShapeError, ValueCheckError
from poseprior.formats import rotations as rot
from poseprior.formats.rotations import (
    REPRESENTATIONS,
    Rotation,
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    axis_angle_to_rot6d,
    convert,
    geodesic_angle,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    random_axis_angle,
    random_rotation_matrix,
    rot6d_to_axis_angle,
    rot6d_to_matrix,
)

F64 = torch.float64
NAMES: tuple[Rotation, ...] = get_args(Rotation)
PAIRS = [(src, dst) for src in NAMES for dst in NAMES if src != dst]
SQRT_HALF = math.sqrt(0.5)


def assert_same_rotation(a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
    """Asserts that ``a`` and ``b`` are rotation matrices at most ``atol`` radians apart."""
    assert a.shape[-2:] == (3, 3) and b.shape[-2:] == (3, 3)
    eye = torch.eye(3, dtype=a.dtype)
    for m in (a, b):
        assert torch.isfinite(m).all()
        assert (m.transpose(-1, -2) @ m - eye).abs().max().item() <= atol, "not orthonormal"
        assert (torch.linalg.det(m) > 0).all(), "not a proper rotation"
    angle = geodesic_angle(a, b)
    worst = angle.max().item() if angle.numel() else 0.0
    assert worst <= atol, f"rotations differ by up to {worst:.3g} rad (atol {atol:.3g})"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def haar_matrices() -> torch.Tensor:
    return random_rotation_matrix((256,), generator=torch.Generator().manual_seed(0), dtype=F64)


@pytest.fixture(scope="module")
def unit_axes() -> torch.Tensor:
    axes = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    axes = axes / torch.linalg.vector_norm(axes, dim=-1, keepdim=True)
    basis = torch.eye(3, dtype=F64)
    return torch.cat([axes, basis, -basis])  # (12, 3)


@pytest.fixture(scope="module")
def tiny_axis_angles(unit_axes: torch.Tensor) -> torch.Tensor:
    angles = torch.tensor([0.0, 1e-7, 1e-12], dtype=F64)
    return (unit_axes[:, None, :] * angles[None, :, None]).reshape(-1, 3)


NEAR_PI_OFFSETS = [1e-6, 5e-7, 1e-7, 1e-9, 1e-12]


@pytest.fixture(scope="module")
def near_pi_axis_angles(unit_axes: torch.Tensor) -> torch.Tensor:
    angles = math.pi - torch.tensor([*NEAR_PI_OFFSETS, 0.0], dtype=F64)
    return (unit_axes[:, None, :] * angles[None, :, None]).reshape(-1, 3)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_round_trip_haar(haar_matrices: torch.Tensor, src: Rotation, dst: Rotation) -> None:
    x = convert(haar_matrices, "matrix", src)
    back = convert(convert(x, src, dst), dst, src)
    assert back.shape == x.shape
    assert_same_rotation(convert(back, src, "matrix"), haar_matrices, atol=1e-12)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
@pytest.mark.parametrize("which", ["tiny", "near_pi"])
def test_round_trip_edge_angles(
    request: pytest.FixtureRequest, which: str, src: Rotation, dst: Rotation
) -> None:
    aa = request.getfixturevalue(f"{which}_axis_angles")
    reference = axis_angle_to_matrix(aa)
    x = convert(aa, "axis_angle", src)
    back = convert(convert(x, src, dst), dst, src)
    assert_same_rotation(convert(back, src, "matrix"), reference, atol=1e-12)


def test_tiny_angles_exact_values(tiny_axis_angles: torch.Tensor) -> None:
    aa = tiny_axis_angles
    # Zero maps to the exact identity.
    assert torch.equal(axis_angle_to_matrix(torch.zeros(3, dtype=F64)), torch.eye(3, dtype=F64))
    assert torch.equal(
        axis_angle_to_quaternion(torch.zeros(3, dtype=F64)),
        torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64),
    )
    assert torch.equal(matrix_to_axis_angle(torch.eye(3, dtype=F64)), torch.zeros(3, dtype=F64))
    # Through quaternions, tiny angles keep full relative precision.
    torch.testing.assert_close(
        quaternion_to_axis_angle(axis_angle_to_quaternion(aa)), aa, rtol=1e-14, atol=0.0
    )
    # Through matrices, the precision is absolute (matrix entries are O(1)).
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(aa)), aa, rtol=0.0, atol=1e-15)


def test_near_pi_axis_angle_is_recovered(near_pi_axis_angles: torch.Tensor) -> None:
    aa = near_pi_axis_angles.reshape(-1, len(NEAR_PI_OFFSETS) + 1, 3)[:, :-1]  # angle < pi
    for back in (
        matrix_to_axis_angle(axis_angle_to_matrix(aa)),
        quaternion_to_axis_angle(axis_angle_to_quaternion(aa)),
        rot6d_to_axis_angle(axis_angle_to_rot6d(aa)),
    ):
        torch.testing.assert_close(back, aa, rtol=0.0, atol=1e-12)
    angles = torch.linalg.vector_norm(matrix_to_axis_angle(axis_angle_to_matrix(aa)), dim=-1)
    expected = math.pi - torch.tensor(NEAR_PI_OFFSETS, dtype=F64)
    torch.testing.assert_close(angles, expected.expand_as(angles), rtol=0.0, atol=1e-13)


def test_exactly_pi_gives_either_sign() -> None:
    aa = torch.tensor([[math.pi, 0.0, 0.0], [0.0, -math.pi, 0.0], [0.6, 0.0, 0.8]], dtype=F64)
    aa[2] *= math.pi
    back = matrix_to_axis_angle(axis_angle_to_matrix(aa))
    err = torch.minimum((back - aa).abs().amax(-1), (back + aa).abs().amax(-1))
    assert err.max().item() < 1e-12


# --------------------------------------------------------------------------- conventions


def test_axis_angle_known_values() -> None:
    rz = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    torch.testing.assert_close(rz, expected, rtol=0.0, atol=1e-15)
    e = torch.eye(3, dtype=F64)
    torch.testing.assert_close(rz @ e[0], e[1], rtol=0.0, atol=1e-15)  # x -> y (column vectors)
    rx = axis_angle_to_matrix(torch.tensor([math.pi / 2, 0.0, 0.0], dtype=F64))
    torch.testing.assert_close(rx @ e[1], e[2], rtol=0.0, atol=1e-15)  # y -> z (right-handed)
    ry = axis_angle_to_matrix(torch.tensor([0.0, math.pi / 2, 0.0], dtype=F64))
    torch.testing.assert_close(ry @ e[2], e[0], rtol=0.0, atol=1e-15)  # z -> x
    # Angle-axis scaling: the angle is the norm, in radians.
    r30 = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(30)], dtype=F64))
    torch.testing.assert_close(
        r30[:2, 0], torch.tensor([math.cos(math.radians(30)), 0.5], dtype=F64), rtol=0.0, atol=1e-15
    )


def test_quaternion_known_values() -> None:
    aa = torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64)
    expected = torch.tensor([0.0, 0.0, SQRT_HALF, SQRT_HALF], dtype=F64)  # XYZW
    torch.testing.assert_close(axis_angle_to_quaternion(aa), expected, rtol=0.0, atol=1e-15)
    torch.testing.assert_close(matrix_to_quaternion(axis_angle_to_matrix(aa)), expected, rtol=0.0, atol=1e-15)
    torch.testing.assert_close(quaternion_to_matrix(expected), axis_angle_to_matrix(aa), rtol=0.0, atol=1e-15)
    identity = torch.eye(3, dtype=F64)
    torch.testing.assert_close(quaternion_to_matrix(torch.tensor([0.0, 0, 0, 1], dtype=F64)), identity)
    # Non-normalized input and the sign of q are both irrelevant.
    torch.testing.assert_close(quaternion_to_matrix(torch.tensor([0.0, 0, 0, -2], dtype=F64)), identity)
    torch.testing.assert_close(quaternion_to_matrix(3.0 * expected), quaternion_to_matrix(-expected))
    torch.testing.assert_close(quaternion_to_axis_angle(-5.0 * expected), aa, rtol=0.0, atol=1e-15)


def test_matrix_to_quaternion_is_canonical_and_unit(haar_matrices: torch.Tensor) -> None:
    q = matrix_to_quaternion(haar_matrices)
    assert (q[..., 3] >= 0).all()
    torch.testing.assert_close(torch.linalg.vector_norm(q, dim=-1), torch.ones(len(q), dtype=F64))
    # A rotation with w < 0 as axis-angle input still comes back canonical.
    aa = torch.tensor([0.0, 0.0, 1.5 * math.pi], dtype=F64)
    assert axis_angle_to_quaternion(aa)[3] < 0  # smooth map, not canonicalized
    assert matrix_to_quaternion(axis_angle_to_matrix(aa))[3] > 0


def test_matrix_to_axis_angle_range(haar_matrices: torch.Tensor) -> None:
    angles = torch.linalg.vector_norm(matrix_to_axis_angle(haar_matrices), dim=-1)
    assert (angles >= 0).all() and (angles <= math.pi).all()
    # Angles above pi wrap to the equivalent rotation with angle 2 pi - theta.
    aa = torch.tensor([0.0, 0.0, 1.5 * math.pi], dtype=F64)
    torch.testing.assert_close(
        matrix_to_axis_angle(axis_angle_to_matrix(aa)),
        torch.tensor([0.0, 0.0, -0.5 * math.pi], dtype=F64),
    )


def test_rot6d_known_values() -> None:
    identity = torch.eye(3, dtype=F64)
    torch.testing.assert_close(
        matrix_to_rot6d(identity), torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=F64), rtol=0, atol=0
    )
    # Columns, not rows (PyTorch3D would give [0, -1, 0, 1, 0, 0] here).
    rz = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    torch.testing.assert_close(
        matrix_to_rot6d(rz), torch.tensor([0.0, 1, 0, -1, 0, 0], dtype=F64), rtol=0, atol=1e-15
    )
    # Gram-Schmidt: scale of a1 and the component of a2 along a1 are removed.
    x = torch.tensor([2.0, 0, 0, 1, 3, 0], dtype=F64)
    torch.testing.assert_close(rot6d_to_matrix(x), identity, rtol=0, atol=1e-15)
    x = torch.tensor([0.0, 0, 5, 7, 0, 1], dtype=F64)  # c1 = z, c2 = x, c3 = z cross x = y
    expected = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=F64)
    torch.testing.assert_close(rot6d_to_matrix(x), expected, rtol=0, atol=1e-15)


def test_rot6d_to_matrix_projects_arbitrary_input() -> None:
    x = torch.randn(100, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    r = rot6d_to_matrix(x)
    assert_same_rotation(r, r, atol=1e-14)  # orthonormal, det +1
    # The first column is the normalized a1; the second lies in span(a1, a2).
    torch.testing.assert_close(r[..., 0], x[:, :3] / x[:, :3].norm(dim=-1, keepdim=True))
    normal = torch.linalg.cross(x[:, :3], x[:, 3:], dim=-1)
    torch.testing.assert_close((r[..., 1] * normal).sum(-1), torch.zeros(100, dtype=F64))


def test_geodesic_angle_known_values() -> None:
    axis = torch.tensor([0.36, 0.48, 0.8], dtype=F64)
    angles = torch.tensor([0.0, 1e-12, 1e-9, 1e-7, 0.1, 1.0, 3.0, math.pi - 1e-7, math.pi - 1e-12], dtype=F64)
    r1 = random_rotation_matrix((), generator=torch.Generator().manual_seed(3), dtype=F64)
    r2 = r1 @ axis_angle_to_matrix(axis * angles[:, None])
    got = geodesic_angle(r1, r2)  # broadcasts () against (9,)
    # Relative precision near zero (acos of the trace would give ~1e-8 here).
    torch.testing.assert_close(got, angles, rtol=1e-9, atol=4e-16)
    torch.testing.assert_close(geodesic_angle(r2, r1), got, rtol=1e-12, atol=0.0)
    # Exactly pi, and non-negative output.
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64))
    assert geodesic_angle(torch.eye(3, dtype=F64), flip).item() == pytest.approx(math.pi, abs=1e-15)
    assert geodesic_angle(r1, r1).item() == pytest.approx(0.0, abs=1e-15)


def test_representations_table() -> None:
    assert set(REPRESENTATIONS) == set(NAMES)
    assert REPRESENTATIONS == {
        "axis_angle": (3,),
        "matrix": (3, 3),
        "rot6d": (6,),
        "quaternion": (4,),
    }


# --------------------------------------------------------------------------- gradients


GRAD_POINTS = [[0.0, 0.0, 0.0], [1e-7, -2e-7, 0.5e-7], [0.0, 0.0, 1e-7]]


GRAD_FUNCTIONS = {
    "axis_angle_to_matrix": axis_angle_to_matrix,
    "axis_angle_to_rot6d": axis_angle_to_rot6d,
    "axis_angle_to_quaternion": axis_angle_to_quaternion,
    "aa_matrix_aa": lambda x: matrix_to_axis_angle(axis_angle_to_matrix(x)),
    "aa_quaternion_aa": lambda x: quaternion_to_axis_angle(axis_angle_to_quaternion(x)),
    "aa_rot6d_aa": lambda x: rot6d_to_axis_angle(axis_angle_to_rot6d(x)),
    "geodesic_to_identity": lambda x: geodesic_angle(torch.eye(3, dtype=F64), axis_angle_to_matrix(x)),
}


@pytest.mark.parametrize("name", list(GRAD_FUNCTIONS))
@pytest.mark.parametrize("point", GRAD_POINTS)
def test_gradients_finite_at_zero_and_tiny_angle(name: str, point: list[float]) -> None:
    x = torch.tensor(point, dtype=F64, requires_grad=True)
    out = GRAD_FUNCTIONS[name](x)
    weights = torch.linspace(-1.0, 1.0, out.numel(), dtype=F64).reshape(out.shape)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    assert torch.isfinite(grad).all()


def test_gradient_values_at_zero() -> None:
    zero = torch.zeros(3, dtype=F64)
    # d(matrix_to_axis_angle o axis_angle_to_matrix)/dx = I at zero.
    jac = torch.autograd.functional.jacobian(lambda x: matrix_to_axis_angle(axis_angle_to_matrix(x)), zero)
    torch.testing.assert_close(jac, torch.eye(3, dtype=F64))
    # dR/dx_i at zero is the cross-product matrix of e_i.
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, zero)  # (3, 3, 3)
    generators = torch.tensor(
        [
            [[0, 0, 0], [0, 0, -1], [0, 1, 0]],
            [[0, 0, 1], [0, 0, 0], [-1, 0, 0]],
            [[0, -1, 0], [1, 0, 0], [0, 0, 0]],
        ],
        dtype=F64,
    )
    torch.testing.assert_close(jac.permute(2, 0, 1), generators)


@pytest.mark.parametrize(
    "fn",
    [
        axis_angle_to_matrix,
        axis_angle_to_quaternion,
        lambda x: matrix_to_axis_angle(axis_angle_to_matrix(x)),
        lambda x: quaternion_to_axis_angle(axis_angle_to_quaternion(x)),
    ],
)
def test_gradcheck(fn) -> None:  # type: ignore[no-untyped-def]
    # Generic angles, a tiny angle, zero (all within the Taylor branch) and
    # angles straddling the 1e-3 branch threshold.
    x = torch.tensor(
        [
            [0.3, -1.2, 0.7],
            [1e-6, 2e-6, -1e-6],
            [0.0, 0.0, 0.0],
            [5e-4, 5e-4, 5e-4],
            [0, 0.0011, 0],
        ],
        dtype=F64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-7, atol=1e-6)


# --------------------------------------------------------------------------- dtypes and shapes

FUNCTIONS = [
    (axis_angle_to_matrix, "axis_angle", "matrix"),
    (matrix_to_axis_angle, "matrix", "axis_angle"),
    (matrix_to_quaternion, "matrix", "quaternion"),
    (quaternion_to_matrix, "quaternion", "matrix"),
    (axis_angle_to_quaternion, "axis_angle", "quaternion"),
    (quaternion_to_axis_angle, "quaternion", "axis_angle"),
    (matrix_to_rot6d, "matrix", "rot6d"),
    (rot6d_to_matrix, "rot6d", "matrix"),
    (axis_angle_to_rot6d, "axis_angle", "rot6d"),
    (rot6d_to_axis_angle, "rot6d", "axis_angle"),
]


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("fn", "src", "dst"), FUNCTIONS, ids=[f[0].__name__ for f in FUNCTIONS])
def test_batch_shapes_and_dtypes(
    fn, src: Rotation, dst: Rotation, dtype: torch.dtype, batch: tuple[int, ...]
) -> None:  # type: ignore[no-untyped-def]
    matrices = random_rotation_matrix(batch, generator=torch.Generator().manual_seed(4), dtype=dtype)
    x = convert(matrices, "matrix", src)
    out = fn(x)
    assert out.shape == batch + REPRESENTATIONS[dst]
    assert out.dtype == dtype and out.device == x.device
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    # Not convert(): it rejects (2, 3, 3) axis-angle input as probable matrices.
    to_matrix = {
        "axis_angle": axis_angle_to_matrix,
        "quaternion": quaternion_to_matrix,
        "rot6d": rot6d_to_matrix,
        "matrix": lambda m: m,
    }[dst]
    assert_same_rotation(to_matrix(out), matrices, atol=tol)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_geodesic_and_random_shapes(batch: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(5)
    for dtype in (torch.float32, torch.float64):
        r = random_rotation_matrix(batch, generator=gen, dtype=dtype)
        assert r.shape == (*batch, 3, 3) and r.dtype == dtype
        aa = random_axis_angle(batch, generator=gen, dtype=dtype)
        assert aa.shape == (*batch, 3) and aa.dtype == dtype
        angle = geodesic_angle(r, r)
        assert angle.shape == batch and angle.dtype == dtype
    assert random_rotation_matrix(7, generator=gen).shape == (7, 3, 3)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_float32_round_trips(src: Rotation, dst: Rotation) -> None:
    gen = torch.Generator().manual_seed(6)
    matrices = random_rotation_matrix((64,), generator=gen, dtype=torch.float32)
    aa_edge = torch.tensor(
        [[0.0, 0.0, 0.0], [1e-7, 0.0, 0.0], [0.0, 0.0, math.pi - 1e-6], [0.0, math.pi, 0.0]],
        dtype=torch.float32,
    )
    matrices = torch.cat([matrices, axis_angle_to_matrix(aa_edge)])
    x = convert(matrices, "matrix", src)
    back = convert(convert(x, src, dst), dst, src)
    assert back.dtype == torch.float32
    assert_same_rotation(convert(back, src, "matrix"), matrices, atol=2e-6)


def test_float32_gradients_finite() -> None:
    x = torch.zeros(2, 3, dtype=torch.float32, requires_grad=True)
    out = matrix_to_axis_angle(axis_angle_to_matrix(x)).sum() + axis_angle_to_rot6d(x).sum()
    (grad,) = torch.autograd.grad(out, x)
    assert torch.isfinite(grad).all()


# --------------------------------------------------------------------------- convert


def test_convert_identity_and_dispatch(haar_matrices: torch.Tensor) -> None:
    q = matrix_to_quaternion(haar_matrices)
    assert convert(q, "quaternion", "quaternion") is q
    torch.testing.assert_close(convert(q, "quaternion", "axis_angle"), quaternion_to_axis_angle(q))
    torch.testing.assert_close(convert(haar_matrices, "matrix", "rot6d"), matrix_to_rot6d(haar_matrices))


def test_convert_unknown_names() -> None:
    x = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match=r"src='euler'.*'axis_angle', 'matrix', 'rot6d', 'quaternion'"):
        convert(x, "euler", "matrix")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dst='rotmat'.*valid names"):
        convert(x, "axis_angle", "rotmat")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "src", "pattern"),
    [
        (
            (5, 3, 3),
            "axis_angle",
            r"expected trailing shape \(3,\) for 'axis_angle', got \(3, 3\); "
            r"did you pass rotation matrices\? use src='matrix'",
        ),
        ((3, 3), "axis_angle", r"got \(3, 3\); did you pass rotation matrices"),
        (
            (5, 3),
            "matrix",
            r"expected trailing shape \(3, 3\) for 'matrix', got \(5, 3\); .*src='axis_angle'",
        ),
        ((5, 3, 3), "quaternion", r"expected trailing shape \(4,\) for 'quaternion', got \(3, 3\)"),
        (
            (5, 4),
            "rot6d",
            r"expected trailing shape \(6,\) for 'rot6d', got \(4,\); .*src='quaternion'",
        ),
        ((5, 6), "quaternion", r"got \(6,\); did you pass 6D rotations\? use src='rot6d'"),
        ((), "axis_angle", r"expected trailing shape \(3,\) for 'axis_angle', got \(\)"),
        ((5, 7), "axis_angle", r"got \(7,\) \(input shape \(5, 7\)\)$"),
    ],
)
def test_convert_shape_errors(shape: tuple[int, ...], src: Rotation, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        convert(torch.zeros(shape, dtype=F64), src, "matrix")
    assert isinstance(info.value, ShapeError)


def test_convert_type_errors() -> None:
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        convert(np.zeros(3), "axis_angle", "matrix")  # type: ignore[arg-type]
    with pytest.raises(ValueCheckError, match="floating-point"):
        convert(torch.zeros(3, dtype=torch.int64), "axis_angle", "matrix")


# --------------------------------------------------------------------------- property test

_coordinate = st.floats(min_value=-57.0, max_value=57.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(st.tuples(_coordinate, _coordinate, _coordinate))
def test_axis_angle_to_matrix_is_rotation(values: tuple[float, float, float]) -> None:
    x = torch.tensor(values, dtype=F64)
    assert torch.linalg.vector_norm(x).item() <= 100.0
    r = axis_angle_to_matrix(x)
    assert torch.isfinite(r).all()
    torch.testing.assert_close(r.T @ r, torch.eye(3, dtype=F64), rtol=0.0, atol=1e-13)
    assert torch.linalg.det(r).item() == pytest.approx(1.0, abs=1e-13)
    # The round trip returns an equivalent rotation with angle in [0, pi].
    back = matrix_to_axis_angle(r)
    assert torch.linalg.vector_norm(back).item() <= math.pi + 1e-12
    assert_same_rotation(axis_angle_to_matrix(back), r, atol=1e-11)


# --------------------------------------------------------------------------- scipy cross-check


def test_matches_scipy(haar_matrices: torch.Tensor) -> None:
    aa = matrix_to_axis_angle(haar_matrices)
    aa_np = aa.numpy()
    reference = ScipyRotation.from_rotvec(aa_np)
    np.testing.assert_allclose(axis_angle_to_matrix(aa).numpy(), reference.as_matrix(), atol=1e-14)
    from_matrix = ScipyRotation.from_matrix(haar_matrices.numpy())
    np.testing.assert_allclose(aa_np, from_matrix.as_rotvec(), atol=1e-13)
    q_scipy = from_matrix.as_quat(canonical=False)  # XYZW
    q_scipy = np.where(q_scipy[:, 3:] < 0, -q_scipy, q_scipy)
    np.testing.assert_allclose(matrix_to_quaternion(haar_matrices).numpy(), q_scipy, atol=1e-14)
    np.testing.assert_allclose(axis_angle_to_quaternion(aa).numpy(), q_scipy, atol=1e-14)
    q = torch.from_numpy(q_scipy)
    np.testing.assert_allclose(quaternion_to_matrix(q).numpy(), haar_matrices.numpy(), atol=1e-14)
    np.testing.assert_allclose(quaternion_to_axis_angle(q).numpy(), aa_np, atol=1e-13)
    relative = ScipyRotation.from_matrix(haar_matrices[:-1].numpy()).inv() * ScipyRotation.from_matrix(
        haar_matrices[1:].numpy()
    )
    np.testing.assert_allclose(
        geodesic_angle(haar_matrices[:-1], haar_matrices[1:]).numpy(),
        relative.magnitude(),
        atol=1e-13,
    )


def test_matches_scipy_near_pi_and_tiny(
    near_pi_axis_angles: torch.Tensor, tiny_axis_angles: torch.Tensor
) -> None:
    aa = torch.cat([near_pi_axis_angles, tiny_axis_angles])
    np.testing.assert_allclose(
        axis_angle_to_matrix(aa).numpy(),
        ScipyRotation.from_rotvec(aa.numpy()).as_matrix(),
        atol=1e-15,
    )


# --------------------------------------------------------------------------- randomness


def test_generator_reproducibility() -> None:
    first = random_rotation_matrix((4,), generator=torch.Generator().manual_seed(123), dtype=F64)
    first_aa = random_axis_angle((4,), generator=torch.Generator().manual_seed(123), dtype=F64)
    torch.rand(1000)  # advance the global RNG (no seeding)
    torch.randn(17)
    second = random_rotation_matrix((4,), generator=torch.Generator().manual_seed(123), dtype=F64)
    second_aa = random_axis_angle((4,), generator=torch.Generator().manual_seed(123), dtype=F64)
    assert torch.equal(first, second)
    assert torch.equal(first_aa, second_aa)
    # Same underlying quaternion sample for both functions.
    assert_same_rotation(axis_angle_to_matrix(first_aa), first, atol=1e-12)
    other = random_rotation_matrix((4,), generator=torch.Generator().manual_seed(124), dtype=F64)
    assert not torch.equal(first, other)
    # generator=None draws from the global RNG and still returns valid rotations.
    r = random_rotation_matrix((3,), dtype=F64)
    assert_same_rotation(r, r, atol=1e-12)


def test_random_generator_state_advances() -> None:
    gen = torch.Generator().manual_seed(7)
    a = random_rotation_matrix((2,), generator=gen, dtype=F64)
    b = random_rotation_matrix((2,), generator=gen, dtype=F64)
    assert not torch.equal(a, b)


def test_random_rotations_are_haar_uniform() -> None:
    gen = torch.Generator().manual_seed(8)
    n = 20000
    r = random_rotation_matrix((n,), generator=gen, dtype=F64)
    # E[R] = 0 under the Haar measure; each entry has standard deviation 1/sqrt(3).
    assert r.mean(dim=0).abs().max().item() < 5.0 / math.sqrt(3 * n)
    # Angles have CDF (theta - sin theta) / pi.
    angles = geodesic_angle(torch.eye(3, dtype=F64), r).numpy()
    assert stats.kstest(angles, lambda t: (t - np.sin(t)) / np.pi).pvalue > 1e-3
    aa_angles = torch.linalg.vector_norm(random_axis_angle((n,), generator=gen, dtype=F64), dim=-1)
    assert stats.kstest(aa_angles.numpy(), lambda t: (t - np.sin(t)) / np.pi).pvalue > 1e-3
    # Left-invariance: rotating the sample by a fixed rotation keeps the angle law.
    fixed = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 1.1], dtype=F64))
    moved = geodesic_angle(torch.eye(3, dtype=F64), fixed @ r).numpy()
    assert stats.kstest(moved, lambda t: (t - np.sin(t)) / np.pi).pvalue > 1e-3


def test_module_exports() -> None:
    for name in rot.__all__:
        assert hasattr(rot, name)
