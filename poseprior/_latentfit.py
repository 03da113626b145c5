r"""Latent-space fitting of body poses to 3D joints with a VAE prior (VPoser-style).

Public as :func:`poseprior.fitting.fit_to_joints_latent` and :class:`poseprior.fitting.LatentFitResult`;
it reuses the checks, root estimate and body models of :mod:`poseprior.fitting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

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
    _eval_mode,
    _optimize,
    _starting_values,
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
    start = _starting_values(fk, obs, mask, pose0, root_orient, trans, fit_root)
    root, tr = (v.detach().clone().requires_grad_(fit_root) for v in start[1:])
    z = z0.detach().clone().requires_grad_(True)
    wmask = mask.to(dtype)
    count = wmask.sum(-1)

    def objective() -> tuple[Tensor, Tensor, Tensor]:
        joints = fk(prior.decode(z).to(dtype), root, tr)
        data = (((joints - obs).pow(2).sum(-1) * wmask).sum(-1) / count).mean()
        pen = (0.5 * z.pow(2).sum(-1).mean() / latent_dim).to(dtype)
        return data + weight * pen, data, pen

    params = [z, root, tr] if fit_root else [z]
    history = _optimize(params, objective, optimizer, lr, steps, prior, where="fit_to_joints_latent")
    with _eval_mode(prior), torch.no_grad():
        body = prior.decode(z).to(dtype)
        joints = fk(body, root, tr)
    return LatentFitResult(body_pose=body, root_orient=root.detach(), trans=tr.detach(), joints=joints,
                           history=history, latent=z.detach())


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
