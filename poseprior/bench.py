r"""The benchmark behind ``poseprior bench``: density, sample quality and speed of every prior.

For each prior, fitted with its defaults on the training split of a data folder:

- **density**: parameters, fit time, validation NLL (nats/pose) and bits per dimension, marked
  exact or estimate, the leave-one-action-out mean NLL (optional), and the round-trip error of
  invertible priors;
- **samples** (500 by default): APD (cm, 22 body joints on the built-in skeleton), Fréchet
  distance between Gaussians fitted to samples and to validation poses (axis-angle), k=3
  precision/recall against validation poses, mean distance to the nearest training pose;
- **speed** on this machine: ``log_prob`` poses/s at batch 1, 64 and 4096, ``sample`` poses/s,
  regularizer-step latency (``log_prob`` + backward w.r.t. the pose, batch 1), training
  throughput. Absolute times drift on shared machines, so every speed comes with a reference
  measured in the same run, ``torch.distributions.MultivariateNormal`` of the same dimension,
  and the ratio. (``benchmarks/speed_joint_flow.py`` times ``joint_flow`` against a naive
  per-joint loop of nflows flows.)

Results are written to ``--out`` as ``bench.md``, ``bench.json`` and PNG plots.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import metrics
from .amass import PoseData
from .base import PosePrior
from .evaluation import Result, bench_specs, evaluate, label, leave_one_group_out, markdown, markdown_table


def _rate(fn: Callable[[], object], n: int, min_seconds: float = 0.3, repeats: int = 3) -> float:
    """Items per second of ``fn`` (which handles ``n`` items), the median of ``repeats`` timings."""
    fn()  # warm-up
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while True:
            fn()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(count * n / elapsed)
    return statistics.median(rates)


def speed(prior: PosePrior, x: Tensor, *, quick: bool = False) -> dict[str, float]:
    """Speed figures of ``prior`` on poses ``x`` (N >= 4096 recommended), plus the MVN reference
    timed in turn with it."""
    t = 0.1 if quick else 0.3
    out: dict[str, float] = {}
    ref = torch.distributions.MultivariateNormal(torch.zeros(prior.dim), torch.eye(prior.dim))
    flat = x.reshape(x.shape[0], -1)[:, prior.present].detach()  # the D values of the density
    for b in (1, 64, 4096):
        xb, fb = x[:b].detach(), flat[:b]
        with torch.no_grad():
            out[f"log_prob/s@{b}"] = _rate(lambda xb=xb: prior.log_prob(xb), len(xb), t)
            out[f"ref_mvn_log_prob/s@{b}"] = _rate(lambda fb=fb: ref.log_prob(fb), len(fb), t)
    gen = torch.Generator().manual_seed(0)
    n_sample = 512 if quick else 4096
    sample_repeats = 1 if quick else 3
    out["sample/s"] = _rate(lambda: prior.sample(n_sample, generator=gen), n_sample, t,
                            repeats=sample_repeats)
    out["ref_mvn_sample/s"] = _rate(lambda: ref.sample((n_sample,)), n_sample, t)

    x1 = x[:1].detach()

    def reg_step() -> None:
        xi = x1.clone().requires_grad_(True)
        prior.penalty(xi).sum().backward()

    f1 = flat[:1]

    def ref_step() -> None:
        fi = f1.clone().requires_grad_(True)
        (-ref.log_prob(fi)).sum().backward()

    flags = [p.requires_grad for p in prior.parameters()]
    for p in prior.parameters():
        p.requires_grad_(False)  # a regularizer step differentiates w.r.t. the pose only
    out["reg_step_ms@1"] = 1000.0 / _rate(reg_step, 1, t)
    out["ref_mvn_reg_step_ms@1"] = 1000.0 / _rate(ref_step, 1, t)
    for p, flag in zip(prior.parameters(), flags):
        p.requires_grad_(flag)

    params = [p for p in prior.parameters() if p.requires_grad]
    if params and prior.iterative_fit:
        opt = torch.optim.Adam(params, lr=1e-5)
        xb = x[:256].detach()

        def train_step() -> None:
            loss = prior.training_loss(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()

        state = {k: v.clone() for k, v in prior.state_dict().items()}
        prior.train()
        out["train_poses/s@256"] = _rate(train_step, len(xb), t, repeats=1)
        prior.load_state_dict(state)
        prior.eval()
    for k, v in list(out.items()):
        if k.startswith(("log_prob", "sample", "reg_step")) and f"ref_mvn_{k}" in out:
            out["ratio_" + k] = v / out[f"ref_mvn_{k}"]
    return out


def sample_quality(prior: PosePrior, train: Tensor, val: Tensor, n: int = 500, seed: int = 0) -> dict[str, float]:
    """APD, FID, precision/recall and nearest-training-pose distance of ``n`` samples (body layout)."""
    samples = prior.sample(n, generator=torch.Generator().manual_seed(seed)).double()
    ref = val[torch.randperm(len(val), generator=torch.Generator().manual_seed(seed))[:n]].double()
    p, r = metrics.precision_recall(samples, ref, k=3)
    out = {
        "fid": metrics.frechet_distance(samples, val),
        "precision": p,
        "recall": r,
        "nearest_train": metrics.nearest_distance(samples, train),
        "nearest_train_val_ref": metrics.nearest_distance(ref, train),
    }
    if prior.layout.name == "body":
        out["apd_cm"] = metrics.apd(samples)
        out["apd_cm_val_ref"] = metrics.apd(ref)
    return out


def run(
    specs: Sequence[str | tuple[str, dict[str, Any]]],
    train: PoseData,
    val: PoseData,
    out_dir: str | Path,
    *,
    layout: str = "body",
    all_data: PoseData | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> list[Result]:
    """Runs the whole benchmark and writes ``bench.md``, ``bench.json`` and plots to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    xt, xv = train.poses_for(layout), val.poses_for(layout)
    rows: list[Result] = []
    for spec in specs:
        gen = torch.Generator().manual_seed(seed)
        (row,), priors = evaluate([spec], train, val, layout=layout, quick=quick, generator=gen, progress=progress)
        prior = priors[row.prior]
        if hasattr(prior, "round_trip"):
            row.extra["round_trip"] = metrics.round_trip_error(prior, xv)
        row.extra.update(sample_quality(prior, xt, xv, n=200 if quick else 500, seed=seed))
        speed_x = torch.cat([xv] * math.ceil(4096 / len(xv)))[:4096]
        row.extra.update(speed(prior, speed_x, quick=quick))
        rows.append(row)
    if all_data is not None:
        loao = leave_one_group_out(specs, all_data, layout=layout, quick=quick)
        for row in rows:
            row.extra["loao_mean"] = loao[row.prior]["mean"]
            row.extra["loao"] = {k: v for k, v in loao[row.prior].items() if not k.startswith("dim:")}
    write(rows, out, quick=quick)
    return rows


DENSITY_COLUMNS = ("loao_mean", "round_trip")
SAMPLE_COLUMNS = ("apd_cm", "fid", "precision", "recall", "nearest_train")
SPEED_COLUMNS = (
    "log_prob/s@1",
    "log_prob/s@64",
    "log_prob/s@4096",
    "ratio_log_prob/s@4096",
    "sample/s",
    "reg_step_ms@1",
    "ratio_reg_step_ms@1",
    "train_poses/s@256",
)


def _table(rows: Sequence[Result], columns: Sequence[str]) -> str:
    return markdown(["prior", *columns], [[r.prior, *(_cell(r.extra.get(c)) for c in columns)] for r in rows])


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def render(rows: Sequence[Result], *, quick: bool = False) -> str:
    """The benchmark report in markdown."""
    ref_note = (
        "Speed in poses/s on this machine (2 CPU threads); `ratio_*` divides by a "
        "`torch.distributions.MultivariateNormal` of the same D measured in the same run "
        "(for latency, the ratio of milliseconds: >1 is slower than the reference)."
    )
    parts = [
        "## Density (NLL in nats per pose; BPD = NLL / (D ln 2); val = file-level validation split)",
        "" if not quick else "*quick run: iterative priors trained for only a few epochs*\n",
        markdown_table(rows, DENSITY_COLUMNS),
        "",
        "`loao_mean`: mean NLL over leave-one-action-out folds (fit on all other actions). "
        "`round_trip`: max |inverse(forward(x)) - x| in radians on the val poses.",
        "",
        "## Samples (500 per prior; references in brackets are val poses)",
        "",
        _table(rows, SAMPLE_COLUMNS),
        "",
        "APD: mean pairwise per-joint distance of the 22 body joints (cm). FID: Fréchet distance "
        "between Gaussians fitted to samples and val poses (axis-angle). precision/recall: k=3 "
        "nearest-neighbour manifolds vs. val poses. nearest_train: mean distance from a sample to "
        "its nearest training pose (radians, flattened axis-angle); val poses score "
        + ", ".join(f"{r.extra.get('nearest_train_val_ref', float('nan')):.2f}" for r in rows[:1])
        + " on it.",
        "",
        "## Speed",
        "",
        _table(rows, SPEED_COLUMNS),
        "",
        ref_note,
    ]
    return "\n".join(parts) + "\n"


def write(rows: Sequence[Result], out: Path, *, quick: bool = False) -> None:
    """Writes ``bench.md``, ``bench.json``, ``nll.png`` and ``speed.png``."""
    (out / "bench.md").write_text(render(rows, quick=quick))
    (out / "bench.json").write_text(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.prior for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], [r.val_nll for r in rows], height=0.4, label="val NLL")
    if any("loao_mean" in r.extra for r in rows):
        ax.barh([i - 0.2 for i in y], [r.extra.get("loao_mean", math.nan) for r in rows], height=0.4,
                label="leave-one-action-out NLL")
    ax.set_yticks(list(y), names)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("NLL (nats per pose, lower is better)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "nll.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
    for k, (key, lab) in enumerate((("log_prob/s@1", "batch 1"), ("log_prob/s@64", "batch 64"),
                                    ("log_prob/s@4096", "batch 4096"))):
        ax.barh([i + (k - 1) * 0.27 for i in y], [r.extra.get(key, math.nan) for r in rows], height=0.27, label=lab)
    ax.set_xscale("log")
    ax.set_yticks(list(y), names)
    ax.set_xlabel("log_prob poses/s (log scale, higher is better)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "speed.png", dpi=120)
    plt.close(fig)


def default_specs(names: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """The benchmark's rows: every variant of each prior (:data:`~poseprior.evaluation.BENCH_VARIANTS`)."""
    return bench_specs(names)


__all__ = ["default_specs", "label", "render", "run", "sample_quality", "speed", "write"]
