r"""Joint-position errors that pose pipelines report: MPJPE, PA-MPJPE and PCK, for body or hand joints.

Every function takes predicted and true joint positions with shape :math:`(N, J, 3)` (any joint
set: the 22 body joints of :mod:`poseprior.kinematics`, 21 hand keypoints, ...) and an optional
mask of the joints to score, with shape :math:`(J,)` or :math:`(N, J)`.

**PA-MPJPE** first aligns each predicted frame to the true one with the similarity transform
(scale :math:`s`, rotation :math:`R`, translation :math:`t`) minimizing
:math:`\sum_j \lVert s R p_j + t - y_j \rVert^2` over the masked joints (Umeyama 1991: an SVD of the
cross-covariance, with the sign of the last singular vector fixed so :math:`R` is a rotation, not a
reflection), then takes the MPJPE over the same joints. It removes global rotation, scale and
position, and so measures the articulated pose alone.

**PCK** at ``threshold`` is the fraction of (masked) joints within ``threshold`` of the truth
(:math:`\lVert p_j - y_j \rVert \le` threshold), optionally after the same alignment.

These are re-exported by :mod:`poseprior.fitting`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import ShapeError

__all__ = ["mpjpe", "pa_mpjpe", "pck", "procrustes_align"]


def _check(a: Tensor, b: Tensor, mask: Tensor | None, where: str) -> Tensor:
    """Validates ``a``, ``b`` with shape (N, J, 3) and the mask; returns the mask as (N, J) booleans."""
    for name, t in (("pred", a), ("target", b)):
        if not isinstance(t, Tensor) or t.dim() != 3 or t.shape[-1] != 3:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ShapeError(f"{where}: {name} must be joint positions with shape (N, J, 3), got {got}")
    if a.shape != b.shape:
        raise ShapeError(
            f"{where}: pred and target must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n, j = a.shape[:2]
    if mask is None:
        return torch.ones(n, j, dtype=torch.bool, device=a.device)
    if mask.dtype != torch.bool or mask.shape not in ((j,), (n, j)):
        raise ShapeError(
            f"{where}: mask must be booleans with shape ({j},) or ({n}, {j}), "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask.to(a.device).expand(n, j)


def mpjpe(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    r"""Mean per-joint position error :math:`\frac{1}{|M|}\sum \lVert a - b \rVert` over a joint mask.

    Arguments:
        a: Joint positions with shape :math:`(N, J, 3)`.
        b: Joint positions with shape :math:`(N, J, 3)`.
        mask: Joints to include, with shape :math:`(J,)` or :math:`(N, J)`; all if ``None``.

    Returns:
        The mean distance, in the units of ``a`` and ``b``.
    """
    dist = torch.linalg.vector_norm(a - b, dim=-1)
    if mask is None:
        return float(dist.mean())
    m = mask.expand_as(dist)
    return float(dist[m].mean())


def procrustes_align(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""``pred`` moved onto ``target`` by the best similarity transform, frame by frame (see the module docs).

    Arguments:
        pred: Joint positions with shape :math:`(N, J, 3)`.
        target: Joint positions with shape :math:`(N, J, 3)`.
        mask: The joints the transform is fitted to, :math:`(J,)` or :math:`(N, J)`, at least 3 per
            frame; all if ``None``. Every joint is transformed.

    Returns:
        The aligned prediction, with shape :math:`(N, J, 3)`, in ``pred``'s dtype.
    """
    return _align(pred, target, _check(pred, target, mask, "procrustes_align"), "procrustes_align")


def _align(pred: Tensor, target: Tensor, m: Tensor, where: str) -> Tensor:
    """:func:`procrustes_align` with a checked (N, J) mask."""
    counts = m.sum(1)
    if bool((counts < 3).any()):
        raise ShapeError(
            f"{where}: every frame needs at least 3 joints in the mask to fix a rotation; frame "
            f"{int((counts < 3).nonzero()[0])} has {int(counts.min())}"
        )
    p, y = pred.double(), target.double()
    w = m.double().unsqueeze(-1)  # (N, J, 1)
    mu_p = (w * p).sum(1, keepdim=True) / counts.view(-1, 1, 1)
    mu_y = (w * y).sum(1, keepdim=True) / counts.view(-1, 1, 1)
    pc, yc = p - mu_p, y - mu_y
    cross = (w * yc).transpose(1, 2) @ pc  # (N, 3, 3): sum_j y_j p_j^T
    u, s, vh = torch.linalg.svd(cross)
    d = torch.ones_like(s)
    d[:, -1] = torch.sign(torch.linalg.det(u @ vh))  # a rotation, not a reflection
    d[:, -1][d[:, -1] == 0] = 1.0
    rot = u @ torch.diag_embed(d) @ vh
    var = (w * pc.pow(2)).sum((1, 2))
    scale = (s * d).sum(-1) / var.clamp_min(torch.finfo(var.dtype).tiny)
    aligned = scale.view(-1, 1, 1) * pc @ rot.transpose(1, 2) + mu_y
    return aligned.to(pred.dtype)


def pa_mpjpe(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    r"""Procrustes-aligned MPJPE: :func:`mpjpe` after :func:`procrustes_align` on the same joints.

    Arguments:
        pred: Predicted joint positions with shape :math:`(N, J, 3)`.
        target: True joint positions with shape :math:`(N, J, 3)`.
        mask: Joints to align on and score, :math:`(J,)` or :math:`(N, J)`; all if ``None``.

    Returns:
        The mean distance after alignment, in the units of the inputs.

    Example:
        >>> y = torch.tensor([[[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]]])
        >>> p = y * torch.tensor([1.0, 2.0, 1.0])       # stretched along y
        >>> round(mpjpe(p, y), 6), round(pa_mpjpe(p, y), 6)
        (0.5, 0.3)
    """
    m = _check(pred, target, mask, "pa_mpjpe")
    return mpjpe(_align(pred, target, m, "pa_mpjpe"), target, m)


def pck(
    pred: Tensor, target: Tensor, threshold: float, mask: Tensor | None = None, *, align: bool = False
) -> float:
    r"""Percentage of correct keypoints, as a fraction in :math:`[0, 1]`: joints within ``threshold``.

    Arguments:
        pred: Predicted joint positions with shape :math:`(N, J, 3)`.
        target: True joint positions with shape :math:`(N, J, 3)`.
        threshold: The distance, in the units of the inputs (e.g. 0.05 for 50 mm in metres), >= 0.
        mask: Joints to score, :math:`(J,)` or :math:`(N, J)`; all if ``None``.
        align: Score after :func:`procrustes_align` on the masked joints (PA-PCK).
    """
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"pck: threshold must be a finite distance >= 0, got {threshold!r}")
    m = _check(pred, target, mask, "pck")
    if align:
        pred = _align(pred, target, m, "pck")
    dist = torch.linalg.vector_norm(pred.double() - target.double(), dim=-1)
    return float((dist[m] <= threshold).double().mean())
