"""Reusable checks that every registered prior must pass (see tests/test_contract.py)."""

from __future__ import annotations

import math

import torch

from poseprior import PosePrior


def assert_log_prob_shapes(prior: PosePrior, x: torch.Tensor) -> None:
    """x: (N, J, 3) with N >= 6."""
    assert prior.log_prob(x[0]).shape == ()
    assert prior.log_prob(x[:5]).shape == (5,)
    assert prior.log_prob(x[:6].reshape(2, 3, *prior.event_shape)).shape == (2, 3)


def assert_sample_shapes(prior: PosePrior, gen: torch.Generator) -> None:
    ref = next(iter(prior.buffers()))
    for shape, expected in (((), ()), (7, (7,)), ((2, 3), (2, 3))):
        s = prior.sample(shape, generator=gen)
        assert s.shape == (*expected, *prior.event_shape)
        assert s.dtype == ref.dtype and s.device == ref.device
        assert not s.requires_grad
        assert torch.isfinite(s).all()


def assert_excluded_values_constant(prior: PosePrior, samples: torch.Tensor, data: torch.Tensor) -> None:
    mask = ~prior.modelled_mask
    assert mask.any(), "the contract data has a constant value; it must be excluded"
    assert torch.allclose(samples[..., mask], data[0][mask].expand_as(samples[..., mask]))


def integral_estimate(prior: PosePrior, samples: torch.Tensor, n: int, gen: torch.Generator) -> float:
    """Importance-sampling estimate of the integral of p over a box around the samples (D = 3)."""
    lo, hi = samples.amin(0), samples.amax(0)
    pad = 0.5 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    u = lo + (hi - lo) * torch.rand(n, *lo.shape, generator=gen, dtype=lo.dtype)
    volume = float((hi - lo)[prior.modelled_mask].prod())  # excluded values carry no density
    with torch.no_grad():
        lp = torch.cat([prior.log_prob(u[i : i + 8192]) for i in range(0, n, 8192)])
    return volume * float(torch.exp(lp - math.log(n)).sum())
