"""Known-answer tests of the Gaussian prior."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

import poseprior
from poseprior.priors.gaussian import GaussianPrior


def _known_gaussian(d: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.randn(d, d, generator=gen, dtype=torch.float64) * 0.05
    cov = a @ a.T + 0.05 * torch.eye(d, dtype=torch.float64)
    mean = 0.3 * torch.randn(d, generator=gen, dtype=torch.float64)
    return mean, cov


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_log_prob_matches_torch_distributions(covariance: str, gen: torch.Generator) -> None:
    mean, cov = _known_gaussian(45, gen)
    if covariance == "diagonal":
        cov = torch.diag(cov.diagonal())
    z = mean + torch.randn(10_000, 45, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    x = z.reshape(-1, 15, 3)
    prior = GaussianPrior("left_hand", covariance=covariance, min_std=0.0, broad_weight=0.0).double().fit(x)
    ref = MultivariateNormal(prior.loc, scale_tril=prior._tril())
    torch.testing.assert_close(prior.log_prob(x[:100]), ref.log_prob(z[:100]))
    # Closed-form fit recovers the generating parameters (10^4 samples).
    torch.testing.assert_close(prior.loc, mean, atol=0.015, rtol=0)  # ~5 standard errors
    fitted_cov = prior._tril() @ prior._tril().T
    torch.testing.assert_close(fitted_cov, cov, atol=0.01, rtol=0)


def test_diagonal_has_six_parameters_per_joint() -> None:
    prior = GaussianPrior("smplx", covariance="diagonal")
    assert sum(p.numel() for p in prior.parameters()) == 6 * 55 == 330


def test_constant_values_are_excluded_not_infinite(gen: torch.Generator) -> None:
    x = 0.2 * torch.randn(500, 55, 3, generator=gen, dtype=torch.float64)
    x[:, 23:25] = 0.0  # eye joints
    x[:, 25:] = 0.0  # no finger motion
    prior = GaussianPrior("smplx", broad_weight=0.0).double().fit(x)  # the Gaussian alone: compared to MVN
    assert prior.dim == 3 * (55 - 32)
    lp = prior.log_prob(x)
    assert torch.isfinite(lp).all()
    names = prior.excluded_names()
    assert "left_eye.x" in names and "right_thumb3.z" in names and "jaw.x" not in names
    # The density is over the modelled values only: it equals a Gaussian fitted to those alone.
    sub = GaussianPrior("smplx", constant_dims=[]).double()
    ref = MultivariateNormal(prior.loc, scale_tril=prior._tril()).log_prob(x.reshape(500, -1)[:, prior.modelled])
    torch.testing.assert_close(lp, ref)
    assert sub.dim == 165
    # Samples hold the constants.
    s = prior.sample(10, generator=gen)
    assert torch.equal(s[:, 25:], torch.zeros_like(s[:, 25:]))


def test_variance_floor_bounds_the_cost_of_off_axis_motion(gen: torch.Generator) -> None:
    # A knee that flexes about x only, with a tiny (1e-3 rad) wobble off that axis: the
    # near-constant direction is floored at min_std, so 2 degrees off-axis cost a few nats.
    n = 4000
    x = 0.2 * torch.randn(n, 21, 3, generator=gen, dtype=torch.float64)
    knee = poseprior.get_layout("body").index("left_knee")
    x[:, knee, 0] = 0.6 + 0.4 * torch.rand(n, generator=gen, dtype=torch.float64)
    x[:, knee, 1:] = 1e-3 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    two_degrees = math.radians(2.0)
    for covariance in ("full", "diagonal"):
        prior = GaussianPrior("body", covariance=covariance, min_std=0.02).double().fit(x)
        moved = x[:200].clone()
        moved[:, knee, 1] += two_degrees
        cost = (prior.log_prob(x[:200]) - prior.log_prob(moved)).mean()
        assert 0 < cost < 0.5 * (two_degrees / 0.02) ** 2 + 1.0, (covariance, cost)
        unfloored = GaussianPrior("body", covariance=covariance, min_std=0.0).double().fit(x)
        cost0 = (unfloored.log_prob(x[:200]) - unfloored.log_prob(moved)).mean()
        assert cost0 > 100 * cost  # what the floor prevents


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="covariance must be 'full' or 'diagonal', got 'spherical'"):
        GaussianPrior(covariance="spherical")
    with pytest.raises(ValueError, match="min_std and reg_covar must be >= 0"):
        GaussianPrior(min_std=-1.0)
    with pytest.raises(TypeError, match="closed form; unexpected options"):
        GaussianPrior("left_hand").fit(torch.randn(10, 15, 3), epochs=3)
