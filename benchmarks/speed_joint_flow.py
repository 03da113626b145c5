"""Speed of JointFlowPrior side by side with a naive per-joint flow (21 nflows flows in a Python loop).

This is the one place the naive comparison lives (``poseprior bench`` times every prior against a
``MultivariateNormal`` only). The naive reference (``NaivePerJointFlow`` in
``benchmarks/_reference.py``) is what the per-joint design looks like when written directly with
nflows: one conditional rational-quadratic spline MAF per joint
(``MaskedPiecewiseRationalQuadraticAutoregressiveTransform``, 3 features, the parent's 6D rotation
as context), each with its own standard-normal base, evaluated joint by joint in a Python loop and
sampled ancestrally one joint at a time. Its width is chosen so that both models have about the
same number of parameters. Both models are untrained (speed does not depend on the weights) and
model all 63 values of the 21 body joints.

Both are timed in the same run, interleaved, on the same inputs, with 2 threads; each number is
the median of several repetitions (the machine is shared, so absolute numbers vary, ratios less).

Usage::

    python benchmarks/speed_joint_flow.py [--reps 5] [--threads 2]

Prints a markdown table of poses per second and the ratio joint_flow / naive.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _reference import matched_naive_flow, parameter_count  # benchmarks/_reference.py, beside this script

from poseprior.priors.joint_flow import JointFlowPrior


def _median_rate(fn: Callable[[], object], batch: int, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # benchmark script: the weights of both untrained models

    prior = JointFlowPrior("body").eval()
    # The naive reference's width with the parameter count closest to the prior's.
    naive = matched_naive_flow(prior.layout.parents, parameter_count(prior))

    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(4096, 21, 3, generator=gen)
    rows: list[tuple[str, int, float, float]] = []
    with torch.no_grad():
        for batch in (1, 64, 4096):
            xb = x[:batch]
            reps = args.reps if batch > 1 else 10 * args.reps
            rates = [0.0, 0.0]
            # Interleave the two models so that both see the same machine load.
            for _ in range(3):
                rates[0] = max(rates[0], _median_rate(lambda xb=xb: naive.log_prob(xb), batch, reps))
                rates[1] = max(rates[1], _median_rate(lambda xb=xb: prior.log_prob(xb), batch, reps))
            rows.append(("log_prob", batch, *rates))
        n = 4096
        rates = [0.0, 0.0]
        for _ in range(2):
            rates[0] = max(rates[0], _median_rate(lambda: naive.sample(n, gen), n, max(1, args.reps // 2)))
            rates[1] = max(rates[1], _median_rate(lambda: prior.sample(n, generator=gen), n, args.reps))
        rows.append(("sample", n, *rates))
    # log_prob with the gradient with respect to the pose, as in a fitting loop.
    xg = x.clone().requires_grad_(True)
    rates = [0.0, 0.0]
    for _ in range(3):
        rates[0] = max(rates[0], _median_rate(lambda: naive.log_prob(xg).sum().backward(), 4096, args.reps))
        rates[1] = max(rates[1], _median_rate(lambda: prior.log_prob(xg).sum().backward(), 4096, args.reps))
    rows.append(("log_prob + grad wrt pose", 4096, *rates))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, 21 body joints (D = 63)")
    print(f"naive: 21 nflows conditional RQ-spline MAFs (hidden {naive.hidden}), "
          f"{parameter_count(naive):,} parameters")
    print(f"joint_flow: {prior.extra_repr()}, {parameter_count(prior):,} parameters\n")
    print("| operation | batch | naive (poses/s) | joint_flow (poses/s) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for op, batch, a, b in rows:
        print(f"| {op} | {batch} | {a:,.0f} | {b:,.0f} | {b / a:.1f}x |")


if __name__ == "__main__":
    main()
