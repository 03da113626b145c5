r"""Chooses the priors' defaults by how they do on motion they were not trained on.

Every variant of a prior is fitted with ``broad_weight=0`` (early stopping on a file-level
hold-out of the *training* files, as ``poseprior bench`` does; the validation files are never
used for training or stopping) and scored, with the broad component added in closed form for
every weight and scale of the grid (it does not change training, so one fit serves the grid):

- ``val``: the bundled ``cmu`` val split (files of actions seen in training);
- ``unseen``: the ``cmu_extra`` val split, whose subjects appear in no training file;
- ``cross``: leave one source out, the closest this data comes to another studio: fitted on the
  ``cmu`` train split alone and scored on ``cmu_extra``'s val split, and fitted on the
  ``cmu_extra`` train split alone and scored on ``cmu``'s val split (the two sources were
  retargeted from different rigs); the mean of the two;
- ``loao`` (with ``--loao``): leave one group out over the training data: every action of ``cmu``
  and every subject of ``cmu_extra`` held out in turn (the rest trains), mean NLL over the groups;
- ``pct_pi``: the percentage of samples holding a value beyond pi (of 200,000 from the model and
  as many from the broad component, mixed in closed form; rows stored before 2026-12-03 used
  20,000, see ``pct_pi_samples``).

Training data: the union of both train splits, screened (:func:`poseprior.data.load_bundled`),
mirrored (``fit``'s default for the body). The choice: among the settings whose samples hold a
value beyond pi at most 0.05% of the time, the lowest mean of ``val``, ``unseen``, ``cross``
(and ``loao`` when every variant of the prior has it): three protocols of generalization and one
in distribution, none alone. The cap is half the 0.1% the priors must meet, because the estimate
itself varies between samples and between training runs (20,000 samples hold about 10 such poses
at the cap: a relative error of 30%; 200,000 about 10%). And at most 5% of the samples may come
from the broad component (``broad_weight <= 0.05``): its draws are the implausible samples
(crossed legs, twisted torsos), which issue 14 asks the default ``sample()`` to avoid. And the
learned model alone (``broad_weight=0``) must beat independent per-value Gaussians fitted on the
same data (the broad component at scale 1) on the unseen subjects: issue 14 asks it of the
flows, and a setting whose learned part does worse than independent values there gets its
held-out score from the broad component. The tables also give the ``margin``: how much the
setting beats its own broad component alone on the unseen subjects (issue 14 asks for 3 nats).
It is reported, not part of the rule: it can be raised by weakening the broad component (a
smaller scale), which lowers the prior's own held-out likelihood (the Gaussian's rows show it).

    python benchmarks/tune_defaults.py --prior global_flow --out docs/tune [--variants a b] [--loao]
    python benchmarks/tune_defaults.py --render docs/tune

Writes ``<out>/<prior>.json`` (merged with the variants already there) and prints the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

import poseprior
from poseprior.amass import PoseData, load_split
from poseprior.data import SCREEN_MARGIN_DEG, load_bundled, sample_path
from poseprior.evaluation import fit_prior
from poseprior.formats import mirror_pose, plausible
from poseprior.nn.independent import IndependentGaussian

WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.3)
SCALES = (1.0, 1.25, 1.5)
MAX_PCT_PI = 0.05
MAX_BROAD_WEIGHT = 0.05
MIN_MARGIN = 3.0
PCT_PI_SAMPLES = 200_000
"""Samples behind ``pct_pi``. At the cap (0.05%) 20,000 samples hold about 10 such poses, too few
to rank settings near it (a 192-wide, 2-block global_flow measured 0.043% on 20,000 samples and
0.065% on 200,000 of its trained checkpoint); rows measured with fewer samples say so (``pct_pi_samples``)."""
# global_flow's settings are stated in full where they differ from today's defaults: the rows
# stored in docs/tune/global_flow.json were measured with 205-wide MADEs, conditioner_bound=3 and
# max_log_scale=1 (the defaults before the 128-wide flow was chosen).
# Every row before the part_swap ones was trained without limb swaps (part_swap=0 then the default).
_FLOW = {"hidden_features": 205, "max_log_scale": 1.0, "conditioner_bound": 3.0, "part_swap": 0.0}
_GROUPED = {**_FLOW, "noise_std": 0.08, "groups": 8}  # global_flow's earlier defaults
_GROUPED_128 = {**_GROUPED, "hidden_features": 128}
_CHOSEN = {**_GROUPED_128, "conditioner_bound": 2.0, "max_log_scale": 0.9}  # the defaults before part_swap
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    # shrinkage=0: the covariance as estimated (the default shrinks it by 0.2 toward its diagonal)
    "gaussian": {f"min_std={m},shrinkage=0": {"min_std": m, "shrinkage": 0.0} for m in (0.02, 0.05, 0.1)}
    | {
        f"min_std={m},shrinkage={k}": {"min_std": m, "shrinkage": k}
        for m in (0.02, 0.05)
        for k in (0.2, 0.3, 0.4, 0.6)
    }
    | {f"min_std=0.02,shrinkage={k}": {"min_std": 0.02, "shrinkage": k} for k in (0.25, 0.35)}
    | {"diagonal": {"covariance": "diagonal"}},
    # (trained without limb swaps, the default then)
    "joint_flow": {f"min_std={m}": {"min_std": m, "part_swap": 0.0} for m in (0.02, 0.05, 0.08)}
    | {f"min_std=0.02,part_swap={q:g}": {"min_std": 0.02, "part_swap": q} for q in (0.5, 1.0)},
    "gmm": {f"min_std={m}": {"min_std": m} for m in (0.02, 0.05, 0.1)},
    "vae": {"default": {}}
    | {f"min_std={m}": {"min_std": m} for m in (0.05, 0.1)}
    | {"latent_dim=16,hidden_features=256": {"latent_dim": 16, "hidden_features": 256}}
    | {f"noise={n}": {"noise_std": n} for n in (0.08, 0.1, 0.12, 0.16)}
    | {f"noise={n},iwae=8": {"noise_std": n, "objective": "iwae", "train_samples": 8} for n in (0.1, 0.12)}
    | {f"noise=0.1,part_swap={q:g}": {"noise_std": 0.1, "part_swap": q} for q in (0.5, 1.0)},
    "global_flow": {
        # the 0.1.0 architecture: unbounded conditioners, log-scales up to 3, noise 0.02, no groups
        "v1": {**_FLOW, "noise_std": 0.02, "max_log_scale": 3.0, "conditioner_bound": None, "groups": None},
        **{f"noise={n}": {**_FLOW, "noise_std": n, "groups": None} for n in (0.05, 0.08, 0.12)},
        "noise=0.08,groups=8": dict(_GROUPED),
        # whitening by the floored covariance instead of per-value scales
        "noise=0.08,groups=8,standardize=full": {**_GROUPED, "standardize": "full"},
        # narrower MADEs: fewer operations' worth of arithmetic per regularizer step
        **{f"noise=0.08,groups=8,hidden={h}": {**_GROUPED, "hidden_features": h} for h in (64, 96, 128)},
        # 128 wide with tighter tails (bounded log-scales, or MADE inputs clamped nearer)
        "noise=0.08,groups=8,hidden=128,max_log_scale=0.75": {**_GROUPED_128, "max_log_scale": 0.75},
        **{
            f"noise=0.08,groups=8,hidden=128,conditioner_bound={b:g}": {
                **_GROUPED_128, "conditioner_bound": b
            }
            for b in (2.0, 1.5)
        },
        "noise=0.08,groups=8,hidden=128,conditioner_bound=2,max_log_scale=0.9": dict(_CHOSEN),
        # two blocks instead of three: a third fewer operations per regularizer step
        **{
            f"noise=0.08,groups=8,hidden={h},conditioner_bound=2,max_log_scale=0.9,blocks=2": {
                **_CHOSEN, "hidden_features": h, "blocks": 2
            }
            for h in (128, 192)
        },
        "noise=0.08,groups=8,hidden=64,standardize=full": {
            **_GROUPED, "hidden_features": 64, "standardize": "full"
        },
        # limb swaps: a training pose takes one limb from another pose with this probability
        **{
            f"noise=0.08,groups=8,hidden=128,conditioner_bound=2,max_log_scale=0.9,part_swap={q:g}": {
                **_CHOSEN, "part_swap": q
            }
            for q in (0.25, 0.5, 0.75, 1.0)
        },
        # limb swaps with fewer operations per regularizer step (issue 14's speed item)
        **{
            f"noise=0.08,groups=8,hidden={h},conditioner_bound=2,max_log_scale=0.9,part_swap=1,blocks={k}": {
                **_CHOSEN, "part_swap": 1.0, "hidden_features": h, "blocks": k
            }
            for h, k in ((128, 2), (192, 2), (96, 3))
        },
        # the two closest settings again with another seed (permutations, initial weights, init noise)
        **{
            f"noise=0.08,groups=8,hidden={h},conditioner_bound=2,max_log_scale=0.9,part_swap=1,blocks={k}"
            ",seed=1": {
                **_CHOSEN, "part_swap": 1.0, "hidden_features": h, "blocks": k, "seed": 1
            }
            for h, k in ((128, 3), (192, 2))
        },
    },
}


def _screened(data: PoseData) -> PoseData:
    return data.select_frames(plausible(data.poses_for("body"), margin_deg=SCREEN_MARGIN_DEG))


def _groups(path: str) -> str:
    """The leave-one-group-out group of a bundled file: its action (cmu) or subject (cmu_extra)."""
    from poseprior.evaluation import action_of

    name = Path(path).name
    if name.startswith("cmu_expmap_"):
        return action_of(path)
    return "subject_" + name.split("_")[1]  # cmu_<subject>_<trial>.npz (cmu_01_01: subject 01)


class Scorer:
    """Scores a prior fitted with broad_weight=0, and its closed-form mixtures, on poses."""

    def __init__(self, prior: poseprior.PosePrior, train: torch.Tensor) -> None:
        self.prior = prior
        x = torch.cat([train, mirror_pose(train, "body")]).double()  # the data fit saw
        flat = x.reshape(len(x), -1)
        self.mean, self.std = flat.mean(0), flat.std(0).clamp_min(prior.min_std)

    def _broad(self, scale: float) -> IndependentGaussian:
        g = IndependentGaussian(self.mean.numel()).double()
        g.set(self.mean, self.std * scale, self.prior.learned)
        return g

    def _anatomy(self, flat: torch.Tensor) -> torch.Tensor | float:
        """log p of the anatomical values of flattened poses (0 without any)."""
        if self.prior.dim == self.prior.model_dim:
            return 0.0
        return copy.deepcopy(self.prior.anatomy).double().log_prob(flat)

    @torch.no_grad()
    def broad_alone(self, x: torch.Tensor) -> dict[str, float]:
        """NLL of the broad component alone (and the anatomical values), per scale of the grid."""
        flat = x.reshape(len(x), -1).double()
        anat = self._anatomy(flat)
        return {f"s={s}": -float((self._broad(s).log_prob(flat) + anat).mean()) for s in SCALES}

    @torch.no_grad()
    def grid(self, x: torch.Tensor) -> dict[str, float]:
        flat = x.reshape(len(x), -1).double()
        total = torch.cat([self.prior.log_prob(c) for c in x.split(4096)]).double()
        anat = self._anatomy(flat)
        model = total - anat
        out = {}
        for w in WEIGHTS:
            for s in SCALES if w > 0 else (1.0,):
                lp = (
                    model
                    if w == 0
                    else torch.logaddexp(model + math.log1p(-w), self._broad(s).log_prob(flat) + math.log(w))
                )
                out[f"w={w},s={s}"] = -float((lp + anat).mean())
        return out

    @torch.no_grad()
    def pct_pi(self, n: int = PCT_PI_SAMPLES) -> dict[str, float]:
        def pct(s: torch.Tensor) -> float:
            return 100.0 * float((s.reshape(len(s), -1).abs().amax(-1) > math.pi).double().mean())

        gen = torch.Generator().manual_seed(1)
        samples = self.prior.sample(n, generator=gen).double()
        model = pct(samples)
        out = {}
        for w in WEIGHTS:
            for s in SCALES if w > 0 else (1.0,):
                broad = samples.clone().reshape(n, -1)  # the broad component's draws of the learned values
                broad[:, self.prior.learned] = self._broad(s).sample(n, gen)
                out[f"w={w},s={s}"] = model if w == 0 else (1 - w) * model + w * pct(broad)
        return out


def run_variant(name: str, kwargs: dict[str, Any], loao: bool) -> dict[str, Any]:
    kwargs = {**kwargs, "broad_weight": 0.0}
    train, val, unseen = load_bundled("train"), load_bundled("val"), load_bundled("unseen")
    xv, xu = val.poses_for("body"), unseen.poses_for("body")

    def fit(data: PoseData) -> poseprior.PosePrior:
        prior, _ = fit_prior(name, data, generator=torch.Generator().manual_seed(0), prior_kwargs=kwargs)
        return prior

    t0 = time.perf_counter()
    prior = fit(train)
    scorer = Scorer(prior, train.poses_for("body"))
    res: dict[str, Any] = {
        "dim": prior.dim,
        "model_dim": prior.model_dim,
        "val": scorer.grid(xv),
        "unseen": scorer.grid(xu),
        "pct_pi": scorer.pct_pi(),
        "pct_pi_samples": PCT_PI_SAMPLES,
        "parameters": sum(p.numel() for p in prior.parameters()),
    }
    cross = []
    for source, target in (("cmu", xu), ("cmu_extra", xv)):
        part = _screened(load_split(sample_path(source), "train"))
        p = fit(part)
        cross.append(Scorer(p, part.poses_for("body")).grid(target))
    res["cross"] = {k: 0.5 * (cross[0][k] + cross[1][k]) for k in cross[0]}
    res["cross_parts"] = {"cmu->cmu_extra val": cross[0], "cmu_extra->cmu val": cross[1]}
    if loao:
        folds = {}
        groups: dict[str, list[str]] = {}
        for f in train.files:
            groups.setdefault(_groups(f), []).append(Path(f).name)
        for g, files in sorted(groups.items()):
            held = train.select_files(files)
            if len(held) < 200:
                continue
            rest = train.select_files([Path(f).name for f in train.files if Path(f).name not in set(files)])
            p = fit(rest)
            folds[g] = Scorer(p, rest.poses_for("body")).grid(held.poses_for("body"))
            print(f"  {name} fold {g}: {folds[g]['w=0.0,s=1.0']:.2f}", flush=True)
        res["loao_folds"] = folds
        res["loao"] = {k: sum(f[k] for f in folds.values()) / len(folds) for k in next(iter(folds.values()))}
    res["seconds"] = time.perf_counter() - t0
    return res


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (variant, weight, scale) with every score and the generalization mean."""
    out = []
    # leave one group out counts in the score only when every variant of the prior has it
    use_loao = all("loao" in res for res in results.values())
    for variant, res in results.items():
        for key in res["val"]:
            w, s = (float(t.split("=")[1]) for t in key.split(","))
            row = {
                "variant": variant,
                "broad_weight": w,
                "broad_scale": s,
                "key": key,
                **{m: res[m][key] for m in ("val", "unseen", "cross", "pct_pi")},
                "loao": res["loao"][key] if "loao" in res else None,
                # issue 14: the default must beat its own broad component alone on the unseen subjects
                # (without a broad component: the per-value Gaussian the broad component scales)
                "margin": res["broad_alone"][f"s={s if w > 0 else 1.0}"] - res["unseen"][key],
                # the learned model alone against independent per-value Gaussians (the broad component at 1)
                "alone_beats_independent": res["unseen"]["w=0.0,s=1.0"] < res["broad_alone"]["s=1.0"],
            }
            parts = [row["val"], row["unseen"], row["cross"]] + ([row["loao"]] if use_loao else [])
            row["score"] = sum(parts) / len(parts)
            out.append(row)
    return out


def choose(results: dict[str, Any]) -> dict[str, Any] | None:
    """The lowest score among the settings with at most MAX_PCT_PI percent of samples beyond pi,
    at most MAX_BROAD_WEIGHT of the samples drawn from the broad component, and whose learned
    model alone (``broad_weight=0``) beats independent per-value Gaussians on the unseen subjects
    (the score includes leave one group out when every variant has it); ``None`` if no setting
    meets those conditions.

    The margin over the broad component alone is reported, not required: a weaker broad component
    (a smaller scale) raises the margin while lowering the prior's own held-out likelihood.
    Variants trained with another ``seed`` are repeats of a setting (how much one training run
    varies), not candidates: the shipped priors are trained with seed 0."""
    repeats = _repeats(results)
    table = [
        r
        for r in rows(results)
        if r["variant"] not in repeats
        and r["pct_pi"] <= MAX_PCT_PI
        and r["broad_weight"] <= MAX_BROAD_WEIGHT
        and r["alone_beats_independent"]
    ]
    return min(table, key=lambda r: r["score"]) if table else None


def shipped(name: str, results: dict[str, Any]) -> dict[str, Any] | None:
    """The row of the prior's current defaults, or ``None`` if no stored row has them: its broad
    weight and scale and its variant's arguments equal those of ``poseprior.create(name)``, the
    variant stating the most of them (older rows store only the arguments that differed then)."""
    prior = poseprior.create(name)
    repeats = _repeats(results)
    matches = [
        r
        for r in rows(results)
        if r["variant"] not in repeats
        and (r["broad_weight"], r["broad_scale"]) == (prior.broad_weight, prior.broad_scale)
        and all(getattr(prior, k) == v for k, v in results[r["variant"]].get("kwargs", {}).items())
    ]
    return max(matches, key=lambda r: len(results[r["variant"]].get("kwargs", {})), default=None)


def _repeats(results: dict[str, Any]) -> set[str]:
    """Variants trained with another seed than 0: repeats of a setting, not candidates."""
    return {v for v, res in results.items() if res.get("kwargs", {}).get("seed", 0) != 0}


_BROAD_ALONE: dict[float, dict[str, float]] = {}


def broad_alone(min_std: float) -> dict[str, float]:
    """Unseen-subject NLL of the broad component alone (and the anatomical values), per scale of the grid.

    The broad component depends on the training data and ``min_std`` only, not on the prior: a
    Gaussian fitted on the training data gives the learned and anatomical values."""
    if min_std not in _BROAD_ALONE:
        train = load_bundled("train").poses_for("body")
        ref = poseprior.create("gaussian", min_std=min_std).fit(train)
        _BROAD_ALONE[min_std] = Scorer(ref, train).broad_alone(load_bundled("unseen").poses_for("body"))
    return _BROAD_ALONE[min_std]


def with_margins(name: str, results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with every variant's ``broad_alone`` (derived from its ``min_std``, not stored)."""
    for res in results.values():
        res["broad_alone"] = broad_alone(poseprior.create(name, **res.get("kwargs", {})).min_std)
    return results


def render(name: str, results: dict[str, Any]) -> str:
    chosen, default = choose(results), shipped(name, results)
    head = "| prior | variant | w | s | val | unseen | cross | loao | score | % > pi | margin |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows(results):
        b = "**" if chosen and (r["variant"], r["key"]) == (chosen["variant"], chosen["key"]) else ""
        loao = f"{r['loao']:.2f}" if r["loao"] is not None else "-"
        few = "" if results[r["variant"]].get("pct_pi_samples", 20_000) >= PCT_PI_SAMPLES else " †"
        here = (r["variant"], r["key"])
        mark = " (shipped)" if default and here == (default["variant"], default["key"]) != (
            (chosen["variant"], chosen["key"]) if chosen else None) else ""
        lines.append(
            f"| {name} | {r['variant']}{mark} | {r['broad_weight']:g} | {r['broad_scale']:g} | "
            f"{r['val']:.2f} | {r['unseen']:.2f} | {r['cross']:.2f} | {loao} | {b}{r['score']:.2f}{b} | "
            f"{r['pct_pi']:.3f}{few} | {r['margin']:.2f} |"
        )
    if any(res.get("pct_pi_samples", 20_000) < PCT_PI_SAMPLES for res in results.values()):
        lines.append(f"\n†: % > pi of 20,000 samples (the others: {PCT_PI_SAMPLES:,})")
    if chosen is None:
        lines.append(
            f"\nno setting of {name} here meets the rule (at most {MAX_PCT_PI:g}% of samples beyond pi, "
            f"broad_weight <= {MAX_BROAD_WEIGHT:g}, the model alone better than independent values)"
        )
        return "\n".join(lines)
    lines.append(
        f"\nchosen for {name}: variant {chosen['variant']}, broad_weight={chosen['broad_weight']:g}, "
        f"broad_scale={chosen['broad_scale']:g} (score {chosen['score']:.2f}, margin {chosen['margin']:.2f}"
        f"{'' if chosen['margin'] >= MIN_MARGIN else f', below the {MIN_MARGIN:g} nats of issue 14'})"
    )
    if default is not None and (default["variant"], default["key"]) != (chosen["variant"], chosen["key"]):
        lines.append(
            f"the shipped defaults of {name} are another setting (marked): variant {default['variant']}, "
            f"broad_weight={default['broad_weight']:g}, broad_scale={default['broad_scale']:g} "
            f"(score {default['score']:.2f}, {default['pct_pi']:.3f}% beyond pi; "
            "docs/generalization.md says why)"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Bars of val, unseen and cross NLL for every prior's shipped defaults (or, without a stored row
    of them, the rule's choice) and its model alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, bars = [], {"val": [], "unseen": [], "cross": []}
    for name, res in results.items():
        chosen = shipped(name, res) or choose(res)
        if chosen is None:  # (render says so)
            continue
        alone = next(r for r in rows(res) if r["variant"] == chosen["variant"] and r["broad_weight"] == 0)
        for tag, r in (("model alone", alone), ("default", chosen)):
            labels.append(f"{name}\n{tag}")
            for k in bars:
                bars[k].append(min(r[k], 60.0))  # clipped: the worst cross-source scores are in the tables
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(labels)), 3.8))
    x = range(len(labels))
    for i, (k, values) in enumerate(bars.items()):
        ax.bar([j + (i - 1) * 0.27 for j in x], values, width=0.27, label=k)
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("NLL, nats per pose (lower is better)")
    ax.legend(fontsize=7, title="scored on", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prior", choices=sorted(VARIANTS))
    ap.add_argument("--out", default="results/tune")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="*", default=None, help="a subset of the prior's variants")
    ap.add_argument(
        "--loao", action="store_true", help="also leave one group out (slow: ~19 fits per variant)"
    )
    ap.add_argument("--render", default=None, help="only print the tables of the JSON files in this folder")
    args = ap.parse_args()
    if args.render:
        results = {
            f.stem: with_margins(f.stem, json.loads(f.read_text()))
            for f in sorted(Path(args.render).glob("*.json"))
        }
        for name, res in results.items():
            print(render(name, res) + "\n")
        plot(results, Path(args.render) / "generalization.png")
        return
    if args.prior is None:
        ap.error("--prior is required (or --render)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.prior}.json"
    for variant, kwargs in VARIANTS[args.prior].items():
        if args.variants and variant not in args.variants:
            continue
        res = run_variant(args.prior, kwargs, args.loao)
        res["kwargs"] = kwargs
        results = json.loads(path.read_text()) if path.is_file() else {}
        results[variant] = res
        path.write_text(json.dumps(results, indent=1) + "\n")
        print(
            f"{args.prior}/{variant}: val {res['val']['w=0.0,s=1.0']:.2f} "
            f"unseen {res['unseen']['w=0.0,s=1.0']:.2f} "
            f"cross {res['cross']['w=0.0,s=1.0']:.2f} ({res['seconds']:.0f} s)",
            flush=True,
        )
    print(render(args.prior, with_margins(args.prior, json.loads(path.read_text()))))


if __name__ == "__main__":
    main()
