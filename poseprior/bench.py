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
  throughput. Absolute times drift on shared machines, so every speed comes with a reference,
  ``torch.distributions.MultivariateNormal`` of the same dimension, timed in rounds alternating
  with the prior's, and the median of the per-round ratios. (``benchmarks/speed_joint_flow.py``
  times ``joint_flow`` against a naive per-joint loop of nflows flows.)

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

ROUNDS, QUICK_ROUNDS = 9, 3
"""Alternating rounds of prior and reference per speed figure (``--quick``: fewer)."""
SAMPLES, QUICK_SAMPLES = 5000, 500
"""Samples per prior for the quality metrics (precision/recall, APD, FID, nearest pose)."""
TAIL_SAMPLES, QUICK_TAIL_SAMPLES = 20_000, 2000
"""Samples per prior, drawn apart, for the share of values beyond pi (issue 14 counts it in 20,000)."""


def _once(fn: Callable[[], object], n: int, min_seconds: float) -> float:
    """Items per second of ``fn`` (which handles ``n`` items), called for at least ``min_seconds``."""
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count * n / elapsed


def _rate(fn: Callable[[], object], n: int, min_seconds: float = 0.3, repeats: int = 3) -> float:
    """Items per second of ``fn`` (which handles ``n`` items), the median of ``repeats`` timings."""
    fn()  # warm-up
    return statistics.median(_once(fn, n, min_seconds) for _ in range(repeats))


def _paired(
    fn: Callable[[], object], ref: Callable[[], object], n: int, seconds: float, rounds: int = 9
) -> tuple[float, float, float]:
    """Items per second of ``fn`` and of ``ref`` (each handles ``n`` items), timed in alternating
    rounds of ``seconds / rounds`` each, and the median of the per-round ratios ``fn / ref``.

    A machine's speed drifts over seconds (other loads, clock changes); timed back to back in
    one block each, that drift enters the ratio; alternated, both see the same conditions.
    """
    fn(), ref()  # warm-up
    pairs = [(_once(fn, n, seconds / rounds), _once(ref, n, seconds / rounds)) for _ in range(rounds)]
    a, b = zip(*pairs, strict=True)
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in pairs)


def speed(prior: PosePrior, x: Tensor, *, quick: bool = False) -> dict[str, float]:
    """Speed figures of ``prior`` on poses ``x`` (N >= 4096 recommended), each with the MVN
    reference timed in alternating rounds with it (see :func:`_paired`): ``ratio_*`` is the median
    of the per-round ratios, ``prior / reference`` (for latency in ms: >1 is slower)."""
    t = 0.2 if quick else 0.9  # seconds for each of the prior and the reference, per figure
    out: dict[str, float] = {}
    ref = torch.distributions.MultivariateNormal(torch.zeros(prior.dim), torch.eye(prior.dim))
    flat = x.flatten(1)[:, prior.present].detach()  # the D values in the density

    rounds = QUICK_ROUNDS if quick else ROUNDS

    def paired(key: str, fn: Callable[[], object], ref_fn: Callable[[], object], n: int) -> None:
        out[key], out[f"ref_mvn_{key}"], out[f"ratio_{key}"] = _paired(fn, ref_fn, n, t, rounds)

    for b in (1, 64, 4096):
        xb, fb = x[:b].detach(), flat[:b]
        with torch.no_grad():
            n = len(xb)  # (fewer than b if x is short)
            paired(f"log_prob/s@{b}", lambda xb=xb: prior.log_prob(xb), lambda fb=fb: ref.log_prob(fb), n)
    gen = torch.Generator().manual_seed(0)
    n_sample = 512 if quick else 4096

    def draw() -> Tensor:
        return prior.sample(n_sample, generator=gen)

    paired("sample/s", draw, lambda: ref.sample((n_sample,)), n_sample)

    x1, f1 = x[:1].detach(), flat[:1]

    def reg_step() -> None:
        xi = x1.clone().requires_grad_(True)
        prior.penalty(xi).sum().backward()

    def ref_step() -> None:
        fi = f1.clone().requires_grad_(True)
        (-ref.log_prob(fi)).sum().backward()

    flags = [p.requires_grad for p in prior.parameters()]
    for p in prior.parameters():
        p.requires_grad_(False)  # a regularizer step differentiates w.r.t. the pose only
    steps, ref_steps, ratio = _paired(reg_step, ref_step, 1, t, rounds)
    for p, flag in zip(prior.parameters(), flags, strict=False):
        p.requires_grad_(flag)
    # As latency: milliseconds per step, and the ratio of milliseconds.
    out["reg_step_ms@1"], out["ref_mvn_reg_step_ms@1"] = 1000.0 / steps, 1000.0 / ref_steps
    out["ratio_reg_step_ms@1"] = 1.0 / ratio

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
        out["train_poses/s@256"] = _rate(train_step, len(xb), 0.1 if quick else 0.3, repeats=1)
        prior.load_state_dict(state)
        prior.eval()
    return out


THIN = 10
"""Reference poses for precision/recall are every ``THIN``-th frame (3 fps at 30 fps): consecutive
frames are near copies of each other, and with them the k-NN balls would measure the frame rate
rather than the spread of the data."""


def sample_quality(
    prior: PosePrior,
    train: Tensor,
    val: Tensor,
    unseen: Tensor | None = None,
    n: int = SAMPLES,
    seed: int = 0,
    n_tail: int = TAIL_SAMPLES,
) -> dict[str, float]:
    """Sample statistics: values beyond pi of ``n_tail`` samples (issue 14 counts them in 20,000:
    at rates near 0.05%, 5,000 hold two or three such poses), and precision/recall, APD, FID and
    nearest pose of ``n`` samples.

    Precision and recall (k = 3) compare the samples with every :data:`THIN`-th val (and unseen)
    pose over the learned values, the ones the data measures (the anatomical values of real data
    are whatever its capture froze them to); ``*_all`` over every value in the density. The
    training poses scored as if they were samples (``*_train_ref``) show what a perfect model of
    the training data would get.
    """
    gen = torch.Generator().manual_seed(seed)
    samples = prior.sample(n, generator=gen).double()
    tail = prior.sample(n_tail, generator=torch.Generator().manual_seed(seed + 1))  # its own draw
    biggest = tail.reshape(n_tail, -1).abs().amax(-1).double()
    learned, present = prior.learned.cpu(), prior.present.cpu()
    out: dict[str, float] = {
        "pct_beyond_pi": 100.0 * float((biggest > math.pi).double().mean()),
        "n_beyond_2pi": int((biggest > 2 * math.pi).sum()),
        "max_abs": float(biggest.max()),
    }
    train_ref = train[torch.randperm(len(train), generator=gen)[:n]].double()
    for tag, ref in (("", val), ("unseen_", unseen)):
        if ref is None:
            continue
        ref = ref[::THIN].double()
        for suffix, mask in (("", learned), ("_all", present)):
            p, r = metrics.precision_recall(samples.flatten(1)[:, mask], ref.flatten(1)[:, mask], k=3)
            out[f"{tag}precision{suffix}"], out[f"{tag}recall{suffix}"] = p, r
        p, r = metrics.precision_recall(train_ref.flatten(1)[:, learned], ref.flatten(1)[:, learned], k=3)
        out[f"{tag}precision_train_ref"], out[f"{tag}recall_train_ref"] = p, r
    m = min(n, 500)  # the pairwise and nearest-neighbour measures on a subset
    out["fid"] = metrics.frechet_distance(samples, val)
    out["nearest_train"] = metrics.nearest_distance(samples[:m], train)
    out["nearest_train_val_ref"] = metrics.nearest_distance(val[::THIN][:m].double(), train)
    if prior.layout.name == "body":
        out["apd_cm"] = metrics.apd(samples[:m])
        out["apd_cm_val_ref"] = metrics.apd(val[torch.randperm(len(val), generator=gen)[:m]].double())
    return out


def run(
    specs: Sequence[str | tuple[str, dict[str, Any]]],
    train: PoseData,
    val: PoseData,
    out_dir: str | Path,
    *,
    unseen: PoseData | None = None,
    layout: str = "body",
    loao: bool = False,
    quick: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> list[Result]:
    """Runs the whole benchmark and writes ``bench.md``, ``bench.json`` and plots to ``out_dir``.

    With ``loao``, also the leave-one-group-out protocol over the training data's groups
    (:func:`~poseprior.evaluation.action_of`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    xt, xv = train.poses_for(layout), val.poses_for(layout)
    xu = unseen.poses_for(layout) if unseen is not None else None
    rows: list[Result] = []
    for spec in specs:
        gen = torch.Generator().manual_seed(seed)
        (row,), priors = evaluate(
            [spec], train, val, unseen=unseen, layout=layout, quick=quick, generator=gen, progress=progress
        )
        prior = priors[row.prior]
        if hasattr(prior, "round_trip"):
            row.extra["round_trip"] = metrics.round_trip_error(prior, xv)
        n, n_tail = (QUICK_SAMPLES, QUICK_TAIL_SAMPLES) if quick else (SAMPLES, TAIL_SAMPLES)
        row.extra.update(sample_quality(prior, xt, xv, xu, n=n, seed=seed, n_tail=n_tail))
        if layout == "body":
            from .plot import plot_poses

            grid = prior.sample(16, generator=torch.Generator().manual_seed(seed + 1))
            plot_poses(grid, out / f"samples_{_slug(row.prior)}.png", cols=8, panel_size=1.4)
        speed_x = torch.cat([xv] * math.ceil(4096 / len(xv)))[:4096]
        row.extra.update(speed(prior, speed_x, quick=quick))
        rows.append(row)
    if loao:
        res = leave_one_group_out(specs, train, layout=layout, quick=quick)
        for row in rows:
            row.extra["loao_mean"] = res[row.prior]["mean"]
            row.extra["loao"] = {k: v for k, v in res[row.prior].items() if not k.startswith("dim:")}
    write(rows, out, quick=quick)
    return rows


def _slug(label: str) -> str:
    return label.replace("(", "-").replace(")", "").replace("=", "-").replace(", ", "_")


DENSITY_COLUMNS = ("model_nll", "broad_nll", "loao_mean", "round_trip")
SAMPLE_COLUMNS = (
    "pct_beyond_pi",
    "n_beyond_2pi",
    "precision",
    "recall",
    "unseen_precision",
    "unseen_recall",
    "precision_all",
    "recall_all",
    "apd_cm",
    "fid",
    "nearest_train",
)
SPEED_COLUMNS = (
    "log_prob/s@1",
    "log_prob/s@64",
    "log_prob/s@4096",
    "ratio_log_prob/s@4096",
    "sample/s",
    "reg_step_ms@1",
    "ref_mvn_reg_step_ms@1",
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
    rounds = QUICK_ROUNDS if quick else ROUNDS
    ref_note = (
        f"Speed in poses/s on this machine (2 CPU threads), medians of {rounds} rounds; `ratio_*` "
        "divides by a `torch.distributions.MultivariateNormal` of the same D timed in alternating "
        f"rounds with the prior (the median of the {rounds} per-round ratios; for latency, the ratio "
        "of milliseconds: >1 is slower than the reference); `ref_mvn_reg_step_ms@1`: the "
        "reference's regularizer step."
    )
    first = rows[0].extra if rows else {}
    ceiling = ", ".join(
        f"{k} {first[k]:.3f}"
        for k in (
            "precision_train_ref",
            "recall_train_ref",
            "unseen_precision_train_ref",
            "unseen_recall_train_ref",
        )
        if k in first
    )
    n, n_tail = (QUICK_SAMPLES, QUICK_TAIL_SAMPLES) if quick else (SAMPLES, TAIL_SAMPLES)
    parts = [
        "## Density (NLL in nats per pose; BPD = NLL / (D ln 2))",
        "" if not quick else "*quick run: iterative priors trained for only a few epochs*\n",
        markdown_table(rows, DENSITY_COLUMNS),
        "",
        "`val`: the file-level validation split (actions also in training). `unseen`: subjects and motion in "
        "no training file. D counts the learned and the anatomical values. `model_nll`: unseen NLL of the "
        "learned model alone (`broad_weight=0`); `broad_nll`: unseen NLL of the prior's broad component "
        "alone. `loao_mean`: mean NLL over leave-one-group-out folds (every action or subject of the "
        "training "
        "data held out in turn). `round_trip`: max |inverse(forward(x)) - x| in radians on the val poses.",
        "",
        f"## Samples ({n:,} per prior; {n_tail:,} for the values beyond pi)",
        "",
        _table(rows, SAMPLE_COLUMNS),
        "",
        f"`pct_beyond_pi`: % of {n_tail:,} samples (a draw of their own) with an axis-angle value beyond pi; "
        "`n_beyond_2pi`: how many beyond "
        f"2 pi. precision/recall: k=3 nearest-neighbour manifolds (Kynkäänniemi et al. 2019) against every "
        f"{THIN}th val (`unseen_`: unseen) pose, over the learned values (`_all`: every value in the "
        "density, where the samples' anatomical spread meets the frozen values of the capture). The training "
        f"poses scored as samples: {ceiling}. APD: mean pairwise per-joint distance of the 22 body joints "
        "(cm). FID: Fréchet distance between Gaussians fitted to samples and val poses (axis-angle). "
        "nearest_train: "
        "mean distance from a sample to its nearest training pose (radians, flattened axis-angle); val poses "
        "score "
        + ", ".join(f"{r.extra.get('nearest_train_val_ref', float('nan')):.2f}" for r in rows[:1])
        + " on it. Stick figures of 16 samples per prior: `samples_<prior>.png`.",
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
    series = [("val NLL", [r.val_nll for r in rows])]
    if any(r.unseen_nll is not None for r in rows):
        series.append(
            ("unseen-subject NLL", [math.nan if r.unseen_nll is None else r.unseen_nll for r in rows])
        )
    if any("loao_mean" in r.extra for r in rows):
        series.append(("leave-one-group-out NLL", [r.extra.get("loao_mean", math.nan) for r in rows]))
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.6 * len(rows)))
    y = range(len(rows))
    h = 0.8 / len(series)
    for k, (lab, values) in enumerate(series):
        ax.barh([i + (k - (len(series) - 1) / 2) * h for i in y], values, height=h, label=lab)
    ax.set_yticks(list(y), names)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("NLL (nats per pose, lower is better)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "nll.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
    for k, (key, lab) in enumerate(
        (("log_prob/s@1", "batch 1"), ("log_prob/s@64", "batch 64"), ("log_prob/s@4096", "batch 4096"))
    ):
        ax.barh(
            [i + (k - 1) * 0.27 for i in y],
            [r.extra.get(key, math.nan) for r in rows],
            height=0.27,
            label=lab,
        )
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
