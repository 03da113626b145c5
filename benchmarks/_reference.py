"""The naive reference model timed by ``benchmarks/speed_joint_flow.py`` (a benchmark tool, not library code).

:class:`NaivePerJointFlow` is what the per-joint design of
:class:`~poseprior.priors.joint_flow.JointFlowPrior` looks like when written directly with nflows:
one conditional rational-quadratic spline MAF per joint
(``MaskedPiecewiseRationalQuadraticAutoregressiveTransform``, 3 features, the parent's 6D rotation
as context), each with its own standard-normal base, evaluated joint by joint in a Python loop and
sampled ancestrally one joint at a time. It models all three values of every joint (no excluded
constant values). It is a speed reference only: it is never trained, and speed does not depend on
the weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from poseprior.formats.rotations import axis_angle_to_rot6d


class NaivePerJointFlow(nn.Module):
    """One nflows conditional spline flow per joint, looped over in Python (the reference)."""

    def __init__(
        self, parents: tuple[int, ...], hidden: int, num_bins: int = 8, tail_bound: float = 5.0
    ) -> None:
        from nflows.transforms import MaskedPiecewiseRationalQuadraticAutoregressiveTransform

        super().__init__()
        self.parents = tuple(parents)
        self.hidden = int(hidden)
        self.flows = nn.ModuleList(
            MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features=3, hidden_features=hidden, context_features=6, num_bins=num_bins,
                tails="linear", tail_bound=tail_bound, num_blocks=2,
            )
            for _ in self.parents
        )

    def _context(self, x: torch.Tensor, j: int) -> torch.Tensor:
        p = self.parents[j]
        if p < 0:
            return x.new_zeros(x.shape[0], 6)
        return axis_angle_to_rot6d(x[:, p])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density of poses ``x`` of shape ``(N, J, 3)``, one flow at a time."""
        total = x.new_zeros(x.shape[0])
        for j, flow in enumerate(self.flows):
            z, logdet = flow(x[:, j], context=self._context(x, j))
            # Own standard-normal base (nflows.distributions imports matplotlib and uses the global RNG).
            total = total + (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(1) + logdet
        return total

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` poses of shape ``(n, J, 3)``, sampled ancestrally one joint at a time."""
        x = torch.zeros(n, len(self.flows), 3)
        for j, flow in enumerate(self.flows):  # parents come before their children
            z = torch.randn(n, 3, generator=generator)
            x[:, j] = flow.inverse(z, context=self._context(x, j))[0]
        return x


def parameter_count(module: nn.Module) -> int:
    """The number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def matched_naive_flow(
    parents: tuple[int, ...], parameters: int, *, low: int = 32, high: int = 128, seed: int = 0
) -> NaivePerJointFlow:
    """The naive per-joint flow whose width in ``[low, high]`` gives the parameter count closest to
    ``parameters`` (the count grows with the width: a bisection, a handful of builds). Its random
    weights come from ``seed``; the global RNG is left as it was."""

    def build(hidden: int) -> NaivePerJointFlow:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return NaivePerJointFlow(parents, hidden)

    lo, hi = low, high
    while lo < hi:  # the smallest width with at least ``parameters`` parameters (or ``high``)
        mid = (lo + hi) // 2
        if parameter_count(build(mid)) < parameters:
            lo = mid + 1
        else:
            hi = mid
    candidates = [build(h) for h in {max(low, lo - 1), lo}]
    return min(candidates, key=lambda m: (abs(parameter_count(m) - parameters), m.hidden)).eval()


__all__ = ["NaivePerJointFlow", "matched_naive_flow", "parameter_count"]
