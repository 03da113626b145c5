r"""Conversions between 3D rotation representations.

Every function is a pure, differentiable torch function that accepts any
leading batch shape :math:`(*)`, works in float32 and float64, and returns a
tensor with the dtype and device of its input.

Conventions shared by the whole module:

* **matrix** -- rotation matrices with shape :math:`(*, 3, 3)`, right-handed,
  acting on column vectors: ``v_rotated = R @ v``.
* **axis_angle** -- rotation vectors with shape :math:`(*, 3)`: the unit
  rotation axis multiplied by the rotation angle in radians, with the
  right-hand rule (a positive angle about ``z`` takes ``x`` towards ``y``).
  Functions that return axis-angle return angles in :math:`[0, \pi]`.
* **quaternion** -- unit quaternions with shape :math:`(*, 4)` in **XYZW**
  order (scalar last), as in ``scipy.spatial.transform.Rotation`` and roma.
  Beware that PyTorch3D uses WXYZ. ``q`` and ``-q`` describe the same
  rotation; :func:`matrix_to_quaternion` returns the representative with
  ``w >= 0``. Functions that take quaternions normalize them first, so any
  non-zero quaternion is accepted.
* **rot6d** -- the continuous 6D representation of Zhou et al. (2019) with
  shape :math:`(*, 6)`: the first two **columns** of the rotation matrix,
  concatenated, ``[R00, R10, R20, R01, R11, R21]``. Beware that PyTorch3D's
  ``matrix_to_rotation_6d`` uses the first two *rows* instead, so the two are
  not interchangeable (they differ by a transpose, i.e. an inverse rotation).

Numerics: no epsilon is ever added to a value. Where a formula divides by the
rotation angle (or by the sine of half of it), angles below ``1e-3`` rad are
evaluated with a Taylor expansion instead, selected with :func:`torch.where`;
the truncation error of these expansions is below ``1e-18``, far below
float64 resolution. The argument of each branch is clamped into that branch's
own range (``clamp_min`` / ``clamp_max``) so that the branch that is not
selected stays finite, and gradients are finite (not NaN) even at exactly
zero angle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal

import torch
from torch import Tensor

from ..errors import ShapeError, ValueCheckError

__all__ = [
    "REPRESENTATIONS",
    "Rotation",
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "axis_angle_to_rot6d",
    "convert",
    "geodesic_angle",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rot6d",
    "quaternion_to_axis_angle",
    "quaternion_to_matrix",
    "random_axis_angle",
    "random_rotation_matrix",
    "rot6d_to_axis_angle",
    "rot6d_to_matrix",
]

Rotation = Literal["axis_angle", "matrix", "rot6d", "quaternion"]
"""Names of the supported rotation representations."""

REPRESENTATIONS: dict[Rotation, tuple[int, ...]] = {
    "axis_angle": (3,),
    "matrix": (3, 3),
    "rot6d": (6,),
    "quaternion": (4,),
}
"""Trailing shape of each rotation representation."""

# Below this angle (radians) the Taylor branches are used. The expansions below
# keep terms up to theta**4, so their truncation error is O(1e-3 ** 6) = 1e-18.
_SMALL_ANGLE: Final[float] = 1e-3
_SMALL_ANGLE_SQ: Final[float] = _SMALL_ANGLE * _SMALL_ANGLE

_DESCRIPTIONS: Final[dict[str, str]] = {
    "axis_angle": "axis-angle vectors",
    "matrix": "rotation matrices",
    "rot6d": "6D rotations",
    "quaternion": "quaternions",
}


def _stack_matrix(entries: list[Tensor]) -> Tensor:
    r"""Stacks nine row-major entries, each with shape :math:`(*)`, into :math:`(*, 3, 3)`."""
    return torch.stack(entries, dim=-1).unflatten(-1, (3, 3))


def axis_angle_to_matrix(x: Tensor) -> Tensor:
    r"""Converts axis-angle vectors to rotation matrices (Rodrigues' formula).

    Computes :math:`R = I + a K + b K^2` where :math:`K` is the cross-product
    matrix of ``x``, :math:`\theta = \lVert x \rVert`,
    :math:`a = \sin\theta / \theta` and
    :math:`b = (1 - \cos\theta) / \theta^2 = 2 \sin^2(\theta/2) / \theta^2`.
    Angles below ``1e-3`` use a Taylor expansion of ``a`` and ``b``, so the
    result and its gradient are finite at exactly zero.

    Args:
        x: Axis-angle vectors (unit axis times angle in radians, right-hand
            rule) with shape :math:`(*, 3)`. Any finite vector is accepted;
            angles larger than :math:`\pi` wrap around.

    Returns:
        Rotation matrices acting on column vectors, with shape
        :math:`(*, 3, 3)`.
    """
    theta2 = (x * x).sum(dim=-1)
    small = theta2 < _SMALL_ANGLE_SQ

    t2 = theta2.clamp_max(_SMALL_ANGLE_SQ)
    a_small = 1.0 - t2 / 6.0 + t2 * t2 / 120.0
    b_small = 0.5 - t2 / 24.0 + t2 * t2 / 720.0

    theta = torch.sqrt(theta2.clamp_min(_SMALL_ANGLE_SQ))
    half_sinc = torch.sin(0.5 * theta) / theta
    a_large = torch.sin(theta) / theta
    b_large = 2.0 * half_sinc * half_sinc

    a = torch.where(small, a_small, a_large)
    b = torch.where(small, b_small, b_large)

    kx, ky, kz = x.unbind(dim=-1)
    xx, yy, zz = kx * kx, ky * ky, kz * kz
    bxy, bxz, byz = b * kx * ky, b * kx * kz, b * ky * kz
    ax, ay, az = a * kx, a * ky, a * kz
    return _stack_matrix(
        [
            1.0 - b * (yy + zz), bxy - az, bxz + ay,
            bxy + az, 1.0 - b * (xx + zz), byz - ax,
            bxz - ay, byz + ax, 1.0 - b * (xx + yy),
        ]
    )  # fmt: skip


def matrix_to_quaternion(R: Tensor) -> Tensor:
    r"""Converts rotation matrices to unit quaternions (XYZW, ``w >= 0``).

    Uses Shepperd's method: of the four algebraically equivalent formulas,
    the one dividing by the largest of :math:`4w^2, 4x^2, 4y^2, 4z^2` is used
    for each matrix. These four quantities sum to 4 for *any* 3x3 matrix, so
    the divisor is at least 1 and no epsilon is needed; the method is accurate
    for all angles, including near :math:`\pi`. The result is normalized,
    which also projects slightly non-orthogonal input onto a nearby rotation.

    Args:
        R: Rotation matrices acting on column vectors, with shape
            :math:`(*, 3, 3)`.

    Returns:
        Unit quaternions in XYZW order (scalar last) with shape
        :math:`(*, 4)` and ``w >= 0``. For a half turn (``w == 0``) ``q`` and
        ``-q`` are both canonical and either may be returned.
    """
    r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]

    # (4x^2, 4y^2, 4z^2, 4w^2); they sum to exactly 4.
    t = torch.stack(
        [
            1.0 + r00 - r11 - r22,
            1.0 - r00 + r11 - r22,
            1.0 - r00 - r11 + r22,
            1.0 + r00 + r11 + r22,
        ],
        dim=-1,
    )
    sxy, sxz, syz = r01 + r10, r02 + r20, r12 + r21
    dx, dy, dz = r21 - r12, r02 - r20, r10 - r01
    # Row i holds 4 * q_i * (x, y, z, w).
    candidates = torch.stack(
        [
            torch.stack([t[..., 0], sxy, sxz, dx], dim=-1),
            torch.stack([sxy, t[..., 1], syz, dy], dim=-1),
            torch.stack([sxz, syz, t[..., 2], dz], dim=-1),
            torch.stack([dx, dy, dz, t[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    best = t.argmax(dim=-1, keepdim=True)
    numerator = torch.take_along_dim(candidates, best.unsqueeze(-1), dim=-2).squeeze(-2)
    t_best = torch.take_along_dim(t, best, dim=-1)  # >= 1
    q = numerator / (2.0 * torch.sqrt(t_best))  # = sign(q_best) * q
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)  # norm >= 1/2
    return torch.where(q[..., 3:] < 0, -q, q)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    r"""Converts quaternions (XYZW) to rotation matrices.

    Args:
        q: Quaternions in XYZW order (scalar last) with shape :math:`(*, 4)`.
            They need not be normalized (the rotation of ``q / |q|`` is
            returned) but must be non-zero; ``q`` and ``-q`` give the same
            matrix.

    Returns:
        Rotation matrices acting on column vectors, with shape
        :math:`(*, 3, 3)`.
    """
    x, y, z, w = q.unbind(dim=-1)
    s = 2.0 / (q * q).sum(dim=-1)
    xx, yy, zz = s * x * x, s * y * y, s * z * z
    xy, xz, yz = s * x * y, s * x * z, s * y * z
    xw, yw, zw = s * x * w, s * y * w, s * z * w
    return _stack_matrix(
        [
            1.0 - (yy + zz), xy - zw, xz + yw,
            xy + zw, 1.0 - (xx + zz), yz - xw,
            xz - yw, yz + xw, 1.0 - (xx + yy),
        ]
    )  # fmt: skip


def axis_angle_to_quaternion(x: Tensor) -> Tensor:
    r"""Converts axis-angle vectors to unit quaternions (XYZW).

    Computes :math:`q = (\sin(\theta/2)\, x / \theta,\ \cos(\theta/2))` with
    :math:`\theta = \lVert x \rVert`; angles below ``1e-3`` use a Taylor
    expansion, so gradients are finite at exactly zero.

    The map is smooth and is *not* sign-canonicalized: ``w = cos(|x| / 2)`` is
    negative for angles larger than :math:`\pi`.

    Args:
        x: Axis-angle vectors (unit axis times angle in radians) with shape
            :math:`(*, 3)`.

    Returns:
        Unit quaternions in XYZW order (scalar last) with shape
        :math:`(*, 4)`.
    """
    theta2 = (x * x).sum(dim=-1)
    small = theta2 < _SMALL_ANGLE_SQ

    t2 = theta2.clamp_max(_SMALL_ANGLE_SQ)
    k_small = 0.5 - t2 / 48.0 + t2 * t2 / 3840.0  # sin(theta/2) / theta
    c_small = 1.0 - t2 / 8.0 + t2 * t2 / 384.0  # cos(theta/2)

    theta = torch.sqrt(theta2.clamp_min(_SMALL_ANGLE_SQ))
    k_large = torch.sin(0.5 * theta) / theta
    c_large = torch.cos(0.5 * theta)

    k = torch.where(small, k_small, k_large)
    c = torch.where(small, c_small, c_large)
    return torch.cat([x * k.unsqueeze(-1), c.unsqueeze(-1)], dim=-1)


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    r"""Converts quaternions (XYZW) to axis-angle vectors with angle in :math:`[0, \pi]`.

    The quaternion is normalized and flipped to ``w >= 0``; the angle is
    :math:`2 \operatorname{atan2}(\lVert v \rVert, w)` where ``v`` is the
    vector part, which is accurate at every angle including near :math:`\pi`.
    Small angles (``|v| < 1e-3``) use a Taylor expansion of
    :math:`2 \arcsin(s) / s`, so gradients are finite at the identity.

    Args:
        q: Quaternions in XYZW order (scalar last) with shape :math:`(*, 4)`.
            They need not be normalized but must be non-zero.

    Returns:
        Axis-angle vectors with shape :math:`(*, 3)` and norm (angle) in
        :math:`[0, \pi]`.
    """
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    q = torch.where(q[..., 3:] < 0, -q, q)
    v, w = q[..., :3], q[..., 3]
    s2 = (v * v).sum(dim=-1)
    small = s2 < _SMALL_ANGLE_SQ

    t2 = s2.clamp_max(_SMALL_ANGLE_SQ)
    f_small = 2.0 + t2 / 3.0 + 0.15 * t2 * t2  # 2 * asin(s) / s, since w = sqrt(1 - s^2)

    s = torch.sqrt(s2.clamp_min(_SMALL_ANGLE_SQ))
    f_large = 2.0 * torch.atan2(s, w) / s

    f = torch.where(small, f_small, f_large)
    return v * f.unsqueeze(-1)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    r"""Converts rotation matrices to axis-angle vectors with angle in :math:`[0, \pi]`.

    Goes through :func:`matrix_to_quaternion` (Shepperd's method) and
    :func:`quaternion_to_axis_angle`, which stays accurate near :math:`\pi`
    (where the skew-symmetric part of ``R`` vanishes) and has finite gradients
    at the identity. For an angle of exactly :math:`\pi` both ``x`` and ``-x``
    are valid answers and either may be returned.

    Args:
        R: Rotation matrices acting on column vectors, with shape
            :math:`(*, 3, 3)`.

    Returns:
        Axis-angle vectors with shape :math:`(*, 3)` and norm (angle) in
        :math:`[0, \pi]`.
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def matrix_to_rot6d(R: Tensor) -> Tensor:
    r"""Converts rotation matrices to the 6D representation (first two columns).

    The output is the first two **columns** of ``R`` concatenated,
    ``[R[..., 0, 0], R[..., 1, 0], R[..., 2, 0], R[..., 0, 1], R[..., 1, 1],
    R[..., 2, 1]]``, as in Zhou et al., "On the Continuity of Rotation
    Representations in Neural Networks" (CVPR 2019). This differs from
    PyTorch3D's ``matrix_to_rotation_6d``, which takes the first two *rows*.

    Args:
        R: Rotation matrices with shape :math:`(*, 3, 3)`.

    Returns:
        6D rotations with shape :math:`(*, 6)`.
    """
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def rot6d_to_matrix(x: Tensor) -> Tensor:
    r"""Converts 6D rotations to rotation matrices by Gram-Schmidt (Zhou et al. 2019).

    With ``a1 = x[..., :3]`` and ``a2 = x[..., 3:]``: the first column is
    ``a1 / |a1|``, the second is ``a2`` minus its projection on the first
    column, normalized, and the third is ``cross(c1, c2)``. The columns form
    the matrix, so ``rot6d_to_matrix(matrix_to_rot6d(R)) == R`` for rotations
    (see :func:`matrix_to_rot6d` for the column convention).

    Args:
        x: 6D rotations with shape :math:`(*, 6)`; they need not be
            orthonormal, but ``a1`` must be non-zero and ``a2`` must not be
            parallel to it (otherwise the result is not finite, since no
            epsilon is added).

    Returns:
        Rotation matrices with shape :math:`(*, 3, 3)`.
    """
    a1, a2 = x[..., :3], x[..., 3:]
    c1 = a1 / torch.linalg.vector_norm(a1, dim=-1, keepdim=True)
    c2 = a2 - (c1 * a2).sum(dim=-1, keepdim=True) * c1
    c2 = c2 / torch.linalg.vector_norm(c2, dim=-1, keepdim=True)
    c3 = torch.linalg.cross(c1, c2, dim=-1)
    return torch.stack([c1, c2, c3], dim=-1)


def axis_angle_to_rot6d(x: Tensor) -> Tensor:
    r"""Converts axis-angle vectors to 6D rotations (first two matrix columns).

    Args:
        x: Axis-angle vectors (unit axis times angle in radians) with shape
            :math:`(*, 3)`.

    Returns:
        6D rotations with shape :math:`(*, 6)`, see :func:`matrix_to_rot6d`.
    """
    return matrix_to_rot6d(axis_angle_to_matrix(x))


def rot6d_to_axis_angle(x: Tensor) -> Tensor:
    r"""Converts 6D rotations to axis-angle vectors with angle in :math:`[0, \pi]`.

    Args:
        x: 6D rotations with shape :math:`(*, 6)`, see :func:`rot6d_to_matrix`.

    Returns:
        Axis-angle vectors with shape :math:`(*, 3)`.
    """
    return matrix_to_axis_angle(rot6d_to_matrix(x))


def geodesic_angle(R1: Tensor, R2: Tensor) -> Tensor:
    r"""Returns the angle of the relative rotation :math:`R_1^\top R_2`, in :math:`[0, \pi]`.

    With :math:`M = R_1^\top R_2`, the angle is
    :math:`\operatorname{atan2}(\lVert \operatorname{vee}(M - M^\top) \rVert,\
    \operatorname{tr}(M) - 1)`, i.e. :math:`\operatorname{atan2}(2 \sin\theta,
    2 \cos\theta)`. Unlike :math:`\arccos((\operatorname{tr} M - 1) / 2)` this
    is accurate near 0 and near :math:`\pi` and needs no clamping; its
    gradient is finite everywhere (zero at :math:`R_1 = R_2`).

    Args:
        R1: Rotation matrices with shape :math:`(*, 3, 3)`.
        R2: Rotation matrices with shape :math:`(*, 3, 3)`; the batch shapes
            of ``R1`` and ``R2`` are broadcast.

    Returns:
        Angles in radians with shape :math:`(*)`.
    """
    m = R1.transpose(-1, -2) @ R2
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    skew = torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]],
        dim=-1,
    )
    return torch.atan2(torch.linalg.vector_norm(skew, dim=-1), trace - 1.0)


def _random_unit_quaternion(
    shape: int | Sequence[int],
    generator: torch.Generator | None,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
) -> Tensor:
    r"""Samples Haar-uniform unit quaternions with shape :math:`(*shape, 4)`."""
    batch = (shape,) if isinstance(shape, int) else tuple(shape)
    q = torch.randn((*batch, 4), generator=generator, dtype=dtype, device=device)
    return q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)


def random_rotation_matrix(
    shape: int | Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Samples rotation matrices uniformly (Haar measure) on SO(3).

    Normalizes standard Gaussian 4-vectors, which are uniform on the unit
    3-sphere, and maps them to matrices.

    Args:
        shape: Batch shape :math:`(*)` of the sample, an int or a sequence of
            ints (``()`` for a single matrix).
        generator: Random number generator; ``None`` uses torch's global RNG.
            All randomness is drawn from it. Its device must match ``device``.
        dtype: Floating dtype of the result; ``None`` uses torch's default.
        device: Device of the result; ``None`` uses torch's default.

    Returns:
        Rotation matrices with shape :math:`(*, 3, 3)`.
    """
    return quaternion_to_matrix(_random_unit_quaternion(shape, generator, dtype, device))


def random_axis_angle(
    shape: int | Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Samples axis-angle vectors of rotations uniform (Haar measure) on SO(3).

    The angles lie in :math:`[0, \pi]` with density
    :math:`(1 - \cos\theta) / \pi`; the axes are uniform on the sphere.

    Args:
        shape: Batch shape :math:`(*)` of the sample, an int or a sequence of
            ints (``()`` for a single vector).
        generator: Random number generator; ``None`` uses torch's global RNG.
            All randomness is drawn from it. Its device must match ``device``.
        dtype: Floating dtype of the result; ``None`` uses torch's default.
        device: Device of the result; ``None`` uses torch's default.

    Returns:
        Axis-angle vectors with shape :math:`(*, 3)`.
    """
    return quaternion_to_axis_angle(_random_unit_quaternion(shape, generator, dtype, device))


def _identity(x: Tensor) -> Tensor:
    return x


_TO_MATRIX: Final[dict[str, Callable[[Tensor], Tensor]]] = {
    "axis_angle": axis_angle_to_matrix,
    "matrix": _identity,
    "rot6d": rot6d_to_matrix,
    "quaternion": quaternion_to_matrix,
}
_FROM_MATRIX: Final[dict[str, Callable[[Tensor], Tensor]]] = {
    "axis_angle": matrix_to_axis_angle,
    "matrix": _identity,
    "rot6d": matrix_to_rot6d,
    "quaternion": matrix_to_quaternion,
}
_DIRECT: Final[dict[tuple[str, str], Callable[[Tensor], Tensor]]] = {
    ("axis_angle", "quaternion"): axis_angle_to_quaternion,
    ("quaternion", "axis_angle"): quaternion_to_axis_angle,
    ("axis_angle", "rot6d"): axis_angle_to_rot6d,
}


def _check_name(name: object, role: str) -> None:
    if not isinstance(name, str) or name not in REPRESENTATIONS:
        valid = ", ".join(repr(n) for n in REPRESENTATIONS)
        raise ValueError(f"unknown rotation representation {role}={name!r}; valid names are {valid}")


def _check_shape(x: Tensor, src: str) -> None:
    shape = tuple(x.shape)
    expected = REPRESENTATIONS[src]  # type: ignore[index]
    ok = shape[-len(expected) :] == expected and len(shape) >= len(expected)
    # A (..., 3, 3) tensor also ends in (3,); treat it as the likely mistake of
    # passing rotation matrices as axis-angle vectors.
    looks_like_matrix = src == "axis_angle" and shape[-2:] == (3, 3)
    if ok and not looks_like_matrix:
        return
    ndim = len(expected)
    hint = ""
    for other in ("matrix", "quaternion", "rot6d", "axis_angle"):  # (3, 3) before (3,)
        other_shape = REPRESENTATIONS[other]
        if other != src and shape[-len(other_shape) :] == other_shape:
            ndim = max(ndim, len(other_shape))
            hint = f"; did you pass {_DESCRIPTIONS[other]}? use src={other!r}"
            break
    if looks_like_matrix:
        hint += " (for a batch of exactly 3 axis-angle vectors, call the axis_angle_to_* functions directly)"
    got = shape[-ndim:]
    raise ShapeError(f"expected trailing shape {expected} for {src!r}, got {got}{hint} (input shape {shape})")


def convert(x: Tensor, src: Rotation, dst: Rotation) -> Tensor:
    r"""Converts rotations from representation ``src`` to representation ``dst``.

    Dedicated functions are used where they exist (e.g.
    :func:`axis_angle_to_quaternion`); other pairs go through rotation
    matrices. When ``src == dst`` the input is returned unchanged (not
    normalized or canonicalized).

    Args:
        x: Rotations in representation ``src``, with shape
            :math:`(*, \ldots)` where the trailing shape is
            ``REPRESENTATIONS[src]``.
        src: Representation of ``x``: ``"axis_angle"``, ``"matrix"``,
            ``"rot6d"`` or ``"quaternion"``.
        dst: Representation of the result, one of the same names.

    Returns:
        The same rotations in representation ``dst``, with shape
        :math:`(*, \ldots)` where the trailing shape is
        ``REPRESENTATIONS[dst]``.

    Raises:
        ValueError: If ``src`` or ``dst`` is not a known representation.
        poseprior.ShapeError: (a ``ValueError``) If the trailing shape of
            ``x`` does not match ``src``. Because a :math:`(*, 3, 3)` tensor
            is almost always a batch of matrices, it is rejected for
            ``src="axis_angle"``; call the ``axis_angle_to_*`` functions
            directly for a batch whose last batch dimension is 3.
        poseprior.ValueCheckError: (a ``ValueError``) If ``x`` is not
            floating-point.
        TypeError: If ``x`` is not a tensor.
    """
    _check_name(src, "src")
    _check_name(dst, "dst")
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueCheckError(f"expected a floating-point tensor, got dtype {x.dtype}; use x.float()")
    _check_shape(x, src)
    if src == dst:
        return x
    direct = _DIRECT.get((src, dst))
    if direct is not None:
        return direct(x)
    return _FROM_MATRIX[dst](_TO_MATRIX[src](x))
