"""The broad component (``broad_weight``): a defensive mixture every prior can carry.

The mixture is over the learned values; the anatomical Gaussian multiplies both components.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from contract import CONSTANT_VALUE, ONE_JOINT, TINY_CONFIGS, anatomical_log_prob, fitted, integral_estimate

import poseprior
from poseprior.formats.ranges import value_floors

names = pytest.mark.parametrize("name", sorted(TINY_CONFIGS))

W = 0.3  # the weight of most tests: fitted(name, broad_weight=W) is shared with the contract suite


def _reference_log_prob(prior: poseprior.PosePrior, data: torch.Tensor, x: torch.Tensor) -> tuple:
    """(mixture + anatomical, broad, anatomical) log-densities of ``x``, computed from the data alone."""
    w, s = prior.broad_weight, prior.broad_scale
    v, flat = data.reshape(len(data), -1), x.reshape(len(x), -1)
    std = v.std(0)
    floors = value_floors(prior.layout).reshape(-1).clamp_min(prior.min_std).to(v)
    learned = std >= floors  # no value of the contract data is excluded; the rest is anatomical
    assert torch.equal(prior.learned, learned) and prior.present.all()
    broad = torch.distributions.Normal(v.mean(0), std.clamp_min(prior.min_std) * s).log_prob(flat)[:, learned]
    anat = anatomical_log_prob(prior, data, x)
    with torch.no_grad():
        model = prior._log_prob(x)
    mixture = torch.logaddexp(model + math.log1p(-w), broad.sum(-1) + math.log(w))
    return mixture + anat, broad.sum(-1), anat


@names
def test_log_prob_is_the_mixture_with_a_per_value_gaussian(name: str) -> None:
    prior, data = fitted(name, broad_weight=W)
    assert prior.broad_weight == W and prior.anatomical_names()  # the constant value is anatomical
    x = torch.cat([data[:20], data[:20] + 1.0])  # poses like the data, and far from it
    expected, broad, anat = _reference_log_prob(prior, data, x)
    with torch.no_grad():
        lp = prior.log_prob(x)
    torch.testing.assert_close(lp, expected)
    # Far from the data the mixture costs at most -log w more than the broad component.
    assert (-lp[20:] <= -(broad + anat)[20:] - math.log(W) + 1e-9).all()


@names
def test_the_anatomical_value_multiplies_both_components(name: str) -> None:
    # Moving the anatomical value changes log p by its Gaussian alone, near the data and far
    # from it (where the broad component dominates the mixture).
    prior, data = fitted(name, broad_weight=W)
    j, a = CONSTANT_VALUE
    floor = float(prior.spreads()[j, a])
    x = torch.cat([data[:5], data[:5] + 1.0])
    x[:, j, a] = 0.25  # (the shift above moved it too)
    moved = x.clone()
    moved[:, j, a] += 0.2
    with torch.no_grad():
        cost = prior.log_prob(x) - prior.log_prob(moved)
    torch.testing.assert_close(cost, torch.full_like(cost, 0.5 * (0.2 / floor) ** 2))


@names
def test_mixture_integrates_to_one_on_one_joint(name: str, gen: torch.Generator) -> None:
    prior, _ = fitted(name, layout=ONE_JOINT, n=2000, broad_weight=0.3, broad_scale=2.0)
    assert prior.dim == 3 and prior.model_dim == 2  # the broad component is over the 2 learned values
    total = integral_estimate(prior, prior.sample(4000, generator=gen), 200_000, gen)
    assert 0.9 < total < 1.1, total


@names
def test_mixture_samples_are_reproducible_keep_excluded_values_and_draw_anatomical_ones(name: str) -> None:
    # Value 4 (joint 1, y) is excluded by the user; CONSTANT_VALUE is anatomical.
    prior, data = fitted(name, broad_weight=0.5, broad_scale=1.5, exclude=(4,))
    assert prior.excluded_names() == [f"{prior.layout.joints[1]}.y"]
    a = prior.sample((4, 5), generator=torch.Generator().manual_seed(3))
    state = torch.get_rng_state()
    b = prior.sample((4, 5), generator=torch.Generator().manual_seed(3))
    assert a.shape == (4, 5, *prior.event_shape) and torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
    s = prior.sample(2000, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(s[:, 1, 1], data[:, 1, 1].mean().expand(2000))  # the training mean
    # Both components' samples get the anatomical value from N(0.25, floor^2).
    j, k = CONSTANT_VALUE
    floor = float(prior.spreads()[j, k])
    assert abs(float(s[:, j, k].std()) / floor - 1) < 0.1 and abs(float(s[:, j, k].mean()) - 0.25) < 0.01
    x, lp = prior.sample_and_log_prob(6, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(lp, prior.log_prob(x))


def test_half_of_the_samples_come_from_each_component() -> None:
    # A mixture of a tight model (std 0.01) and a broad component 30x wider: the count of samples
    # far from the mean follows the weight. (anatomical=[]: the values move less than their
    # 3-degree floor, which would otherwise make them all anatomical.)
    gen = torch.Generator().manual_seed(0)
    data = 0.01 * torch.randn(5000, 1, 3, generator=gen, dtype=torch.float64)
    prior = poseprior.create(
        "gaussian", layout=ONE_JOINT, min_std=1e-4, anatomical=[], broad_weight=0.25, broad_scale=30.0
    )
    prior.double().fit(data)
    assert prior.model_dim == 3
    s = prior.sample(20000, generator=gen).reshape(20000, 3)
    far = (s.abs() > 0.06).any(-1).double().mean()  # 6 model stds: model samples are never that far
    assert abs(float(far) - 0.25 * 0.95) < 0.02, float(far)


@names
def test_broad_component_is_saved_and_loaded(name: str, tmp_path: Path) -> None:
    prior, data = fitted(name, broad_weight=W)
    assert {"broad.loc", "broad.inv_scale", "broad.log_norm"} <= set(prior.state_dict())
    loaded = poseprior.load(prior.save(tmp_path / "ckpt"))
    assert loaded.broad_weight == W and loaded.broad_scale == prior.broad_scale
    torch.testing.assert_close(loaded.double().log_prob(data[:10]), prior.log_prob(data[:10]))


def test_training_loss_is_the_model_alone() -> None:
    prior, data = fitted("joint_flow", broad_weight=W)
    plain = prior.without_broad()
    assert plain.broad is None and plain.broad_weight == 0.0
    assert not any(k.startswith("broad.") for k in plain.state_dict())
    assert plain.anatomical_names() == prior.anatomical_names() and plain.dim == prior.dim
    assert not plain.training
    torch.testing.assert_close(prior.training_loss(data[:50]), plain.training_loss(data[:50]))
    x = data[:50]
    with torch.no_grad():
        torch.testing.assert_close(prior._log_prob(x), plain._log_prob(x))
        anat = plain.anatomy.log_prob(x.reshape(50, -1))
        torch.testing.assert_close(plain.log_prob(x), plain._log_prob(x) + anat)
    # A copy: changing it leaves the original alone.
    with torch.no_grad():
        next(plain.parameters()).add_(1.0)
    torch.testing.assert_close(prior._log_prob(x), fitted("joint_flow", broad_weight=W)[0]._log_prob(x))
    assert prior.without_broad().train().training  # keeps the mode it is given


def test_invalid_broad_arguments() -> None:
    with pytest.raises(ValueError, match=r"broad_weight must be in \[0, 1\), got 1.0"):
        poseprior.create("gaussian", broad_weight=1.0)
    with pytest.raises(ValueError, match="broad_scale must be a finite number >= 1, got 0.5"):
        poseprior.create("joint_flow", broad_weight=0.1, broad_scale=0.5)


def test_an_unfitted_prior_is_a_proper_density() -> None:
    # Before any fit the broad component is N(0, I) over the learned values (like the Gaussian's
    # own start) and the anatomical values are N(0, floor^2); excluded values carry no density.
    prior = poseprior.create("gaussian", layout=ONE_JOINT, exclude=[2], anatomical=[1], broad_weight=0.5)
    prior = prior.double()
    assert prior.dim == 2 and prior.model_dim == 1
    x = torch.tensor([[[0.3, -0.2, 7.0]]], dtype=torch.float64)
    floor = float(prior.spreads()[0, 1])
    std_normal = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(prior.broad.log_prob(x.reshape(1, 3))[0], std_normal.log_prob(x[0, 0, 0]))
    expected = std_normal.log_prob(x[0, 0, 0]) + torch.distributions.Normal(0.0, floor).log_prob(x[0, 0, 1])
    torch.testing.assert_close(prior.log_prob(x)[0], expected)


@names
def test_second_derivatives_of_the_mixture_are_finite_far_from_the_data(name: str) -> None:
    # Far away the model's density is e^-700 times the broad one's or less; logaddexp's second
    # derivative was NaN there (inf / inf), the logsumexp of the mixture is not.
    prior, data = fitted(name, broad_weight=W)
    x = torch.cat([data[:3], data[:3] + 8.0]).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(prior.log_prob(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.pow(2).sum(), x)
    assert torch.isfinite(g).all() and torch.isfinite(h).all()


@names
def test_log_prob_can_be_modified_in_place(name: str) -> None:
    # Scores are ordinary tensors on every path (the fused one computes in inference mode).
    prior, data = fitted(name, broad_weight=W)
    prior.requires_grad_(False)
    with torch.no_grad():
        scores = prior.log_prob(data[:4])
        expected = scores[1:].clone()
        scores[0] = 0.0
        torch.testing.assert_close(scores[1:], expected)


@names
def test_the_broad_weight_can_change_within_its_component(name: str) -> None:
    """Setting ``broad_weight`` on a prior with a broad component changes the mixture (the frozen
    fast paths too) to the reference at the new weight; values that would need another component
    (0, >= 1, or any weight on a prior built without one) are refused with a clear error."""
    prior, data = fitted(name, broad_weight=W)
    prior.requires_grad_(False)  # global_flow: the fused frozen path, cached on the weight
    x = data[:20]
    with torch.no_grad():
        before = prior.log_prob(x)
        prior.broad_weight = 0.1
        after = prior.log_prob(x)
    assert prior.get_config()["broad_weight"] == 0.1
    torch.testing.assert_close(after, _reference_log_prob(prior, data, x)[0])
    assert not torch.allclose(before, after)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"this prior has a broad component.*without_broad"):
            prior.broad_weight = bad
    plain, _ = fitted(name, broad_weight=0.0)
    with pytest.raises(ValueError, match=r"built without a broad component, got 0.2.*broad_weight=0.2"):
        plain.broad_weight = 0.2
