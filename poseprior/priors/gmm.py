r"""A Gaussian mixture prior (SMPLify's pose prior), fitted by EM."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .._rng import rand, randn
from ..base import PosePrior
from ..formats.layouts import JointLayout
from ..registry import register_prior

__all__ = ["GMMPrior", "fit_mixture"]

log = logging.getLogger("poseprior")

_LOG_2PI = math.log(2.0 * math.pi)


@register_prior("gmm")
class GMMPrior(PosePrior):
    r"""Creates a Gaussian mixture prior over the learned axis-angle values.

    .. math:: p(x_L) = \sum_{m=1}^{M} \pi_m \, \mathcal{N}(x_L \mid \mu_m, \Sigma_m)

    with :math:`M` = ``n_components`` full-covariance components: SMPLify's pose prior (8
    components) over any layout. :meth:`fit` runs EM (:func:`fit_mixture`) from a k-means++
    initialization drawn with fit's ``generator``; ``log_prob`` is exact (a logsumexp over the
    components). Each component is stored as its mean and the Cholesky factor of its precision,
    so a log-density costs one matrix product per component.

    **Variance floor.** Like :class:`~poseprior.priors.gaussian.GaussianPrior`, every M-step
    floors the eigenvalues of each component's covariance at ``min_std**2`` (the constrained
    maximum-likelihood update, so EM still increases the likelihood), so a pose that moves a few
    degrees along a direction a component never saw costs a few nats, not thousands.

    **SMPLify's energy.** ``penalty(x, kind="max_component")`` is SMPLify's "max over
    components" energy :math:`-\max_m \log\big(\pi_m \mathcal{N}(x_L \mid \mu_m, \Sigma_m)\big)`
    (the broad component, if any, is one more term of the max; anatomical values add their cost).
    It is not a normalized density: it is at least :math:`-\log p(x)` and at most
    :math:`\log M` above it. SMPLify's ``MaxMixturePrior`` computes the same energy up to an
    additive constant. Published SMPLify weights load with :func:`poseprior.importers.import_smplify_gmm`.

    Arguments:
        layout: The joints modelled (see :class:`~poseprior.PosePrior`).
        n_components: The number of mixture components :math:`M`.
        min_std: Floor of the standard deviation of every direction of every component, in radians.
        exclude: See :class:`~poseprior.PosePrior`.
        anatomical: See :class:`~poseprior.PosePrior`.
        broad_weight: See :class:`~poseprior.PosePrior` (the broad component).
        broad_scale: See :class:`~poseprior.PosePrior`.

    The defaults (8 components, ``min_std=0.02``, a broad component of weight 0.02 and scale 1.25)
    were chosen on motion the prior was not trained on (``benchmarks/tune_defaults.py``,
    ``docs/generalization.md``).

    Example:
        >>> prior = GMMPrior("left_hand", n_components=3)
        >>> x = 0.3 * torch.randn(500, 15, 3, generator=torch.Generator().manual_seed(0))
        >>> prior.fit(x, generator=torch.Generator().manual_seed(0)).log_prob(x[:2]).shape
        torch.Size([2])
    """

    iterative_fit = False
    fit_defaults = {"max_iter": 200, "tol": 1e-4, "n_init": 3}
    """EM: at most ``max_iter`` iterations, until the mean log-likelihood per pose gains < ``tol`` nats;
    ``n_init`` runs from successive k-means++ seedings, keeping the highest training likelihood (EM's
    local optima differ by up to 7 nats per pose on the bundled data: see ``docs/priors/gmm.md``)."""

    def __init__(
        self,
        layout: str | JointLayout = "body",
        n_components: int = 8,
        min_std: float = 0.02,
        *,
        exclude: Sequence[int] | None = None,
        anatomical: Sequence[int] | None = None,
        broad_weight: float = 0.02,
        broad_scale: float = 1.25,
    ) -> None:
        super().__init__(layout, min_std=min_std, exclude=exclude, anatomical=anatomical,
                         broad_weight=broad_weight, broad_scale=broad_scale)
        if not isinstance(n_components, int) or isinstance(n_components, bool) or n_components < 1:
            raise ValueError(f"GMMPrior: n_components must be a positive int, got {n_components!r}")
        self.n_components = n_components
        self._rebuild()

    def _rebuild(self) -> None:
        m, d = self.n_components, self.model_dim
        ref = self.data_mean
        self.loc = nn.Parameter(ref.new_zeros(m, d))
        self.precision_tril = nn.Parameter(torch.eye(d, dtype=ref.dtype, device=ref.device).repeat(m, 1, 1))
        self.logits = nn.Parameter(ref.new_zeros(m))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_components={self.n_components}"

    # ------------------------------------------------------------------ public API
    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        r"""The mixture over the learned values: weights (M,), means (M, d) and covariances (M, d, d).

        :math:`d` is :attr:`model_dim`; the values are those of :meth:`learned_mask`, in order.
        """
        with torch.no_grad():
            covariances = torch.cholesky_inverse(self.precision_tril.tril())  # (L_P L_P^T)^-1
            return self.logits.softmax(-1), self.loc.clone(), covariances

    def penalty(
        self, x: Tensor, per_dim: bool = False, kind: Literal["mixture", "max_component"] = "mixture"
    ) -> Tensor:
        r"""Regularization term with shape :math:`(*)`: :math:`-\log p(x)`, or SMPLify's max-component energy.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.
            per_dim: Divide by :math:`D` (weights then transfer between priors).
            kind: ``"mixture"``: :math:`-\log p(x)` (exact); ``"max_component"``:
                :math:`-\max_m \log(\pi_m \mathcal{N}_m)` as SMPLify (not a normalized density;
                see the class docs).
        """
        if kind == "mixture":
            return super().penalty(x, per_dim)
        if kind != "max_component":
            raise ValueError(f"GMMPrior.penalty: kind must be 'mixture' or 'max_component', got {kind!r}")
        x = self._check(x, "penalty")
        batch = x.shape[:-2]
        if batch.numel() == 0:
            return x.new_zeros(batch)
        flat = x.reshape(-1, *self.event_shape)
        terms = self._component_log_prob(self._select(flat))  # (N, M)
        values = flat.reshape(flat.shape[0], -1)
        if self.broad is not None:
            broad = self.broad.log_prob(values) + math.log(self.broad_weight)
            terms = torch.cat([terms + math.log1p(-self.broad_weight), broad[:, None]], dim=-1)
        lp = terms.amax(-1)
        if self.dim > self.model_dim:
            lp = lp + self.anatomy.log_prob(values)
        nll = -lp.reshape(batch)
        return nll / self.dim if per_dim else nll

    # ------------------------------------------------------------------ hooks
    def _component_log_prob(self, z: Tensor) -> Tensor:
        """(N, d) learned values -> (N, M): log(pi_m N(z | mu_m, Sigma_m)) of every component."""
        tril = self.precision_tril.tril()
        y = (z.unsqueeze(0) - self.loc.unsqueeze(1)) @ tril  # (M, N, d)
        half_log_det = tril.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)  # log det(Sigma)^(-1/2)
        log_norm = self.logits.log_softmax(-1) + half_log_det - 0.5 * self.model_dim * _LOG_2PI
        return (log_norm.unsqueeze(1) - 0.5 * y.pow(2).sum(-1)).T

    def _log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self._component_log_prob(self._select(x)), dim=-1)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        u = rand((n,), generator, self.loc)
        cdf = self.logits.softmax(-1).cumsum(0)
        pick = torch.searchsorted(cdf, u.unsqueeze(-1)).squeeze(-1).clamp_max(self.n_components - 1)
        eps = randn((n, self.model_dim), generator, self.loc)
        z = torch.empty_like(eps)
        tril = self.precision_tril.tril()
        for m in range(self.n_components):
            rows = pick == m
            if bool(rows.any()):  # x = mu + L_P^-T eps, with Sigma^-1 = L_P L_P^T
                step = torch.linalg.solve_triangular(tril[m].mT, eps[rows].T, upper=True).T
                z[rows] = self.loc[m] + step
        return self._fill(z)

    def _fit(self, x: Tensor, **options: Any) -> None:
        """EM on the learned values (:func:`fit_mixture`), ``n_init`` times; ``val`` and ``progress``
        are accepted, unused."""
        n_init = options["n_init"]
        if not isinstance(n_init, int) or isinstance(n_init, bool) or n_init < 1:
            raise ValueError(f"GMMPrior.fit: n_init must be an int >= 1, got {n_init!r}")
        z = self._select(x).double()
        best = None
        for _ in range(n_init):  # successive seedings from the one generator: deterministic
            run = fit_mixture(
                z, self.n_components, min_std=self.min_std, max_iter=options["max_iter"], tol=options["tol"],
                generator=options.get("generator"),
            )
            if best is None or run[3][-1]["train_loss"] < best[3][-1]["train_loss"]:
                best = run
        weights, means, covariances, history = best
        self.set_components(weights, means, covariances)
        self.fit_history_ = history
        gain = history[-2]["train_loss"] - history[-1]["train_loss"] if len(history) > 1 else math.inf
        self.converged_ = len(history) < options["max_iter"] or gain < options["tol"]
        if not self.converged_:
            log.warning("GMMPrior.fit: EM did not converge in %d iterations (raise max_iter)",
                        options["max_iter"])

    @torch.no_grad()
    def set_components(self, weights: Tensor, means: Tensor, covariances: Tensor) -> None:
        r"""Sets the mixture over the learned values: weights (M,), means (M, d), covariances (M, d, d).

        The covariances must be symmetric positive definite; they are used as given (no floor).
        """
        m, d = self.n_components, self.model_dim
        shapes = (tuple(weights.shape), tuple(means.shape), tuple(covariances.shape))
        if shapes != ((m,), (m, d), (m, d, d)):
            raise ValueError(
                f"GMMPrior.set_components: expected weights ({m},), means ({m}, {d}) and covariances "
                f"({m}, {d}, {d}) (n_components, model_dim), got {shapes[0]}, {shapes[1]} and {shapes[2]}"
            )
        cov = covariances.double()
        precision = torch.linalg.inv(0.5 * (cov + cov.mT))
        tril, info = torch.linalg.cholesky_ex(0.5 * (precision + precision.mT))
        if bool((info != 0).any()) or not bool(torch.isfinite(tril).all()):
            bad = (info != 0).nonzero().flatten().tolist()
            raise ValueError(f"GMMPrior.set_components: covariance(s) {bad} are not positive definite")
        w = weights.double()
        if bool((w <= 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(
                f"GMMPrior.set_components: weights must be positive and sum to 1, got {w.tolist()}"
            )
        self.loc.copy_(means)
        self.precision_tril.copy_(tril)
        self.logits.copy_(w.log())


# ---------------------------------------------------------------------------- EM
_CHUNK = 2048  # points per pass of EM: keeps the (M, chunk, d) intermediates in cache


def _kmeans(z: Tensor, m: int, generator: torch.Generator | None, iters: int = 10) -> Tensor:
    """k-means++ seeding (each of ``m`` rows of ``z`` drawn with probability proportional to D^2),
    then ``iters`` Lloyd iterations; returns the (m, d) centers."""
    n = z.shape[0]
    first = min(int(float(rand((1,), generator, z)) * n), n - 1)
    centers = [first]
    d2 = (z - z[first]).pow(2).sum(-1)
    for _ in range(1, m):
        total = float(d2.sum())
        u = float(rand((1,), generator, z))
        if total > 0:
            pick = int(torch.searchsorted(d2.cumsum(0), torch.tensor([u * total], dtype=z.dtype)))
        else:  # every point is a center already: any row will do
            pick = int(u * n)
        pick = min(pick, n - 1)
        centers.append(pick)
        d2 = torch.minimum(d2, (z - z[pick]).pow(2).sum(-1))
    c = z[centers]
    for _ in range(iters):
        hard = torch.nn.functional.one_hot(torch.cdist(z, c).argmin(-1), m).to(z.dtype)
        count = hard.sum(0)
        c = torch.where(count[:, None] > 0, hard.T @ z / count.clamp_min(1)[:, None], c)
    return c


def _m_step(nk: Tensor, s1: Tensor, s2: Tensor, floor: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """From the weighted statistics (M,), (M, d), (M, d, d): log weights, means, floored eigvals, eigvecs."""
    nk = nk + 10 * torch.finfo(nk.dtype).eps  # an empty component stays finite
    means = s1 / nk[:, None]
    cov = s2 / nk[:, None, None] - means[:, :, None] * means[:, None, :]
    evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.mT))
    return (nk / nk.sum()).log(), means, evals.clamp_min(floor), evecs


def _e_pass(
    z: Tensor, log_w: Tensor, means: Tensor, evals: Tensor, evecs: Tensor
) -> tuple[float, Tensor, Tensor, Tensor]:
    """One E-step over ``z`` (N, d), in chunks: the mean log-likelihood and the next M-step's statistics."""
    n, d = z.shape
    m = means.shape[0]
    whiten = evecs / evals.sqrt()[:, None, :]  # (M, d, d): Sigma^-1 = W W^T
    flat = whiten.permute(1, 0, 2).reshape(d, m * d)
    shift = (means.unsqueeze(1) @ whiten).reshape(1, m * d)
    log_norm = log_w - 0.5 * evals.log().sum(-1) - 0.5 * d * _LOG_2PI
    nk, s1, s2, total = z.new_zeros(m), z.new_zeros(m, d), z.new_zeros(m, d, d), 0.0
    for i in range(0, n, _CHUNK):
        part = z[i : i + _CHUNK]
        sq = torch.addmm(-shift, part, flat).square_().view(-1, m, d).sum(-1)  # |W^T (z - mu)|^2
        log_comp = log_norm - 0.5 * sq
        ll = torch.logsumexp(log_comp, dim=-1)
        total += float(ll.sum())
        resp = (log_comp - ll[:, None]).exp_()
        nk += resp.sum(0)
        s1 += resp.T @ part
        s2 += (resp.T.unsqueeze(-1) * part).mT @ part
    return total / n, nk, s1, s2


def fit_mixture(
    z: Tensor,
    n_components: int,
    *,
    min_std: float,
    max_iter: int = 200,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, list[dict[str, float]]]:
    r"""Fits a full-covariance Gaussian mixture to points ``z`` with shape :math:`(N, d)` by EM.

    k-means++ seeding (drawn with ``generator``; the global RNG without one) and 10 Lloyd
    iterations give :math:`M` centers; each point starts in the component of its nearest center.
    Every M-step floors the covariances' eigenvalues at ``min_std**2``. EM stops when the mean
    log-likelihood per point gains less than ``tol`` nats, or after ``max_iter`` iterations.
    Deterministic given the generator; computed in float64.

    Returns:
        The weights :math:`(M,)`, means :math:`(M, d)` and covariances :math:`(M, d, d)` (float64),
        and the history: one ``{"iteration", "train_loss"}`` per E-step (the mean negative
        log-likelihood of the parameters of that iteration).
    """
    for name, value in (("max_iter", max_iter), ("n_components", n_components)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"fit_mixture: {name} must be an int >= 1, got {value!r}")
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"fit_mixture: tol must be a finite number >= 0, got {tol!r}")
    z = z.double()
    floor = min_std**2
    nearest = torch.cdist(z, _kmeans(z, n_components, generator)).argmin(-1)
    hard = torch.nn.functional.one_hot(nearest, n_components).to(z.dtype)
    params = _m_step(hard.sum(0), hard.T @ z, torch.einsum("nm,ni,nj->mij", hard, z, z), floor)
    history: list[dict[str, float]] = []
    for it in range(max_iter):
        ll, *stats = _e_pass(z, *params)
        history.append({"iteration": it, "train_loss": -ll})
        if len(history) > 1 and history[-2]["train_loss"] - history[-1]["train_loss"] < tol:
            break
        params = _m_step(*stats, floor)
    log_w, means, evals, evecs = params
    covariances = (evecs * evals[:, None, :]) @ evecs.mT
    return log_w.exp(), means, 0.5 * (covariances + covariances.mT), history
