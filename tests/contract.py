"""The contract every registered prior must pass: configurations, data and reusable checks.

A new prior adds its tiny configuration to :data:`TINY_CONFIGS`; ``tests/test_contract.py`` then
runs every check on it (``test_registry_is_covered`` fails until it does). The checks are plain
functions, so a prior living outside this repository can call them from its own tests.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

import poseprior
from poseprior import JointLayout, PosePrior
from poseprior.formats.ranges import value_floors, value_spreads

# name -> (constructor kwargs, fit options). Every registered prior must appear here.
TINY_CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "gaussian": ({"layout": "left_hand"}, {}),
    "gmm": ({"layout": "left_hand", "n_components": 3}, {}),
    "global_flow": (
        {"layout": "left_hand", "blocks": 2, "hidden_features": 16, "residual_blocks": 1},
        {"epochs": 15, "batch_size": 100},
    ),
    "hand_vae": (
        {"layout": "left_hand", "latent_dim": 4, "hidden_features": 32, "num_layers": 2, "num_samples": 16},
        {"epochs": 40, "batch_size": 100},
    ),
    "joint_flow": (
        {"layout": "left_hand", "num_bins": 4, "hidden": 16, "layers": 1},
        {"epochs": 3, "batch_size": 100},
    ),
    "vae": (
        {"layout": "left_hand", "latent_dim": 4, "hidden_features": 32, "num_samples": 16},
        {"epochs": 40, "batch_size": 100},
    ),
}

ONE_JOINT = JointLayout("one_joint", ("left_shoulder",), (-1,))
"""A one-joint layout (D = 3) for integrals; its joint has a tabulated anatomical range."""

CONSTANT_VALUE = (0, 2)
"""(joint, axis) of the value that :func:`contract_data` holds constant: it must become anatomical."""


def synthetic_poses(
    n: int, joints: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Correlated axis-angle poses (N, J, 3) with a few heavy dimensions: synthetic, not real motion."""
    d = 3 * joints
    a = torch.randn(d, d, generator=generator, dtype=dtype) * 0.15 / d**0.5
    z = torch.randn(n, d, generator=generator, dtype=dtype)
    x = z @ a.T + 0.3 * torch.tanh(torch.randn(n, d, generator=generator, dtype=dtype)) + 0.1
    return x.reshape(n, joints, 3)


def contract_data(layout: str | JointLayout, n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Synthetic poses of ``layout`` with one value (:data:`CONSTANT_VALUE`) held constant at 0.25."""
    joints = len(poseprior.get_layout(layout))
    x = synthetic_poses(n, joints, torch.Generator().manual_seed(seed), dtype)
    x[:, CONSTANT_VALUE[0], CONSTANT_VALUE[1]] = 0.25
    return x


_CACHE: dict[tuple, tuple[PosePrior, torch.Tensor]] = {}


def fitted(
    name: str,
    dtype: torch.dtype = torch.float64,
    layout: str | JointLayout | None = None,
    n: int = 600,
    device: torch.device | str = "cpu",
    **overrides: Any,
) -> tuple[PosePrior, torch.Tensor]:
    """Prior ``name`` in its tiny configuration (``overrides`` on top), fitted on :func:`contract_data`.

    Fitted once per argument set and session; every call returns a deep copy (free to modify),
    on ``device``, and the data.
    """
    key = (
        name,
        dtype,
        layout.name if isinstance(layout, JointLayout) else layout,
        n,
        tuple(sorted(overrides.items())),
    )
    if key not in _CACHE:
        kwargs, fit_opts = TINY_CONFIGS[name]
        kwargs = {**kwargs, **({"layout": layout} if layout is not None else {}), **overrides}
        with torch.random.fork_rng():
            torch.manual_seed(0)  # (only for priors whose initial weights come from the global RNG)
            prior = poseprior.create(name, **kwargs).to(dtype)
        data = contract_data(prior.layout, n, 1, dtype)
        prior.fit(data, generator=torch.Generator().manual_seed(2), **fit_opts)
        _CACHE[key] = (prior.eval(), data)
    prior, data = _CACHE[key]
    return copy.deepcopy(prior).to(device), data.to(device)


# ---------------------------------------------------------------------------- reusable checks
def anatomical_log_prob(prior: PosePrior, data: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reference (N,) log-density of the anatomical values of poses x (N, J, 3), from the training data.

    Every anatomical value of ``prior`` gets N(training mean, max(training std, spread)^2), the spread
    from :func:`~poseprior.formats.ranges.value_spreads`, at least the floor
    (:func:`~poseprior.formats.ranges.value_floors`) and ``min_std``.
    """
    v, flat = data.reshape(len(data), -1), x.reshape(len(x), -1)
    floors = value_floors(prior.layout).reshape(-1).clamp_min(prior.min_std).to(v)
    spreads = torch.maximum(value_spreads(prior.layout).reshape(-1).to(v), floors)
    normal = torch.distributions.Normal(v.mean(0), torch.maximum(v.std(0), spreads))
    return normal.log_prob(flat)[:, prior.present & ~prior.learned].sum(-1)


def assert_log_prob_shapes(prior: PosePrior, x: torch.Tensor) -> None:
    """x: (N, J, 3) with N >= 6."""
    assert prior.log_prob(x[0]).shape == ()
    assert prior.log_prob(x[:5]).shape == (5,)
    assert prior.log_prob(x[:6].reshape(2, 3, *prior.event_shape)).shape == (2, 3)
    assert prior.log_prob(x[:0]).shape == (0,)
    assert prior.log_prob(x[:0].reshape(2, 0, *prior.event_shape)).shape == (2, 0)


def assert_sample_shapes(prior: PosePrior, gen: torch.Generator) -> None:
    ref = prior.data_mean
    for shape, expected in (((), ()), (7, (7,)), ((2, 3), (2, 3)), (0, (0,))):
        s = prior.sample(shape, generator=gen)
        assert s.shape == (*expected, *prior.event_shape)
        assert s.dtype == ref.dtype and s.device == ref.device
        assert not s.requires_grad
        assert torch.isfinite(s).all()


def integral_estimate(prior: PosePrior, samples: torch.Tensor, n: int, gen: torch.Generator) -> float:
    """Importance-sampling estimate of the integral of p over a box around the samples (D <= 3)."""
    lo, hi = samples.amin(0), samples.amax(0)
    pad = 0.5 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    u = lo + (hi - lo) * torch.rand(n, *lo.shape, generator=gen, dtype=lo.dtype, device=lo.device)
    volume = float((hi - lo)[prior.present_mask].prod())  # excluded values carry no density
    with torch.no_grad():
        lp = torch.cat([prior.log_prob(u[i : i + 8192]) for i in range(0, n, 8192)])
    return volume * float(torch.exp(lp - math.log(n)).sum())


def ray_medians(
    prior: PosePrior, poses: torch.Tensor, center: torch.Tensor, ks: tuple[float, ...]
) -> list[float]:
    """The median of ``log p(center + k (x - center))`` over the poses, for every ``k``."""
    with torch.no_grad():
        return [float(prior.log_prob(center + k * (poses - center)).median()) for k in ks]


def assert_honest_tails(prior: PosePrior, train: torch.Tensor, val: torch.Tensor, n: int = 20_000) -> None:
    """Issue 14's tail checks: no mass on absurd poses, log p falling along rays away from the data.

    Of ``n`` samples at most 0.1 % hold a value beyond pi and none beyond 2 pi; for the val poses
    x and the train mean m, the median of ``log p(m + k (x - m))`` strictly decreases for
    k = 1, 2, 4, 8 and at k = 4 lies below the 1st percentile of the val poses' log p.
    """
    with torch.no_grad():
        s = prior.sample(n, generator=torch.Generator().manual_seed(11))
        big = s.reshape(n, -1).abs().amax(-1)
        assert float((big > math.pi).double().mean()) <= 1e-3, (
            f"{100 * float((big > math.pi).double().mean()):.2f}% > pi"
        )
        assert not bool((big > 2 * math.pi).any()), f"a sample holds {float(big.max()):.3g} rad"
        p1 = float(torch.quantile(prior.log_prob(val).double(), 0.01))
    meds = ray_medians(prior, val, train.mean(0), (1, 2, 4, 8))
    assert all(a > b for a, b in zip(meds, meds[1:], strict=False)), meds
    assert meds[2] < p1, (meds, p1)
