r"""Speed of the global flow prior next to a MultivariateNormal of the same dimension.

Measures, on ``--threads`` CPU threads (2 by default, the project's machine):

* ``log_prob`` throughput (poses/s) at batch 1, 64 and 4096, through the public
  ``prior.log_prob`` (input validation included);
* the latency of one regularizer step at batch 1: ``log_prob`` plus the gradient with respect to
  the pose (``torch.autograd.grad``), as an optimizer fitting a body to images would do, with the
  prior's parameters requiring grad and frozen (``requires_grad_(False)``, the usual regularizer
  setting, where ``global_flow`` runs its fused density with the hand-written pose gradient);
* sampling throughput at batch 4096 (``sample``; the MAF inverts each layer with D passes);

for the prior in eager mode and after the opt-in
``prior.compile(options={"cpp_wrapper": True})`` (the C++ wrapper cuts the per-call overhead of
the compiled graph at batch 1), and for
``torch.distributions.MultivariateNormal`` with the same :math:`D` (49, as on the CMU body data)
in the same run. Prints a markdown table with ratios (flow time / MVN time). Weights are the
freshly initialized ones (speed does not depend on training). Run:

    python benchmarks/speed_global_flow.py [--threads 2] [--no-compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone

import torch
from torch.distributions import MultivariateNormal

import poseprior

CONSTANT = [3 * 3 + 1, 3 * 3 + 2, 3 * 4 + 1, 3 * 4 + 2, 3 * 9 + 1, 3 * 9 + 2, 3 * 10 + 1, 3 * 10 + 2,
            3 * 12, 3 * 12 + 1, 3 * 12 + 2, 3 * 13, 3 * 13 + 1, 3 * 13 + 2]  # 14 values, as on CMU: D = 49


def _time(fn: Callable[[], object], min_time: float = 0.5, repeats: int = 5) -> float:
    """Median seconds per call over ``repeats`` rounds of at least ``min_time`` seconds each."""
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(min_time / once))
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - t0) / n)
    return statistics.median(rounds)


def _measure(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    sample: Callable[[int], torch.Tensor] | None,
    module: torch.nn.Module | None,
) -> dict[str, float]:
    out: dict[str, float] = {}
    with torch.no_grad():
        for b in (1, 64, 4096):
            x = data[:b]
            out[f"log_prob@{b}"] = _time(lambda x=x: log_prob(x))
    x1 = data[:1].clone().requires_grad_(True)

    def step() -> None:
        (g,) = torch.autograd.grad(log_prob(x1).sum(), x1)

    out["reg_step@1"] = _time(step, repeats=7)
    if module is not None:  # the usual regularizer: a pretrained prior with frozen parameters
        module.requires_grad_(False)
        out["reg_step_frozen@1"] = _time(step, repeats=7)
        module.requires_grad_(True)
    if sample is not None:
        out["sample@4096"] = _time(lambda: sample(4096), min_time=0.1, repeats=3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--transform", default="maf", choices=["maf", "coupling"])
    parser.add_argument("--json", default=None, help="also write the raw timings (seconds) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    gen = torch.Generator().manual_seed(0)
    data = 0.3 * torch.randn(4096, 21, 3, generator=gen)
    data.reshape(4096, -1)[:, CONSTANT] = 0.0
    prior = poseprior.create("global_flow", layout="body", transform=args.transform, constant_dims=CONSTANT)
    prior.initialize(data)
    prior.eval()
    d = prior.dim
    n_params = sum(p.numel() for p in prior.parameters())

    flat = data.reshape(4096, -1)[:, prior.modelled].contiguous()
    cov = torch.cov(flat.T) + 1e-3 * torch.eye(d)
    mvn = MultivariateNormal(flat.mean(0), scale_tril=torch.linalg.cholesky(cov))

    def mvn_sample(n: int) -> torch.Tensor:
        eps = torch.randn(n, d, generator=gen)
        return mvn.loc + eps @ mvn.scale_tril.T

    results = {"mvn": _measure(mvn.log_prob, flat, mvn_sample, None)}
    results["eager"] = _measure(prior.log_prob, data, lambda n: prior.sample(n, generator=gen), prior)
    if not args.no_compile:
        prior.compile(options={"cpp_wrapper": True})
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in (1, 64, 4096):
                for _ in range(2):
                    prior.log_prob(data[:b])
        x1 = data[:1].clone().requires_grad_(True)
        for frozen in (False, True):
            prior.requires_grad_(not frozen)
            for _ in range(2):
                torch.autograd.grad(prior.log_prob(x1).sum(), x1)
        prior.requires_grad_(True)
        compile_s = time.perf_counter() - t0
        results["compiled"] = _measure(prior.log_prob, data, None, prior)
        results["compiled"]["compile_seconds"] = compile_s

    cols = [c for c in ("eager", "compiled") if c in results]
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    print(f"global_flow ({args.transform}), D = {d}, {n_params:,} parameters, {args.threads} threads, "
          f"torch {torch.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"load average {' '.join(load)} (timings are only meaningful on an idle machine)")
    if "compiled" in results:
        print(f"(compiling took {results['compiled']['compile_seconds']:.1f} s for the shapes below)")
    print()
    head = "| measure | " + " | ".join(f"flow {c}" for c in cols) + " | MVN | " + \
        " | ".join(f"{c} / MVN time" for c in cols) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    results["mvn"]["reg_step_frozen@1"] = results["mvn"]["reg_step@1"]
    keys = ("log_prob@1", "log_prob@64", "log_prob@4096", "reg_step@1", "reg_step_frozen@1", "sample@4096")
    for key in keys:
        batch = int(key.split("@")[1])
        row = [c for c in cols if key in results[c]]
        if not row:
            continue

        def fmt(t: float, key: str = key, batch: int = batch) -> str:
            return f"{t * 1e3:.3f} ms" if key.startswith("reg_step") else f"{batch / t:,.0f} poses/s"

        vals = [fmt(results[c][key]) if key in results[c] else "–" for c in cols]
        ratios = [f"{results[c][key] / results['mvn'][key]:.1f}x" if key in results[c] else "–" for c in cols]
        mvn_cell = fmt(results["mvn"][key])
        print(f"| {key} | " + " | ".join(vals) + f" | {mvn_cell} | " + " | ".join(ratios) + " |")
    if args.json:
        with open(args.json, "w") as f:
            raw = {"dim": d, "params": n_params, "threads": args.threads, "seconds": results}
            json.dump(raw, f, indent=2)


if __name__ == "__main__":
    main()
