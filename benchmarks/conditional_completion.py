r"""Completing a hidden body part from a prior's conditional: its mode against its mean.

``benchmarks/completion.py`` fits noisy joints with a part hidden; the fit of the hidden part is,
in effect, the *mode* of the prior's conditional density of that part given the rest, while the
hidden-joint MPJPE rewards the conditional *mean* of the joint positions. For a Gaussian the
two nearly coincide; for a sharper, multimodal density they need not. This script separates the
two, without the optimizer of the fit and its noise: for evenly spaced frames of the unseen
subjects it keeps the **true** rotations of every joint but the *free* ones (those that move only
hidden joints: for a hidden left leg the left hip, knee and ankle), and completes them with each
prior's

* conditional **mode**: L-BFGS on :math:`-\log p` over the free rotations, started from the
  linear-Gaussian conditional mean of the training data;
* conditional **mean** of the hidden joint positions: self-normalized importance sampling,
  ``--samples`` draws from a Gaussian proposal started at the mode with the training data's
  conditional covariance, refitted to the weighted draws ``--rounds`` times, and a defensive
  component (10% of the draws, twice as wide) against heavy tails; the effective sample size
  (ESS) of the last round says how far to trust it.

Reported per scenario and prior: the hidden-joint MPJPE (mm) of the mode and of the mean, the
median and 10th percentile ESS, and paired differences (mean ± 2 s.e. over frames): each prior's
mean against its mode, and each against the first prior's mode. The linear-Gaussian conditional
mean of the training data is a reference row.

Usage::

    python benchmarks/conditional_completion.py [--priors gaussian.cmu global_flow.cmu]
        [--frames 512] [--samples 8192] [--rounds 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
from completion import SCENARIOS, _paired, frames_of
from torch import Tensor

import poseprior
from poseprior.data import load_bundled
from poseprior.kinematics import SKELETON_JOINTS, SKELETON_PARENTS, forward_kinematics

LogProb = Callable[[Tensor], Tensor]  # (S, 63) flattened body poses -> (S,)


def free_values(hidden: set[str]) -> list[int]:
    """Indices into the 63 flattened body values of the rotations that move only hidden joints
    (and move at least one): the rotations the visible joints say nothing about."""
    below: dict[int, set[int]] = {j: set() for j in range(22)}
    for k in range(1, 22):
        p = SKELETON_PARENTS[k]
        while p >= 0:
            below[p].add(k)
            p = SKELETON_PARENTS[p]
    hid = {i for i, j in enumerate(SKELETON_JOINTS) if j in hidden}
    joints = [s - 1 for s in range(1, 22) if below[s] and below[s] <= hid]  # body-layout indices
    return [3 * j + c for j in joints for c in range(3)]


def linear_conditional(mean: Tensor, cov: Tensor, free: list[int]) -> tuple[Tensor, Tensor]:
    """The (F, 63) gain ``K`` and (F, F) covariance of the Gaussian conditional of the ``free``
    values given the others: mean ``mean[free] + (x[other] - mean[other]) @ K[:, other].T``."""
    chosen = set(free)
    other = [i for i in range(len(mean)) if i not in chosen]
    gain = torch.linalg.solve(cov[other][:, other], cov[other][:, free]).T  # (F, O)
    cond = cov[free][:, free] - gain @ cov[other][:, free]
    full = gain.new_zeros(len(free), len(mean))
    full[:, other] = gain
    return full, 0.5 * (cond + cond.T)


def conditional_mode(log_prob: LogProb, x: Tensor, free: list[int], init: Tensor, steps: int = 200) -> Tensor:
    """(N, 63) poses with their ``free`` values replaced by the maximizer of ``log_prob`` over them,
    by L-BFGS from ``init`` (N, F). ``x`` is not modified."""
    h = init.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([h], max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                            tolerance_change=1e-12)  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        xs = x.clone()
        xs[:, free] = h
        loss = -log_prob(xs).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = x.clone()
    out[:, free] = h.detach()
    return out


def conditional_mean(
    log_prob: LogProb,
    x: Tensor,
    free: list[int],
    start: Tensor,
    scale_tril: Tensor,
    fn: Callable[[Tensor], Tensor],
    *,
    samples: int,
    rounds: int,
    generator: torch.Generator,
) -> tuple[Tensor, float]:
    """The conditional mean of ``fn`` (a function of (S, 63) poses) for one pose ``x`` (63,) given
    its values outside ``free``, by adaptive importance sampling (see the module docs); and the
    effective sample size of the last round."""
    f, dt = len(free), x.dtype
    eye = torch.eye(f, dtype=dt)
    wide = torch.distributions.MultivariateNormal(start, scale_tril=2.0 * scale_tril)
    loc, tril = start, scale_tril
    k = samples // 10
    for r in range(rounds):
        adapted = torch.distributions.MultivariateNormal(loc, scale_tril=tril)
        h = torch.cat([
            loc + torch.randn(samples - k, f, generator=generator, dtype=dt) @ tril.T,
            start + torch.randn(k, f, generator=generator, dtype=dt) @ (2.0 * scale_tril).T,
        ])  # fmt: skip
        log_q = torch.logaddexp(adapted.log_prob(h) + math.log(0.9), wide.log_prob(h) + math.log(0.1))
        xs = x.expand(samples, -1).clone()
        xs[:, free] = h
        with torch.no_grad():
            w = torch.softmax(log_prob(xs) - log_q, 0)
        if r + 1 < rounds:
            loc = w @ h
            c = h - loc
            tril = torch.linalg.cholesky(1.5 * (w[:, None] * c).T @ c + 1e-6 * eye)
    ess = float(1.0 / w.square().sum())
    value = fn(xs)
    return torch.tensordot(w, value, dims=1), ess


def _diff(a: Tensor, b: Tensor) -> str:
    """``a - b`` per frame (metres in) as "mean ± 2 s.e." in mm (``completion._paired``)."""
    mean, err = _paired(a, b)
    return f"{mean:+.1f} ± {err:.1f}"


def _hidden_error(poses: Tensor, root: Tensor, trans: Tensor, truth: Tensor, hidden: Tensor) -> Tensor:
    """(N, 63) poses -> (N,) mean distance (m) of the hidden joints from the true ones."""
    joints = forward_kinematics(poses.reshape(-1, 21, 3), root, trans)
    return torch.linalg.vector_norm(joints[:, hidden] - truth[:, hidden], dim=-1).mean(-1)


def complete(
    log_prob: LogProb,
    x: Tensor,
    free: list[int],
    start: Tensor,
    scale_tril: Tensor,
    root: Tensor,
    trans: Tensor,
    hidden: Tensor,
    *,
    samples: int,
    rounds: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """For poses ``x`` (N, 63): the conditional mode (N, 63), the conditional mean of the hidden
    joint positions (N, H, 3) and the (N,) effective sample sizes."""
    mode = conditional_mode(log_prob, x, free, start)
    means, ess = [], []
    for i in range(len(x)):

        def positions(v: Tensor, i: int = i) -> Tensor:
            s = len(v)
            joints = forward_kinematics(v.reshape(s, 21, 3), root[i].expand(s, 3), trans[i].expand(s, 3))
            return joints[:, hidden]

        m, e = conditional_mean(log_prob, x[i], free, mode[i, free], scale_tril, positions,
                                samples=samples, rounds=rounds, generator=generator)  # fmt: skip
        means.append(m)
        ess.append(e)
    return mode, torch.stack(means), torch.tensor(ess, dtype=torch.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--priors", nargs="+", default=["gaussian.cmu", "global_flow.cmu"],
        help="shipped checkpoints (names under checkpoints/) or checkpoint folders",
    )  # fmt: skip
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dt = torch.float64
    train = load_bundled("train").poses_for("body").to(dt).flatten(1)
    pose, root, trans = (t.to(dt) for t in frames_of(load_bundled("unseen"), args.frames))
    x, n = pose.flatten(1), len(pose)
    truth = forward_kinematics(pose, root, trans)
    mean, cov = train.mean(0), torch.cov(train.T) + 1e-4 * torch.eye(63, dtype=dt)
    priors = {}
    for name in args.priors:
        shipped = name in poseprior.list_pretrained()
        prior = (poseprior.load_pretrained(name) if shipped else poseprior.load(name)).double()
        prior.requires_grad_(False).eval()
        priors[name] = lambda v, prior=prior: prior.log_prob(v.reshape(-1, 21, 3))
    print(f"{n} unseen frames, true rotations outside the free joints; {args.samples} draws x "
          f"{args.rounds} rounds per frame and prior\n")  # fmt: skip
    print("| scenario | prior | mode (mm) | mean (mm) | ESS median / 10th pct | mean - mode | "
          f"mode - {args.priors[0]} mode | mean - {args.priors[0]} mode |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(args.seed)
    for scenario, names in SCENARIOS.items():
        hidden = torch.tensor([j in names for j in SKELETON_JOINTS])
        free = free_values(set(names))
        gain, cond = linear_conditional(mean, cov, free)
        linear = mean[free] + (x - mean) @ gain.T  # (N, F)
        tril = torch.linalg.cholesky(cond)
        base = None
        for name, log_prob in priors.items():
            mode, means, ess = complete(log_prob, x, free, linear, tril, root, trans, hidden,
                                        samples=args.samples, rounds=args.rounds, generator=gen)  # fmt: skip
            mode_err = _hidden_error(mode, root, trans, truth, hidden)
            mean_err = torch.linalg.vector_norm(means - truth[:, hidden], dim=-1).mean(-1)
            q = ess.quantile(torch.tensor([0.5, 0.1], dtype=torch.float64))
            base = mode_err if base is None else base
            print(f"| {scenario} | {name} | {1000 * mode_err.mean():.1f} | {1000 * mean_err.mean():.1f} | "
                  f"{q[0]:.0f} / {q[1]:.0f} | {_diff(mean_err, mode_err)} | {_diff(mode_err, base)} | "
                  f"{_diff(mean_err, base)} |", flush=True)  # fmt: skip
        lin = x.clone()
        lin[:, free] = linear
        lin_err = _hidden_error(lin, root, trans, truth, hidden)
        print(f"| {scenario} | linear-Gaussian conditional mean of the training rotations | – | "
              f"{1000 * lin_err.mean():.1f} | – | – | – | {_diff(lin_err, base)} |",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
