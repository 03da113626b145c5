r"""The Gaussian baseline prior: per-value (diagonal) or full-covariance Gaussian."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .._checks import check_number
from .._rng import randn
from ..base import PosePrior
from ..formats.layouts import JointLayout
from ..registry import register_prior


@register_prior("gaussian")
class GaussianPrior(PosePrior):
    r"""Creates a multivariate Gaussian prior over the learned axis-angle values.

    .. math:: p(x_L) = \mathcal{N}(x_L \mid \mu, \Sigma)

    ``covariance="diagonal"`` gives independent per-joint Gaussians (6 parameters per joint);
    ``"full"`` a full covariance over all modelled values. :meth:`fit` is closed form.

    **Variance floor.** Small motion-capture sets have directions that barely move (e.g. a knee
    that only flexes about one axis). :meth:`fit` floors the standard deviation of every
    direction at ``min_std`` radians: the eigenvalues of the full covariance, or the per-value
    variances of the diagonal one. A pose that moves 2 degrees along such a direction then costs
    about :math:`\frac12 (0.035 / \mathrm{min\_std})^2` nats, not thousands.

    Arguments:
        layout: The joints modelled (see :class:`~poseprior.PosePrior`).
        covariance: ``"full"`` or ``"diagonal"``.
        min_std: Floor of the standard deviation of every direction, in radians.
        reg_covar: Non-negative value added to the covariance diagonal in :meth:`fit` (rad²).
        shrinkage: :math:`\lambda \in [0, 1]`: :meth:`fit` shrinks the covariance toward its diagonal,
            :math:`(1 - \lambda) \Sigma + \lambda \operatorname{diag}(\Sigma)` (the correlations by
            :math:`1 - \lambda`, the variances kept; a shrunk covariance estimate, as in
            scikit-learn's ``ShrunkCovariance``), so correlations seen in the training motion are
            trusted less on other motion. No effect on the ``"diagonal"`` covariance.

    The defaults (``min_std=0.02``, ``shrinkage=0.2``, a broad component of weight 0.02 and scale
    1.25) were chosen on motion the prior was not trained on (``benchmarks/tune_defaults.py``,
    ``docs/generalization.md``).
        exclude: See :class:`~poseprior.PosePrior`.
        anatomical: See :class:`~poseprior.PosePrior`.
        broad_weight: See :class:`~poseprior.PosePrior` (the broad component).
        broad_scale: See :class:`~poseprior.PosePrior`.

    Example:
        >>> prior = GaussianPrior("body")
        >>> prior.sample((2,), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 21, 3])
    """

    iterative_fit = False

    def __init__(
        self,
        layout: str | JointLayout = "body",
        covariance: Literal["full", "diagonal"] = "full",
        min_std: float = 0.02,
        reg_covar: float = 0.0,
        shrinkage: float = 0.2,
        *,
        exclude: Sequence[int] | None = None,
        anatomical: Sequence[int] | None = None,
        broad_weight: float = 0.02,
        broad_scale: float = 1.25,
    ) -> None:
        super().__init__(
            layout,
            min_std=min_std,
            exclude=exclude,
            anatomical=anatomical,
            broad_weight=broad_weight,
            broad_scale=broad_scale,
        )
        if covariance not in ("full", "diagonal"):
            raise ValueError(f"covariance must be 'full' or 'diagonal', got {covariance!r}")
        self.covariance = covariance
        self.reg_covar = check_number("reg_covar", reg_covar, strict=False)
        self.shrinkage = check_number("shrinkage", shrinkage, strict=False)
        if self.shrinkage > 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage!r}")
        self._rebuild()

    @classmethod
    def upgrade_checkpoint(
        cls, version: int, config: dict[str, Any], state: dict[str, Tensor]
    ) -> tuple[dict, dict]:
        """Version 1 did not shrink the covariance."""
        config, state = super().upgrade_checkpoint(version, config, state)
        return {**config, "shrinkage": 0.0}, state

    def _rebuild(self) -> None:
        d = self.model_dim
        self.loc = nn.Parameter(torch.zeros(d, dtype=self.data_mean.dtype, device=self.data_mean.device))
        if self.covariance == "full":
            self.scale_tril = nn.Parameter(torch.eye(d, dtype=self.loc.dtype, device=self.loc.device))
        else:
            self.log_scale = nn.Parameter(torch.zeros(d, dtype=self.loc.dtype, device=self.loc.device))

    def _tril(self) -> Tensor:
        if self.covariance == "full":
            return self.scale_tril.tril()
        return torch.diag(self.log_scale.exp())

    def _log_prob(self, x: Tensor) -> Tensor:
        z = self._select(x) - self.loc
        if self.covariance == "full":
            # solve_triangular reads only the lower triangle (and its gradient stays in it), so no
            # tril() copy is needed; one solve for all N right-hand sides is much faster than N.
            y = torch.linalg.solve_triangular(self.scale_tril.mT, z, upper=True, left=False)  # z L^-T
            log_det = self.scale_tril.diagonal().abs().log().sum()
        else:
            y = z * torch.exp(-self.log_scale)
            log_det = self.log_scale.sum()
        return -0.5 * y.pow(2).sum(-1) - log_det - 0.5 * self.model_dim * math.log(2 * math.pi)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        eps = randn((n, self.model_dim), generator, self.loc)
        return self._fill(self.loc + eps @ self._tril().T)

    def _fit(self, x: Tensor, **options: Any) -> None:
        """Closed form: the mean and the covariance with its eigenvalues floored at ``min_std**2``.

        The options (``val``, ``generator``, ``progress``) are accepted for a uniform interface and unused.
        """
        z = self._select(x).double()
        mean = z.mean(0)
        centred = z - mean
        floor = self.min_std**2
        with torch.no_grad():
            self.loc.copy_(mean)
            if self.covariance == "full":
                cov = centred.T @ centred / z.shape[0]
                cov = (1.0 - self.shrinkage) * cov + self.shrinkage * torch.diag(cov.diagonal())
                cov = cov + self.reg_covar * torch.eye(self.model_dim, dtype=cov.dtype)
                evals, evecs = torch.linalg.eigh(cov)
                cov = (evecs * evals.clamp_min(floor)) @ evecs.T
                self.scale_tril.copy_(torch.linalg.cholesky(0.5 * (cov + cov.T)))
            else:
                var = centred.pow(2).mean(0) + self.reg_covar
                self.log_scale.copy_(0.5 * var.clamp_min(floor).log())
