r"""Why the flows lose to the Gaussian as regularizers of hidden body parts, and what changes that.

Two modes, both on the pose-completion task of ``benchmarks/completion.py`` (noisy 3D joints with
a body part hidden, :func:`poseprior.fitting.fit_to_joints`, L-BFGS, 200 iterations, prior weight
3e-3, 10 mm noise, seed 0):

* the default: every setting of :data:`VARIANTS` (``global_flow`` keyword arguments) is fitted
  on the training files minus a file-level hold-out (every 8th train file,
  :func:`poseprior.evaluation.hold_out_files`), next to the full Gaussian fitted on the same
  files. Reported: the NLL on the hold-out and on the unseen subjects, and the hidden-joint MPJPE
  on ``--frames`` evenly spaced frames of each, paired against the Gaussian (mean and 2 standard
  errors of the per-frame difference, mm). The hold-out chooses; the unseen subjects confirm.
* ``--diagnose NAME``: with the shipped checkpoint ``NAME`` on the unseen subjects, whether a
  loss is the optimizer's or the model's: the per-frame fitting objective at the prior's own
  solution, at ``gaussian.cmu``'s solution and at the true pose, the error after restarting
  the fit from the Gaussian's solution, and both priors' errors file by file (each unseen file
  is one subject's trial).

Usage::

    python benchmarks/regularizer_variants.py [--variants noise=0.08 full] [--threads 1]
    python benchmarks/regularizer_variants.py --diagnose global_flow.cmu --scenario "left leg"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from completion import SCENARIOS, frame_indices, frames_of, run

import poseprior
from poseprior import metrics
from poseprior.data import load_bundled
from poseprior.evaluation import fit_prior, hold_out_files
from poseprior.fitting import DEFAULT_WEIGHT, fit_to_joints
from poseprior.kinematics import SKELETON_JOINTS, forward_kinematics

_DEFAULT = {"hidden_features": 128, "conditioner_bound": 2.0, "max_log_scale": 0.9, "part_swap": 0.0}
"""global_flow's architecture today, without the limb swaps (``part_swap``) it trains with by
default since: stated in full so that the rows keep their meaning."""
_WIDE = {"hidden_features": 205, "conditioner_bound": 3.0, "max_log_scale": 1.0, "part_swap": 0.0}
"""global_flow's architecture before the 128-wide defaults: every row of ``docs/completion.md``'s
table of variants was measured with it, so the variants below pin it."""
VARIANTS: dict[str, dict[str, Any]] = {
    "default (128 wide, conditioner_bound=2, max_log_scale=0.9)": dict(_DEFAULT),
    **{f"default, seed={s}": {**_DEFAULT, "seed": s} for s in (1, 2)},
    **{f"default, noise={n}": {**_DEFAULT, "noise_std": n} for n in (0.14, 0.2)},
    # limb swaps (part_swap=1: today's defaults)
    **{f"default, part_swap={q:g}": {**_DEFAULT, "part_swap": q} for q in (0.5, 1.0)},
    **{f"default, part_swap=1, seed={s}": {**_DEFAULT, "part_swap": 1.0, "seed": s} for s in (1, 2)},
    **{
        name: {**_WIDE, **kwargs}
        for name, kwargs in {
            "noise=0.08 (205 wide, the earlier default)": {},
            "noise=0.14": {"noise_std": 0.14},
            "noise=0.2": {"noise_std": 0.2},
            "noise=0.14,broad_weight=0.2": {"noise_std": 0.14, "broad_weight": 0.2},
            "full": {"standardize": "full"},
            "full,noise=0.14": {"standardize": "full", "noise_std": 0.14},
            "full,seed=1": {"standardize": "full", "seed": 1},
            # smaller flows
            "hidden=64": {"hidden_features": 64},
            "hidden=32,blocks=2": {"hidden_features": 32, "blocks": 2},
            "full,hidden=128": {"standardize": "full", "hidden_features": 128},
            "full,hidden=64": {"standardize": "full", "hidden_features": 64},
            "full,hidden=64,seed=1": {"standardize": "full", "hidden_features": 64, "seed": 1},
            "full,hidden=64,seed=2": {"standardize": "full", "hidden_features": 64, "seed": 2},
            "full,hidden=64,noise=0.14": {"standardize": "full", "hidden_features": 64, "noise_std": 0.14},
            "full,hidden=64,residual_blocks=0": {
                "standardize": "full",
                "hidden_features": 64,
                "residual_blocks": 0,
            },
            "full,hidden=32,blocks=2": {"standardize": "full", "hidden_features": 32, "blocks": 2},
        }.items()
    },
}
NOISE = 0.01  # metres, per axis
STEPS = 200


def variants(names: list[str] | None, frames: int, seed: int) -> list[dict[str, Any]]:
    """Fits every variant and the Gaussian on the training files minus the hold-out; scores them."""
    fit_part, held = hold_out_files(load_bundled("train"))
    unseen = load_bundled("unseen")
    gen = torch.Generator().manual_seed(seed)
    gauss, _ = fit_prior("gaussian", fit_part, generator=gen)
    out = []
    for name, kwargs in VARIANTS.items():
        if names and name not in names:
            continue
        prior, seconds = fit_prior(
            "global_flow", fit_part, generator=torch.Generator().manual_seed(seed), prior_kwargs=kwargs
        )
        row: dict[str, Any] = {"variant": name, "kwargs": kwargs, "fit_s": seconds}
        for split, data in (("held", held), ("unseen", unseen)):
            row[f"{split}_nll"] = metrics.nll(prior, data.poses_for("body"))
            pose, root, trans = frames_of(data, frames)
            rows = run(
                {"gaussian": gauss, name: prior}, pose, root, trans,
                weight=DEFAULT_WEIGHT, noise=NOISE, steps=STEPS, seed=seed,
            )  # fmt: skip
            mine = [r for r in rows if r["method"] == name]
            row[split] = {r["scenario"]: (r["hidden"], *r["vs_gaussian"]) for r in mine}
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def variants_table(rows: list[dict[str, Any]]) -> str:
    scen = list(SCENARIOS)
    head = ["variant", "hold-out NLL", "unseen NLL"]
    head += [f"hold-out: {s}" for s in scen] + [f"unseen: {s}" for s in scen]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], f"{r['held_nll']:.2f}", f"{r['unseen_nll']:.2f}"]
        for split in ("held", "unseen"):
            cells += [f"{r[split][s][1]:+.1f} ± {r[split][s][2]:.1f}" for s in scen]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diagnose(name: str, scenario: str, frames: int, seed: int) -> str:
    """Objective of ``name`` at its own solution, the Gaussian's and the truth, on unseen frames."""
    prior, gauss = poseprior.load_pretrained(name), poseprior.load_pretrained("gaussian.cmu")
    unseen = load_bundled("unseen")
    pose, root, trans = frames_of(unseen, frames)
    truth = forward_kinematics(pose, root, trans)
    hidden = torch.tensor([j in SCENARIOS[scenario] for j in SKELETON_JOINTS])
    gen = torch.Generator().manual_seed(seed)
    observed = truth + NOISE * torch.randn(truth.shape, generator=gen, dtype=truth.dtype)
    fit = dict(visible=~hidden, weight=DEFAULT_WEIGHT, steps=STEPS)
    own, ref = fit_to_joints(observed, prior, **fit), fit_to_joints(observed, gauss, **fit)
    restart = fit_to_joints(observed, prior, init=ref, **fit)

    def objective(body: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            joints = forward_kinematics(body, r, t)
            data = (joints - observed).pow(2).sum(-1)[:, ~hidden].mean(-1)
            return data + DEFAULT_WEIGHT * prior.penalty(body, per_dim=True)

    def frame_errors(res: Any) -> torch.Tensor:
        return 1000 * torch.linalg.vector_norm(res.joints - truth, dim=-1)[:, hidden].mean(-1)

    mine, theirs, restarted = frame_errors(own), frame_errors(ref), frame_errors(restart)
    at = {
        "its own solution": objective(own.body_pose, own.root_orient, own.trans),
        "gaussian.cmu's solution": objective(ref.body_pose, ref.root_orient, ref.trans),
        "the true pose": objective(pose, root, trans),
        "its fit restarted from gaussian.cmu's": objective(
            restart.body_pose, restart.root_orient, restart.trans
        ),
    }
    base = at["its own solution"]
    lines = [
        f"{name}, hidden {scenario}, {len(pose)} unseen frames: hidden-joint MPJPE "
        f"{float(mine.mean()):.1f} mm (gaussian.cmu {float(theirs.mean()):.1f} mm; "
        f"restarted from gaussian.cmu's solution {float(restarted.mean()):.1f} mm)",
        "",
        "| objective of the prior at | mean | frames where it is above its own solution's (%) |",
        "|---|---|---|",
    ]
    for label, value in at.items():
        above = 100 * float((value > base).double().mean())
        lines.append(f"| {label} | {float(value.mean()):.3e} | {above:.1f} |")
    # Where the difference comes from: the unseen files (one subject's trials each).
    files = unseen.file_index[frame_indices(unseen, frames)]
    head = "| file | frames | hidden MPJPE: gaussian.cmu / this prior (mm) | difference (mm) |"
    lines += ["", head, "|---|---|---|---|"]
    for f in files.unique().tolist():
        m = files == f
        a, b = float(theirs[m].mean()), float(mine[m].mean())
        lines.append(f"| {Path(unseen.files[f]).name} | {int(m.sum())} | {a:.1f} / {b:.1f} | {b - a:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="*", default=None, help=f"a subset of {sorted(VARIANTS)}")
    p.add_argument("--frames", type=int, default=192, help="evenly spaced frames per split")
    p.add_argument("--diagnose", default=None, help="a shipped checkpoint, e.g. global_flow.cmu")
    p.add_argument("--scenario", default="left leg", choices=sorted(SCENARIOS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--out", default=None, help="markdown output (default results/regularizer_*.md)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.diagnose:
        text = diagnose(args.diagnose, args.scenario, args.frames, args.seed)
        out = Path(args.out or "results/regularizer_diagnose.md")
    else:
        rows = variants(args.variants, args.frames, args.seed)
        text = (
            f"global_flow settings as regularizers: Δ hidden-joint MPJPE against the Gaussian fitted on "
            f"the same files (mm, ±2 s.e.), {args.frames} frames per split, seed {args.seed}\n\n"
            + variants_table(rows)
        )
        out = Path(args.out or "results/regularizer_variants.md")
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
