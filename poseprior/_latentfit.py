r"""Latent-space fitting of body poses to 3D joints with a VAE prior (VPoser-style).

Public as :func:`poseprior.fitting.fit_to_joints_latent` and :class:`poseprior.fitting.LatentFitResult`;
it reuses the checks, root estimate and body models of :mod:`poseprior.fitting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from .base import PosePrior
from .fitting import (
    DEFAULT_WEIGHT,
    BodyModel,
    FitResult,
    SkeletonFK,
    _broadcast,
    _check_observed,
    _check_prior,
    _estimate_root,
    _eval_mode,
)

__all__ = ["LatentFitResult", "fit_to_joints_latent"]


@dataclass
class LatentFitResult(FitResult):
    r"""The result of :func:`fit_to_joints_latent`: a :class:`~poseprior.fitting.FitResult` and the codes.

    Attributes:
        latent: The fitted latent codes, with shape :math:`(N, L)`; ``body_pose`` is their decoding.
    """

    latent: Tensor | None = None


def fit_to_joints_latent(
    observed: Tensor,
    prior: PosePrior,
    *,
    visible: Tensor | None = None,
    weight: float = DEFAULT_WEIGHT,
    steps: int = 200,
    lr: float | None = None,
    fk: BodyModel | None = None,
    init: Tensor | FitResult | None = None,
    fit_root: bool = True,
    root_orient: Tensor | None = None,
    trans: Tensor | None = None,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
) -> LatentFitResult:
    r"""Like :func:`~poseprior.fitting.fit_to_joints`, optimizing a VAE prior's latent codes (VPoser-style).

    The body pose is ``prior.decode(z)``, so it stays on the decoder's pose manifold, and the
    prior term is the latent Gaussian's, per latent dimension (SMPLify-X with VPoser):

    .. math::

        E_n = \frac{1}{|V_n|} \sum_{j \in V_n}
              \lVert \mathrm{FK}(\mathrm{dec}(z_n), R_n, t_n)_j - y_{nj} \rVert^2
              \;+\; w \, \frac{\lVert z_n \rVert^2}{2L}

    The arguments are those of :func:`~poseprior.fitting.fit_to_joints`, except:

    Arguments:
        prior: A prior over the ``"body"`` layout with one latent code per pose: ``encode``,
            ``decode`` and ``latent_dim`` (``create("vae")`` or an imported VPoser).
        weight: The weight :math:`w` of the latent penalty (nats per latent dimension).
        init: Initial codes :math:`(N, L)` or :math:`(L,)`; initial body poses :math:`(N, 21, 3)`
            or :math:`(21, 3)` (their posterior means ``encode(init).loc`` start the codes); a
            previous :class:`~poseprior.fitting.FitResult` (its pose, root and translation; a
            :class:`LatentFitResult`'s codes are reused); or ``None``: zero codes.

    Returns:
        A :class:`LatentFitResult` with detached tensors in the dtype of ``observed``.
    """
    fk = SkeletonFK() if fk is None else fk
    obs, mask = _check_observed(observed, visible)
    _check_prior(prior)
    latent_dim = getattr(prior, "latent_dim", None)
    one_code = tuple(getattr(prior, "latent_shape", ())) == (latent_dim,)
    if not callable(getattr(prior, "decode", None)) or not one_code:
        raise TypeError(
            f"fit_to_joints_latent: the prior needs one latent code per pose (encode/decode/latent_dim, e.g. "
            f"create('vae')), got {type(prior).__name__}; fit the pose itself with fit_to_joints"
        )
    lr = _check_options(weight, steps, lr, optimizer)
    n, dtype = obs.shape[0], obs.dtype
    if isinstance(init, FitResult):
        root_orient = init.root_orient if root_orient is None else root_orient
        trans = init.trans if trans is None else trans
        codes = init.latent if isinstance(init, LatentFitResult) else None
        init = init.body_pose if codes is None else codes
    z0 = _initial_codes(prior, init, n, latent_dim)
    with _eval_mode(prior), torch.no_grad():
        pose0 = prior.decode(z0).to(dtype)
    root, tr = _root_and_trans(fk, obs, mask, pose0, root_orient, trans, fit_root)
    z = z0.detach().clone().requires_grad_(True)
    wmask = mask.to(dtype)
    count = wmask.sum(-1)

    def terms() -> tuple[Tensor, Tensor]:
        joints = fk(prior.decode(z).to(dtype), root, tr)
        data = (((joints - obs).pow(2).sum(-1) * wmask).sum(-1) / count).mean()
        return data, (0.5 * z.pow(2).sum(-1).mean() / latent_dim).to(dtype)

    with _eval_mode(prior):
        history = _minimize([z, root, tr] if fit_root else [z], terms, weight, optimizer, steps, lr)
        with torch.no_grad():
            body = prior.decode(z).to(dtype)
            joints = fk(body, root, tr)
    return LatentFitResult(body_pose=body, root_orient=root.detach(), trans=tr.detach(), joints=joints,
                           history=history, latent=z.detach())


def _root_and_trans(
    fk: BodyModel, obs: Tensor, mask: Tensor, pose: Tensor, root: Tensor | None, trans: Tensor | None,
    fit: bool,
) -> tuple[Tensor, Tensor]:
    """Fresh (N, 3) root orientation and translation leaves: given, estimated from the torso, or zero."""
    n = obs.shape[0]
    root = _broadcast(root, (n, 3), "root_orient", obs) if root is not None else None
    trans = _broadcast(trans, (n, 3), "trans", obs) if trans is not None else None
    if fit and (root is None or trans is None):
        est_root, est_trans = _estimate_root(fk, obs, mask, pose, root)
        root, trans = (est_root if root is None else root), (est_trans if trans is None else trans)
    root = obs.new_zeros(n, 3) if root is None else root
    trans = obs.new_zeros(n, 3) if trans is None else trans
    return root.detach().clone().requires_grad_(fit), trans.detach().clone().requires_grad_(fit)


def _initial_codes(prior: PosePrior, init: Tensor | None, n: int, latent_dim: int) -> Tensor:
    """(N, L) starting codes: zeros, the given codes, or the posterior means of the given poses."""
    ref = prior.data_mean
    if init is None:
        return ref.new_zeros(n, latent_dim)
    pose = not isinstance(init, Tensor) or tuple(init.shape[-2:]) == (21, 3)
    if not pose:
        return _broadcast(init, (n, latent_dim), "init", ref)
    with _eval_mode(prior), torch.no_grad():
        return prior.encode(_broadcast(init, (n, 21, 3), "init", ref)).loc


def _check_options(weight: float, steps: int, lr: float | None, optimizer: str) -> float:
    """Checks the options of :func:`fit_to_joints_latent`; returns the learning rate."""
    where = "fit_to_joints_latent"
    if optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"{where}: optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"{where}: steps must be a non-negative int, got {steps!r}")
    lr = (1.0 if optimizer == "lbfgs" else 0.1) if lr is None else lr
    for name, value, low_ok in (("weight", weight, True), ("lr", lr, False)):
        number = isinstance(value, (int, float)) and math.isfinite(value)
        if not (number and (value >= 0 if low_ok else value > 0)):
            bound = ">= 0" if low_ok else "> 0"
            raise ValueError(f"{where}: {name} must be a finite number {bound}, got {value!r}")
    return float(lr)


class _Terms(Protocol):
    def __call__(self) -> tuple[Tensor, Tensor]: ...  # (data term, prior term), scalars


def _minimize(
    params: list[Tensor], terms: _Terms, weight: float, optimizer: str, steps: int, lr: float
) -> list[dict[str, float]]:
    """Minimizes ``data + weight * prior`` (from ``terms()``) over ``params``; returns the history."""
    history: list[dict[str, float]] = []

    def closure() -> Tensor:
        data, pen = terms()
        loss = data + weight * pen
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"fit_to_joints_latent: the loss became {float(loss)} at evaluation {len(history)} (data "
                f"{float(data)}, prior {float(pen)}); lower lr or give a better init"
            )
        for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
            p.grad = g.contiguous()  # L-BFGS flattens the gradients with view()
        history.append(
            {"loss": float(loss.detach()), "data": float(data.detach()), "prior": float(pen.detach())}
        )
        return loss.detach()

    if steps == 0:
        return history
    if optimizer == "lbfgs":  # all iterations in one call, as fit_to_joints
        torch.optim.LBFGS(params, lr=lr, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                          tolerance_grad=1e-12, tolerance_change=1e-15).step(closure)
        return history
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.01)
    for _ in range(steps):
        opt.step(closure)
        sched.step()
    return history
