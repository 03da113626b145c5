r"""Independent Gaussians over some of a pose's values: the anatomical part and the broad component.

:class:`IndependentGaussian` holds :math:`\mathcal{N}(x_i \mid \mu_i, \sigma_i^2)` for the values
:math:`i` of its *support* (a boolean mask over the :math:`3J` values of a pose) as three buffers:
``loc``, ``inv_scale`` (:math:`1/\sigma_i` on the support, 0 elsewhere) and ``log_norm`` (the
normalizing constant). Its log-density is a few elementwise operations over all :math:`3J` values,
with no index selection, so it costs almost nothing at batch 1 inside an optimizer loop, and the
fused density of ``global_flow`` folds the same constants into its pass (:meth:`constants`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._rng import randn

__all__ = ["GaussianConstants", "IndependentGaussian"]


class GaussianConstants(NamedTuple):
    r"""An independent Gaussian as the constants of ``log_const - |x * inv_scale + shift|^2 / 2``.

    ``shift = -loc * inv_scale`` and ``neg_inv_scale = -inv_scale`` (0 off the support), so the
    standardized values are one ``addcmul`` and the gradient ``zs * neg_inv_scale``; ``log_const``
    (a 0-d tensor) is the normalizing constant plus any log mixture weight.
    """

    shift: Tensor
    inv_scale: Tensor
    neg_inv_scale: Tensor
    log_const: Tensor


class IndependentGaussian(nn.Module):
    r"""Independent Gaussians over the values of ``support`` among ``n`` values (see the module docs).

    Arguments:
        n: The number of values of a pose, :math:`3J`.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(n))
        self.register_buffer("inv_scale", torch.zeros(n))
        self.register_buffer("log_norm", torch.zeros(()))

    @property
    def support(self) -> Tensor:
        """Boolean mask with shape :math:`(n,)`: the values this Gaussian is a density of."""
        return self.inv_scale > 0

    @torch.no_grad()
    def set(self, loc: Tensor, scale: Tensor, support: Tensor) -> None:
        r"""Sets the means ``loc`` and standard deviations ``scale`` (each :math:`(n,)`) on ``support``."""
        scale = scale.double()
        if bool((scale[support] <= 0).any()) or not bool(torch.isfinite(scale[support]).all()):
            raise ValueError(
                "IndependentGaussian.set: every standard deviation on the support must be finite and > 0"
            )
        self.loc.copy_(torch.where(support, loc.to(self.loc), torch.zeros_like(self.loc)))
        inv = torch.where(support, scale.reciprocal(), torch.zeros_like(scale))
        self.inv_scale.copy_(inv)
        k = int(support.sum())
        self.log_norm.copy_(-(scale[support].log().sum() + 0.5 * k * math.log(2 * math.pi)))

    def log_prob(self, flat: Tensor) -> Tensor:
        r"""The log-density of the support's values of ``flat`` :math:`(N, n)`, with shape :math:`(N,)`."""
        z = (flat - self.loc) * self.inv_scale
        return self.log_norm - 0.5 * z.square().sum(-1)

    def sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        r"""Draws :math:`(n, k)` values of the :math:`k` support values, in order (no gradients)."""
        support = self.support
        eps = randn((n, int(support.sum())), generator, self.loc)
        return self.loc[support] + eps / self.inv_scale[support]

    def constants(self, log_weight: float = 0.0) -> GaussianConstants:
        """The constants of the log-density (for fused code), with ``log_weight`` added to the constant."""
        inv = self.inv_scale
        return GaussianConstants(-self.loc * inv, inv, -inv, self.log_norm + log_weight)
