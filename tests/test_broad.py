"""The broad component (``broad_weight``): a defensive mixture every prior can carry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from contract import integral_estimate
from test_contract import ONE_JOINT, TINY_CONFIGS, _data

import poseprior

names = pytest.mark.parametrize("name", sorted(TINY_CONFIGS))


def _fitted(name: str, weight: float, scale: float = 1.5, layout=None, n: int = 600):
    kwargs, fit_opts = TINY_CONFIGS[name]
    kwargs = dict(kwargs, broad_weight=weight, broad_scale=scale, **({"layout": layout} if layout else {}))
    prior = poseprior.create(name, **kwargs).double()
    data = _data(prior.layout, n, 1, torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the tiny networks' initial weights
        prior.fit(data, generator=torch.Generator().manual_seed(2), **fit_opts)
    return prior.eval(), data


@names
def test_log_prob_is_the_mixture_with_a_per_value_gaussian(name: str) -> None:
    w, s = 0.2, 1.5
    prior, data = _fitted(name, w, s)
    x = torch.cat([data[:20], data[:20] + 1.0])  # poses like the data, and far from it
    v = data.reshape(len(data), -1)[:, prior.modelled]
    std = v.std(0).clamp_min(getattr(prior, "min_std", 0.02)) * s
    broad = torch.distributions.Normal(v.mean(0), std).log_prob(x.reshape(len(x), -1)[:, prior.modelled]).sum(-1)
    with torch.no_grad():
        model = prior._log_prob(x)
        expected = torch.log((1 - w) * model.exp() + w * broad.exp())
        torch.testing.assert_close(prior.log_prob(x), expected)
        # Far from the data the mixture costs at most -log w more than the broad component.
        assert (-prior.log_prob(x[20:]) <= -broad[20:] - math.log(w) + 1e-9).all()


@names
def test_mixture_integrates_to_one_on_one_joint(name: str, gen: torch.Generator) -> None:
    prior, _ = _fitted(name, 0.3, 2.0, layout=ONE_JOINT, n=2000)
    total = integral_estimate(prior, prior.sample(4000, generator=gen), 200_000, gen)
    assert 0.9 < total < 1.1, total


@names
def test_mixture_samples_are_reproducible_and_keep_constants(name: str) -> None:
    prior, data = _fitted(name, 0.5)
    a = prior.sample((4, 5), generator=torch.Generator().manual_seed(3))
    state = torch.get_rng_state()
    b = prior.sample((4, 5), generator=torch.Generator().manual_seed(3))
    assert a.shape == (4, 5, *prior.event_shape) and torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
    excluded = ~prior.modelled_mask
    assert torch.equal(a[..., excluded], data[0][excluded].expand_as(a[..., excluded]))
    x, lp = prior.sample_and_log_prob(6, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(lp, prior.log_prob(x))


def test_half_of_the_samples_come_from_each_component() -> None:
    # A mixture of a tight model (std 0.01) and a broad component 30x wider: the count of samples
    # far from the mean follows the weight.
    gen = torch.Generator().manual_seed(0)
    data = 0.01 * torch.randn(5000, 1, 3, generator=gen, dtype=torch.float64)
    prior = poseprior.create("gaussian", layout=ONE_JOINT, min_std=1e-4, broad_weight=0.25, broad_scale=30.0)
    prior.double().fit(data)
    s = prior.sample(20000, generator=gen).reshape(20000, 3)
    far = (s.abs() > 0.06).any(-1).double().mean()  # 6 model stds: model samples are never that far
    assert abs(float(far) - 0.25 * 0.95) < 0.02, float(far)


@names
def test_broad_component_is_saved_and_loaded(name: str, tmp_path: Path) -> None:
    prior, data = _fitted(name, 0.1)
    assert {"broad_loc", "broad_inv_scale", "broad_log_norm"} <= set(prior.state_dict())
    loaded = poseprior.load(prior.save(tmp_path / "ckpt"))
    assert loaded.broad_weight == 0.1 and loaded.broad_scale == 1.5
    torch.testing.assert_close(loaded.double().log_prob(data[:10]), prior.log_prob(data[:10]))


def test_training_loss_is_the_model_alone() -> None:
    prior, data = _fitted("joint_flow", 0.3)
    plain = poseprior.create("joint_flow", **{**prior.get_config(), "broad_weight": 0.0}).double()
    missing, unexpected = plain.load_state_dict(prior.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"broad_loc", "broad_inv_scale", "broad_log_norm"}
    plain.eval()
    torch.testing.assert_close(prior.training_loss(data[:50]), plain.training_loss(data[:50]))
    torch.testing.assert_close(prior._log_prob(data[:50]), plain.log_prob(data[:50]))


def test_invalid_broad_arguments() -> None:
    with pytest.raises(ValueError, match="0 <= broad_weight < 1"):
        poseprior.create("gaussian", broad_weight=1.0)
    with pytest.raises(ValueError, match="broad_scale >= 1"):
        poseprior.create("joint_flow", broad_weight=0.1, broad_scale=0.5)


def test_an_unfitted_broad_component_is_a_proper_density() -> None:
    # Before any fit it is N(0, I) over the modelled values (like the Gaussian's own start).
    prior = poseprior.create("gaussian", layout=ONE_JOINT, constant_dims=[2], broad_weight=0.5).double()
    x = torch.tensor([[[0.3, -0.2, 0.0]]], dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x[0, 0, :2]).sum()
    torch.testing.assert_close(prior._broad_log_prob(x)[0], expected)


@names
def test_second_derivatives_of_the_mixture_are_finite_far_from_the_data(name: str) -> None:
    # Far away the model's density is e^-700 times the broad one's or less; logaddexp's second
    # derivative was NaN there (inf / inf), the logsumexp of the mixture is not.
    prior, data = _fitted(name, 0.3)
    x = torch.cat([data[:3], data[:3] + 8.0]).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(prior.log_prob(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.pow(2).sum(), x)
    assert torch.isfinite(g).all() and torch.isfinite(h).all()


@names
def test_log_prob_can_be_modified_in_place(name: str) -> None:
    # Scores are ordinary tensors on every path (the fused one computes in inference mode).
    prior, data = _fitted(name, 0.3)
    prior.requires_grad_(False)
    with torch.no_grad():
        scores = prior.log_prob(data[:4])
        expected = scores[1:].clone()
        scores[0] = 0.0
        torch.testing.assert_close(scores[1:], expected)
