"""Known-answer tests of the Gaussian mixture prior (the contract suite covers the shared behaviour)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

import poseprior
from poseprior.priors.gmm import GMMPrior, fit_mixture


def _mixture(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n points of a known 3-component mixture in 4-d (well separated); its weights and means."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    means = torch.tensor([[0, 0, 0, 0], [2, 2, 0, 0], [0, -2, 2, 1]], dtype=torch.float64)
    pick = torch.multinomial(weights, n, replacement=True, generator=g)
    scales = torch.tensor([0.2, 0.4, 0.3], dtype=torch.float64)
    z = means[pick] + scales[pick, None] * torch.randn(n, 4, generator=g, dtype=torch.float64)
    return z, weights, means


def _pose_mixture(n: int, seed: int) -> torch.Tensor:
    """Left-hand poses from two clusters (a value of the first joint holds the cluster)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 15, 3, generator=g, dtype=torch.float64)
    x[: n // 3] += 0.6
    return x


def test_em_recovers_a_known_mixture() -> None:
    z, weights, means = _mixture(4000, 0)
    w, m, c, history = fit_mixture(z, 3, min_std=0.01, generator=torch.Generator().manual_seed(0))
    order = torch.cdist(means, m).argmin(-1)  # the fitted component nearest each true one
    assert sorted(order.tolist()) == [0, 1, 2]
    torch.testing.assert_close(w[order], weights, atol=0.03, rtol=0)
    torch.testing.assert_close(m[order], means, atol=0.05, rtol=0)
    stds = torch.linalg.eigvalsh(c[order]).sqrt().mean(-1)
    torch.testing.assert_close(stds, torch.tensor([0.2, 0.4, 0.3], dtype=torch.float64), atol=0.03, rtol=0)
    losses = [h["train_loss"] for h in history]
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:], strict=False)), "EM must not lose likelihood"


def test_em_floors_every_eigenvalue_and_is_deterministic() -> None:
    z, _, _ = _mixture(1000, 1)
    z[:, 3] = 0.5  # a direction no component sees move
    runs = [fit_mixture(z, 3, min_std=0.05, generator=torch.Generator().manual_seed(4)) for _ in range(2)]
    for a, b in zip(runs[0][:3], runs[1][:3], strict=True):
        assert torch.equal(a, b)
    assert float(torch.linalg.eigvalsh(runs[0][2]).min()) >= 0.05**2 * (1 - 1e-9)
    losses = [h["train_loss"] for h in runs[0][3]]
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:], strict=False))


def test_fit_options_are_checked() -> None:
    z, _, _ = _mixture(100, 2)
    with pytest.raises(ValueError, match="max_iter must be an int >= 1, got 0"):
        fit_mixture(z, 2, min_std=0.02, max_iter=0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0, got -1"):
        fit_mixture(z, 2, min_std=0.02, tol=-1)
    with pytest.raises(ValueError, match="n_components must be a positive int, got 0"):
        GMMPrior("left_hand", n_components=0)


def test_n_init_keeps_the_run_with_the_highest_training_likelihood() -> None:
    """``fit(n_init=k)`` runs EM from k successive seedings of one generator and keeps the best run."""
    x = _pose_mixture(600, 3)

    def fitted(n_init: int) -> GMMPrior:
        prior = GMMPrior("left_hand", n_components=6, broad_weight=0.0).double()
        return prior.fit(x, n_init=n_init, generator=torch.Generator().manual_seed(0), mirror=False)

    runs = []
    gen = torch.Generator().manual_seed(0)
    z = fitted(1)._select(x).double()
    for _ in range(3):
        runs.append(fit_mixture(z, 6, min_std=0.02, generator=gen)[3][-1]["train_loss"])
    assert len(set(runs)) > 1, "the seedings should reach different optima on this data"
    assert fitted(1).fit_history_[-1]["train_loss"] == runs[0]
    assert fitted(3).fit_history_[-1]["train_loss"] == min(runs)
    with pytest.raises(ValueError, match="n_init must be an int >= 1, got 0"):
        fitted(0)


def test_log_prob_is_the_mixture_density() -> None:
    x = _pose_mixture(600, 3)
    prior = GMMPrior("left_hand", n_components=2, anatomical=[], broad_weight=0.0).double()
    prior.fit(x, generator=torch.Generator().manual_seed(0))
    w, m, c = prior.components()
    y = x[:10].reshape(10, -1).numpy()
    parts = [np.log(float(w[k])) + multivariate_normal(m[k].numpy(), c[k].numpy()).logpdf(y)
             for k in range(2)]
    expected = torch.from_numpy(np.logaddexp(*parts))
    torch.testing.assert_close(prior.log_prob(x[:10]), expected, rtol=1e-9, atol=1e-8)
    assert sorted(w.tolist()) == pytest.approx([1 / 3, 2 / 3], abs=0.01)  # the two clusters


def test_max_component_penalty_is_smplify_energy() -> None:
    x = _pose_mixture(600, 4)
    prior = GMMPrior("left_hand", n_components=3, anatomical=[], broad_weight=0.0).double()
    prior.fit(x, generator=torch.Generator().manual_seed(0))
    w, m, c = prior.components()
    y = x[:20].reshape(20, -1).numpy()
    terms = np.stack([np.log(float(w[k])) + multivariate_normal(m[k].numpy(), c[k].numpy()).logpdf(y)
                      for k in range(3)])
    energy = prior.penalty(x[:20], kind="max_component")
    torch.testing.assert_close(energy, torch.from_numpy(-terms.max(0)), rtol=1e-9, atol=1e-8)
    nll = prior.penalty(x[:20])
    assert bool((energy >= nll - 1e-9).all()) and bool((energy <= nll + math.log(3) + 1e-9).all())
    torch.testing.assert_close(prior.penalty(x[:20], per_dim=True, kind="max_component"), energy / prior.dim)
    assert prior.penalty(x[:0], kind="max_component").shape == (0,)
    with pytest.raises(ValueError, match="kind must be 'mixture' or 'max_component', got 'max'"):
        prior.penalty(x[:2], kind="max")


def test_max_component_penalty_counts_the_broad_and_anatomical_parts() -> None:
    x = _pose_mixture(600, 5)
    x[:, 0, 2] = 0.25  # a constant value: anatomical
    prior = GMMPrior("left_hand", n_components=2, broad_weight=0.3).double()
    prior.fit(x, generator=torch.Generator().manual_seed(0))
    assert prior.anatomical_names() == ["left_index1.z"]
    far = x[:5] + 3.0  # far from every component: the broad term wins the max
    flat = far.reshape(5, -1)
    broad = prior.broad.log_prob(flat) + math.log(0.3) + prior.anatomy.log_prob(flat)
    torch.testing.assert_close(prior.penalty(far, kind="max_component"), -broad)
    grad = torch.autograd.grad(prior.penalty(far.requires_grad_(True), kind="max_component").sum(), far)[0]
    assert torch.isfinite(grad).all()


def test_samples_follow_the_weights() -> None:
    prior = GMMPrior("left_hand", n_components=2, anatomical=[], broad_weight=0.0).double()
    prior.fit(_pose_mixture(900, 6), generator=torch.Generator().manual_seed(0))
    s = prior.sample(6000, generator=torch.Generator().manual_seed(1))
    share = float((s[:, 0, 0] > 0.3).double().mean())  # the shifted cluster's share
    assert abs(share - 1 / 3) < 0.03


def test_set_components_checks_its_input() -> None:
    prior = GMMPrior("left_hand", n_components=2, anatomical=[], broad_weight=0.0).double()
    d = prior.model_dim
    w, m, c = torch.tensor([0.5, 0.5]), torch.zeros(2, d), torch.eye(d).repeat(2, 1, 1)
    with pytest.raises(ValueError, match=r"expected weights \(2,\), means \(2, 45\) and covariances"):
        prior.set_components(w, m[:, :3], c)
    bad = c.clone()
    bad[1, 0, 0] = -1.0
    with pytest.raises(ValueError, match=r"covariance\(s\) \[1\] are not positive definite"):
        prior.set_components(w, m, bad)
    with pytest.raises(ValueError, match="weights must be positive and sum to 1"):
        prior.set_components(torch.tensor([0.7, 0.7]), m, c)
    prior.set_components(w, m, 0.04 * c)
    torch.testing.assert_close(prior.components()[2], 0.04 * c.double())


def test_em_that_runs_out_of_iterations_warns(caplog: pytest.LogCaptureFixture) -> None:
    prior = GMMPrior("left_hand", n_components=2)
    with caplog.at_level(logging.WARNING, logger="poseprior"):
        prior.fit(_pose_mixture(300, 7).float(), max_iter=1, generator=torch.Generator().manual_seed(0))
    assert "did not converge in 1 iterations" in caplog.text and not prior.converged_


def test_registered_closed_form_and_listed() -> None:
    assert poseprior.prior_class("gmm") is GMMPrior
    assert not GMMPrior.iterative_fit and GMMPrior.has_exact_log_prob
    prior = poseprior.create("gmm")
    assert prior.layout.name == "body" and prior.n_components == 8
    assert (prior.broad_weight, prior.broad_scale) == (0.02, 1.25)  # chosen by benchmarks/tune_defaults.py
