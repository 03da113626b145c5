r"""Metrics shared by the command line, the benchmarks and the docs: pure functions.

Every density metric is over the prior's modelled values: NLL in nats per pose, and bits per
dimension :math:`\mathrm{NLL} / (D \ln 2)` with :math:`D` = ``prior.dim``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import PosePrior


@torch.no_grad()
def nll(prior: PosePrior, x: Tensor, batch_size: int = 4096) -> float:
    r"""Mean negative log-likelihood in nats per pose of poses with shape :math:`(N, J, 3)`."""
    if x.shape[0] == 0:
        raise ValueError("nll: got 0 poses; need at least one")
    total = sum(float(-prior.log_prob(x[i : i + batch_size]).sum()) for i in range(0, x.shape[0], batch_size))
    return total / x.shape[0]


def bits_per_dim(prior: PosePrior, x: Tensor, batch_size: int = 4096) -> float:
    r"""Bits per modelled dimension, :math:`\mathrm{NLL} / (D \ln 2)`."""
    return nll(prior, x, batch_size) / (prior.dim * math.log(2.0))


@torch.no_grad()
def round_trip_error(prior: PosePrior, x: Tensor) -> float:
    r"""Max absolute error of ``inverse(forward(x))`` for invertible priors (radians).

    Needs a prior with a ``round_trip`` method (the flows); raises ``TypeError`` otherwise.
    """
    if not hasattr(prior, "round_trip"):
        raise TypeError(f"{type(prior).__name__} is not invertible: it has no round_trip method")
    return float((prior.round_trip(x) - x).abs().max())


@torch.no_grad()
def sample_statistics(samples: Tensor, data: Tensor) -> dict[str, Tensor]:
    r"""Per-value mean and standard deviation of samples vs. data, both :math:`(N, J, 3)`.

    Returns ``sample_mean``, ``data_mean``, ``sample_std``, ``data_std`` (each :math:`(J, 3)`),
    and the scalars ``mean_abs_err`` / ``std_abs_err`` averaged over values (radians).
    """
    out = {
        "sample_mean": samples.mean(0),
        "data_mean": data.mean(0),
        "sample_std": samples.std(0),
        "data_std": data.std(0),
    }
    out["mean_abs_err"] = (out["sample_mean"] - out["data_mean"]).abs().mean()
    out["std_abs_err"] = (out["sample_std"] - out["data_std"]).abs().mean()
    return out
