"""Known-answer tests of the Gaussian prior."""

from __future__ import annotations

import logging
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
    # min_std far below every eigenvalue: the floor changes nothing (it must be > 0).
    prior = GaussianPrior(
        "left_hand", covariance=covariance, min_std=1e-6, shrinkage=0.0, broad_weight=0.0
    ).double().fit(x)
    assert prior.dim == prior.model_dim == 45  # every value moves more than its floor: all learned
    ref = MultivariateNormal(prior.loc, scale_tril=prior._tril())
    torch.testing.assert_close(prior.log_prob(x[:100]), ref.log_prob(z[:100]))
    # Closed-form fit recovers the generating parameters (10^4 samples).
    torch.testing.assert_close(prior.loc, mean, atol=0.015, rtol=0)  # ~5 standard errors
    fitted_cov = prior._tril() @ prior._tril().T
    torch.testing.assert_close(fitted_cov, cov, atol=0.01, rtol=0)


def test_shrinkage_moves_the_covariance_toward_its_diagonal(gen: torch.Generator) -> None:
    mean, cov = _known_gaussian(45, gen)
    z = mean + torch.randn(5000, 45, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    x = z.reshape(-1, 15, 3)

    def fitted(**kw: float | str) -> torch.Tensor:
        prior = GaussianPrior("left_hand", min_std=1e-6, broad_weight=0.0, **kw).double().fit(x)
        return prior._tril() @ prior._tril().T

    full, diag = fitted(shrinkage=0.0), fitted(covariance="diagonal")
    off = ~torch.eye(45, dtype=torch.bool)
    assert full[off].abs().max() > 0.01  # the generating covariance is correlated
    # lambda = 0.3: the correlations shrink by 1 - lambda, the variances stay.
    half = fitted(shrinkage=0.3)
    torch.testing.assert_close(half.diagonal(), full.diagonal())
    torch.testing.assert_close(half[off], 0.7 * full[off])
    # lambda = 1: the diagonal Gaussian's density.
    torch.testing.assert_close(fitted(shrinkage=1.0), diag)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_shrinkage_outside_zero_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="shrinkage"):
        GaussianPrior("body", shrinkage=bad)


def test_diagonal_has_six_parameters_per_joint() -> None:
    prior = GaussianPrior("smplx", covariance="diagonal")
    assert sum(p.numel() for p in prior.parameters()) == 6 * 55 == 330


def test_constant_values_are_excluded_or_anatomical_not_infinite(
    gen: torch.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    x = 0.3 * torch.randn(500, 55, 3, generator=gen, dtype=torch.float64)  # above every floor
    x[:, 23:25] = 0.0  # eye joints
    x[:, 25:] = 0.0  # no finger motion
    collar = poseprior.get_layout("smplx").index("left_collar")
    x[:, collar] = 0.1  # a body joint the capture froze
    with caplog.at_level(logging.WARNING, logger="poseprior"):
        prior = GaussianPrior("smplx", broad_weight=0.0).double().fit(x, mirror=False)  # the Gaussian alone
    # The eyes and fingers (exactly constant, no anatomical range) are excluded with a warning;
    # the frozen collar is a real degree of freedom: anatomical, in the density.
    assert "left_eye" in caplog.text and "right_thumb3" in caplog.text and "excluded" in caplog.text
    assert "left_collar" not in caplog.text
    assert prior.dim == 3 * (55 - 32) and prior.model_dim == prior.dim - 3
    assert prior.anatomical_names() == [f"left_collar.{a}" for a in "xyz"]
    lp = prior.log_prob(x)
    assert torch.isfinite(lp).all()
    names = prior.excluded_names()
    assert "left_eye.x" in names and "right_thumb3.z" in names
    assert "jaw.x" not in names and "left_collar.x" not in names
    # The density is a Gaussian fitted to the learned values alone times the collar's N(0.1, floor^2).
    flat = x.reshape(500, -1)
    ref = MultivariateNormal(prior.loc, scale_tril=prior._tril()).log_prob(flat[:, prior.learned])
    floors = prior.spreads()[collar]
    ref = ref + torch.distributions.Normal(0.1, floors).log_prob(x[:, collar]).sum(-1)
    torch.testing.assert_close(lp, ref)
    # Excluded values carry no density; anatomical ones do.
    moved = x[:5].clone()
    moved[:, 25:] += 0.5
    torch.testing.assert_close(prior.log_prob(moved), lp[:5])
    moved[:, collar] += 0.05
    assert (prior.log_prob(moved) < lp[:5]).all()
    sub = GaussianPrior("smplx", exclude=[]).double()
    assert sub.dim == 165
    # Samples hold the excluded values at their training means and draw the collar.
    s = prior.sample(10, generator=gen)
    assert torch.equal(s[:, 25:], torch.zeros_like(s[:, 25:]))
    assert torch.equal(s[:, 23:25], torch.zeros_like(s[:, 23:25]))
    assert (s[:, collar] != 0.1).all()


def test_variance_floor_bounds_the_cost_of_off_axis_motion(gen: torch.Generator) -> None:
    # A knee that flexes about x only, with a tiny (1e-3 rad) wobble off that axis. Learned
    # (anatomical=[]), the near-constant direction is floored at min_std, so 2 degrees off-axis
    # cost a few nats; by default the off-axis values are anatomical and 2 degrees cost exactly
    # their Gaussian's 0.5 (2 deg / floor)^2 with the knee's floor (5 degrees).
    n = 4000
    x = 0.2 * torch.randn(n, 21, 3, generator=gen, dtype=torch.float64)
    knee = poseprior.get_layout("body").index("left_knee")
    x[:, knee, 0] = 0.6 + 0.4 * torch.rand(n, generator=gen, dtype=torch.float64)
    x[:, knee, 1:] = 1e-3 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    two_degrees = math.radians(2.0)
    moved = x[:200].clone()
    moved[:, knee, 1] += two_degrees
    for covariance in ("full", "diagonal"):
        prior = (
            GaussianPrior("body", covariance=covariance, min_std=0.02, anatomical=[])
            .double()
            .fit(x, mirror=False)
        )
        cost = (prior.log_prob(x[:200]) - prior.log_prob(moved)).mean()
        assert 0 < cost < 0.5 * (two_degrees / 0.02) ** 2 + 1.0, (covariance, cost)
        unfloored = GaussianPrior("body", covariance=covariance, min_std=1e-6, anatomical=[]).double()
        unfloored.fit(x, mirror=False)
        cost0 = (unfloored.log_prob(x[:200]) - unfloored.log_prob(moved)).mean()
        assert cost0 > 100 * cost  # what the floor prevents
        default = GaussianPrior("body", covariance=covariance, min_std=1e-6).double().fit(x, mirror=False)
        knee_values = [n for n in default.anatomical_names() if n.startswith("left_knee")]
        assert knee_values == ["left_knee.y", "left_knee.z"] and default.dim == 63
        floor = float(default.spreads()[knee, 1])
        assert floor == pytest.approx(math.radians(5.0))
        cost = default.log_prob(x[:200]) - default.log_prob(moved)
        expected = (
            0.5
            * (
                (x[:200, knee, 1] + two_degrees - x[:, knee, 1].mean()) ** 2
                - (x[:200, knee, 1] - x[:, knee, 1].mean()) ** 2
            )
            / floor**2
        )
        torch.testing.assert_close(cost, expected)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="covariance must be 'full' or 'diagonal', got 'spherical'"):
        GaussianPrior(covariance="spherical")
    with pytest.raises(ValueError, match="min_std must be a finite number > 0, got -1.0"):
        GaussianPrior(min_std=-1.0)
    with pytest.raises(ValueError, match="min_std must be a finite number > 0, got 0.0"):
        GaussianPrior(min_std=0.0)
    with pytest.raises(ValueError, match="reg_covar must be a finite number >= 0, got -0.1"):
        GaussianPrior(reg_covar=-0.1)
    # Closed form: no training options, only the ones every prior accepts.
    message = r"unknown option\(s\) \['epochs'\]; it takes \['generator', 'mirror', 'progress', 'val'\]"
    with pytest.raises(TypeError, match=message):
        GaussianPrior("left_hand").fit(torch.randn(10, 15, 3), epochs=3)
