r"""Chooses the priors' robustness defaults with the leave-one-action-out protocol.

For every prior and training variant, each fold (one CMU action held out) fits the prior once
with ``broad_weight=0`` on all other actions (early stopping on a file-level hold-out of them, as
``poseprior bench`` does); the broad component is then added in closed form for every
``broad_weight`` / ``broad_scale`` in the grid and the held-out action is scored. The mixture
does not change training, so one fit per fold serves the whole grid. The file-level val split is
scored the same way (fit on the train split), giving the in-distribution vs held-out gap.

    python benchmarks/tune_defaults.py --prior global_flow --out results/tune [--threads 1]

Writes ``<out>/<prior>.json`` and prints a markdown table (rows: variant, weight, scale;
columns: val NLL, leave-one-action-out mean and worst action).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import poseprior
from poseprior import metrics
from poseprior.amass import PoseData, load_folder, load_split
from poseprior.data import sample_path
from poseprior.evaluation import action_of, fit_prior

WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3)
SCALES = (1.0, 1.5, 2.0, 3.0)
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "gaussian": {"default": {}, "diagonal": {"covariance": "diagonal"}},
    "joint_flow": {"default": {}},
    "global_flow": {"default": {}, "noise0.05": {"noise_std": 0.05}},
}


def with_broad(prior: poseprior.PosePrior, weight: float, scale: float, x: torch.Tensor) -> poseprior.PosePrior:
    """The same fitted model mixed with a broad component fitted in closed form on ``x``."""
    if weight == 0:
        return prior
    config = {**prior.get_config(), "broad_weight": weight, "broad_scale": scale}
    mix = poseprior.create(prior.name, **config).to(prior.constant_values.dtype)
    missing, unexpected = mix.load_state_dict(prior.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"broad_loc", "broad_log_scale"}, (missing, unexpected)
    mix._resolve_constants(x)
    return mix.eval()


def score_grid(prior: poseprior.PosePrior, fit_x: torch.Tensor, test_x: torch.Tensor) -> dict[str, float]:
    out = {}
    for w in WEIGHTS:
        for s in SCALES if w > 0 else (1.0,):
            out[f"w={w},s={s}"] = metrics.nll(with_broad(prior, w, s, fit_x), test_x)
    return out


def folds(data: PoseData, min_frames: int = 200) -> dict[str, tuple[PoseData, PoseData]]:
    groups: dict[str, list[str]] = {}
    for f in data.files:
        groups.setdefault(action_of(f), []).append(f.rsplit("/", 1)[-1])
    out = {}
    for g in sorted(groups):
        held = data.select_files(groups[g])
        if len(held) >= min_frames:
            rest = data.select_files([f for h, fs in groups.items() if h != g for f in fs])
            out[g] = (rest, held)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prior", required=True, choices=sorted(VARIANTS))
    ap.add_argument("--data", default=str(sample_path()))
    ap.add_argument("--out", default="results/tune")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="*", default=None, help="a subset of the prior's variants")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, val = load_split(args.data, "train"), load_split(args.data, "val")
    all_data = load_folder(args.data, files=[Path(f).name for f in (*train.files, *val.files)])
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for variant, kwargs in VARIANTS[args.prior].items():
        if args.variants and variant not in args.variants:
            continue
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        prior, _ = fit_prior(args.prior, train, generator=gen, prior_kwargs=kwargs)
        res: dict[str, Any] = {"val": score_grid(prior, train.poses_for("body"), val.poses_for("body")),
                               "val_dim": prior.dim, "folds": {}}
        for g, (rest, held) in folds(all_data).items():
            prior, _ = fit_prior(args.prior, rest, generator=torch.Generator().manual_seed(0), prior_kwargs=kwargs)
            res["folds"][g] = score_grid(prior, rest.poses_for("body"), held.poses_for("body"))
            print(f"{args.prior}/{variant} {g}: {res['folds'][g]}", flush=True)
        res["seconds"] = time.perf_counter() - t0
        results[variant] = res
        (out_dir / f"{args.prior}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(render(args.prior, results))


def render(name: str, results: dict[str, Any]) -> str:
    lines = ["| prior | variant | broad_weight | broad_scale | val NLL | LOAO mean | worst action |",
             "|---|---|---|---|---|---|---|"]
    for variant, res in results.items():
        for key, val_nll in res["val"].items():
            per = {g: f[key] for g, f in res["folds"].items()}
            mean = sum(per.values()) / len(per)
            worst = max(per, key=per.get)
            w, s = (float(t.split("=")[1]) for t in key.split(","))
            lines.append(f"| {name} | {variant} | {w:g} | {s:g} | {val_nll:.2f} | {mean:.2f} | "
                         f"{worst} {per[worst]:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
