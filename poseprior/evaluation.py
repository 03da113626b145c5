r"""Fit-and-score protocols shared by the ``poseprior`` command, the benchmarks and the docs.

Every number is measured on real data given by the caller: priors are fitted on a training set,
early stopping (for priors trained by gradient descent) uses a file-level hold-out *of the
training files*, and NLL / bits-per-dimension are reported on a separate validation set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import metrics
from .amass import PoseData
from .base import PosePrior
from .registry import create

log = logging.getLogger("poseprior")

QUICK_EPOCHS = 2
"""Epochs used by ``quick`` runs (smoke tests): the numbers are then not representative."""

BENCH_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "gaussian": {"diagonal": {"covariance": "diagonal"}, "default": {}},
}
"""The rows ``poseprior demo``, ``poseprior bench`` and ``benchmarks/`` show for a prior: variant
name -> constructor arguments, in row order. A prior not listed has one row, its defaults."""


def bench_variants(name: str) -> dict[str, dict[str, Any]]:
    """The named variants of prior ``name`` (see :data:`BENCH_VARIANTS`), as fresh dicts."""
    return {k: dict(v) for k, v in BENCH_VARIANTS.get(name, {"default": {}}).items()}


def bench_specs(names: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """The rows for priors ``names``: ``(name, kwargs)`` for every variant of each, in order."""
    return [(n, kwargs) for n in names for kwargs in bench_variants(n).values()]


@dataclass
class Result:
    """One row of a results table."""

    prior: str
    layout: str
    dim: int
    exact: bool
    parameters: int
    fit_seconds: float
    train_nll: float
    val_nll: float
    val_bpd: float
    unseen_nll: float | None = None
    unseen_bpd: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hold_out_files(data: PoseData, every: int = 8) -> tuple[PoseData, PoseData]:
    """Splits ``data`` by file: every ``every``-th file goes to the hold-out part (for early stopping)."""
    names = [p.rsplit("/", 1)[-1] for p in data.files]
    held = names[every - 1 :: every]
    if not held or len(held) == len(names):
        return data, data
    kept = [n for n in names if n not in set(held)]
    return data.select_files(kept), data.select_files(held)


def skip_reason(name: str, layout: str, data: PoseData) -> str | None:
    """Why prior ``name`` cannot be evaluated on ``data`` with ``layout`` (``None`` if it can)."""
    try:
        x = data.poses_for(layout)
    except Exception as e:  # noqa: BLE001  (the reason is reported, not swallowed)
        return str(e)
    if bool((x.std(0) <= 1e-6).all()):
        return f"every value of the {layout!r} joints is constant in this data (e.g. no finger motion)"
    return None


def fit_prior(
    name: str,
    train: PoseData,
    *,
    layout: str = "body",
    quick: bool = False,
    generator: torch.Generator | None = None,
    prior_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    fit_options: dict[str, Any] | None = None,
) -> tuple[PosePrior, float]:
    """Creates prior ``name`` with its defaults (or ``prior_kwargs``) and fits it.

    ``fit_options`` go to ``fit`` of priors trained by gradient descent (e.g. ``weight_decay``).
    Returns the prior and the fit time in seconds.
    """
    prior = create(name, layout=layout, **(prior_kwargs or {}))
    options: dict[str, Any] = {}
    if prior.iterative_fit:
        fit_part, stop_part = hold_out_files(train)
        x = fit_part.poses_for(layout)
        options = {"val": stop_part.poses_for(layout), "generator": generator, "progress": progress}
        options.update(fit_options or {})
        if quick:
            options["epochs"] = QUICK_EPOCHS
    else:  # closed form (the generator drives e.g. the GMM's k-means++ start)
        x = train.poses_for(layout)
        options = {"generator": generator}
    start = time.perf_counter()
    prior.fit(x, **options)
    return prior.eval(), time.perf_counter() - start


def label(name: str, kwargs: dict[str, Any] | None = None) -> str:
    """A row label: the prior's name with its non-default arguments, e.g.
    ``gaussian(covariance=diagonal)``."""
    if not kwargs:
        return name
    return name + "(" + ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items())) + ")"


def evaluate(
    specs: Sequence[str | tuple[str, dict[str, Any]]],
    train: PoseData,
    val: PoseData,
    *,
    unseen: PoseData | None = None,
    layout: str = "body",
    quick: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[list[Result], dict[str, PosePrior]]:
    """Fits every prior (a name, or a name and constructor arguments) on ``train``, scores it on ``val``
    and, if given, on ``unseen`` (poses of people and motion in no training file).

    Every row's ``extra`` also holds, for ``unseen`` (or ``val`` without it), the NLL of the
    learned model alone (``model_nll``: ``broad_weight=0``) and of the prior's broad component
    alone (``broad_nll``), for priors with one. Returns the rows and the fitted priors, keyed by
    :func:`label`.
    """
    rows, priors = [], {}
    xt, xv = train.poses_for(layout), val.poses_for(layout)
    xu = unseen.poses_for(layout) if unseen is not None else None
    for spec in specs:
        name, kwargs = (spec, {}) if isinstance(spec, str) else spec
        prior, seconds = fit_prior(
            name,
            train,
            layout=layout,
            quick=quick,
            generator=generator,
            prior_kwargs=kwargs,
            progress=progress,
        )
        val_nll = metrics.nll(prior, xv)
        unseen_nll = metrics.nll(prior, xu) if xu is not None else None
        row = Result(
            prior=label(name, kwargs),
            layout=layout,
            dim=prior.dim,
            exact=prior.has_exact_log_prob,
            parameters=sum(p.numel() for p in prior.parameters()),
            fit_seconds=seconds,
            train_nll=metrics.nll(prior, xt),
            val_nll=val_nll,
            val_bpd=metrics.bits_per_dim_of(val_nll, prior.dim),
            unseen_nll=unseen_nll,
            unseen_bpd=None if unseen_nll is None else metrics.bits_per_dim_of(unseen_nll, prior.dim),
        )
        if prior.broad is not None:
            held = xu if xu is not None else xv
            row.extra["model_nll"] = metrics.nll(prior.without_broad(), held)
            row.extra["broad_nll"] = metrics.broad_nll(prior, held)
        rows.append(row)
        priors[label(name, kwargs)] = prior
        log.info("%s: val NLL %.2f", label(name, kwargs), val_nll)
    return rows, priors


def markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table of ``head`` and ``rows`` of cells already formatted as strings.

    The one table writer of the package: :func:`markdown_table`, the benchmark report and the
    ``poseprior`` commands render through it.
    """
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_table(rows: Sequence[Result], extra_columns: Sequence[str] = ()) -> str:
    """Renders results as a markdown table (NLL in nats per pose); the ``unseen`` columns appear when
    any row has them."""
    unseen = any(r.unseen_nll is not None for r in rows)
    head = [
        "prior",
        "layout",
        "D",
        "log_prob",
        "params",
        "fit s",
        "train NLL",
        "val NLL",
        "val BPD",
        *(("unseen NLL", "unseen BPD") if unseen else ()),
        *extra_columns,
    ]
    cells = [
        [
            r.prior,
            r.layout,
            str(r.dim),
            "exact" if r.exact else "estimate",
            f"{r.parameters:,}",
            f"{r.fit_seconds:.1f}",
            f"{r.train_nll:.2f}",
            f"{r.val_nll:.2f}",
            f"{r.val_bpd:.3f}",
            *((_fmt(r.unseen_nll), "-" if r.unseen_bpd is None else f"{r.unseen_bpd:.3f}") if unseen else ()),
            *(_fmt(r.extra.get(c)) for c in extra_columns),
        ]
        for r in rows
    ]
    return markdown(head, cells)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------- leave-one-action-out
CMU_ACTIONS: tuple[str, ...] = (
    "basketball_signal",
    "basketball",
    "directing_traffic",
    "jumping",
    "running",
    "soccer",
    "walking_extra",
    "walking",
    "washwindow",
)
"""The action classes of the bundled CMU sample (longest names first, for prefix matching)."""


def action_of(path: str) -> str:
    """The group of a bundled CMU file: its action for ``cmu_expmap_<split>_<action>_<clip>.npz``,
    its subject for ``cmu_<subject>_<trial>.npz`` (e.g. ``subject_60`` for the salsa trials of
    ``cmu_extra``; ``cmu_01_01``, a playground jumping trial, is ``subject_01``).

    Other files form their own group, named by the file stem.
    """
    name = path.rsplit("/", 1)[-1]
    for prefix in ("cmu_expmap_train_", "cmu_expmap_test_"):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            for action in sorted(CMU_ACTIONS, key=len, reverse=True):
                if rest.startswith(action + "_"):
                    return action
    parts = name.removesuffix(".npz").split("_")
    if len(parts) == 3 and parts[0] == "cmu" and parts[1].isdigit():
        return f"subject_{parts[1]}"
    return name.removesuffix(".npz")


def group_folds(
    data: PoseData, *, group_of: Any = action_of, min_frames: int = 200
) -> dict[str, tuple[PoseData, PoseData]]:
    """The leave-one-group-out folds of ``data``: ``{group: (all other groups, the group)}``.

    Files are grouped with ``group_of`` (the action, by default); groups with fewer than
    ``min_frames`` frames get no fold of their own but stay in the others' training part.
    """
    groups: dict[str, list[str]] = {}
    for f in data.files:
        groups.setdefault(group_of(f), []).append(f.rsplit("/", 1)[-1])
    folds = {}
    for g in sorted(groups):
        held = data.select_files(groups[g])
        if len(held) >= min_frames:
            folds[g] = (data.select_files([f for h, fs in groups.items() if h != g for f in fs]), held)
    return folds


def leave_one_group_out(
    specs: Sequence[str | tuple[str, dict[str, Any]]],
    data: PoseData,
    *,
    layout: str = "body",
    group_of: Any = action_of,
    min_frames: int = 200,
    quick: bool = False,
    generator: torch.Generator | None = None,
) -> dict[str, dict[str, float]]:
    r"""Leave-one-group-out NLL: for every group (action or subject), fit on all other groups, score on it.

    Groups with fewer than ``min_frames`` frames are folded into no fold (too small to score) but
    are still used for training. Returns ``{label: {group: NLL, ..., "mean": mean over groups}}``;
    every fold's ``dim`` is reported as ``"dim:<group>"`` (the same for every fold of a layout).
    """
    folds = group_folds(data, group_of=group_of, min_frames=min_frames)
    out: dict[str, dict[str, float]] = {}
    for spec in specs:
        name, kwargs = (spec, {}) if isinstance(spec, str) else spec
        key = label(name, kwargs)
        res: dict[str, float] = {}
        for g, (rest, held) in folds.items():
            # A fresh seeded generator per fold (unless one is given): every fold is reproducible alone.
            fold_gen = generator if generator is not None else torch.Generator().manual_seed(0)
            prior, _ = fit_prior(
                name, rest, layout=layout, quick=quick, generator=fold_gen, prior_kwargs=kwargs
            )
            res[g] = metrics.nll(prior, held.poses_for(layout))
            res[f"dim:{g}"] = prior.dim
            log.info("leave-out %s / %s: NLL %.2f", key, g, res[g])
        res["mean"] = sum(res[g] for g in folds) / len(folds)
        out[key] = res
    return out
