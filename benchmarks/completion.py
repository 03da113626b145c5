r"""Pose completion: fit occluded, noisy 3D joints with every prior and with no prior.

For evenly spaced poses of the CMU validation files, the observed joints are the forward kinematics
(built-in skeleton, :mod:`poseprior.kinematics`) of the real pose with its root orientation and
translation, so the true rotations are known. A body part is hidden (left leg, right arm, both
legs), Gaussian noise is added to the visible joints (one torch.Generator; the same noise for every
method) and :func:`poseprior.fitting.fit_to_joints` fits the pose with each prior and without one.

Reported per scenario and method: MPJPE (mm) on the hidden joints and on all 22 joints, PA-MPJPE
(mm, after a per-frame Procrustes alignment of all 22 joints: the articulated pose alone), PCK at
50 mm on the hidden joints (%), the mean geodesic error (degrees) of the 21 body-joint rotations,
and the paired per-frame change of the hidden-joint MPJPE against "no prior" (mean ± 2 standard
errors; negative is better).

Priors: gaussian (diagonal), gaussian (full) and every other registered prior over the ``body``
layout, each fitted on the CMU train split with its defaults (:func:`poseprior.evaluation.fit_prior`).

``--sweep`` chooses the prior weight instead: priors fitted on the train files minus a file-level
hold-out (every 8th train file), completion measured on that hold-out, for several weights. The
validation files are not used for the choice.

Usage::

    python benchmarks/completion.py [--quick] [--frames 512] [--noise-mm 10] [--threads 1]
    python benchmarks/completion.py --sweep
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import poseprior
from poseprior.amass import PoseData
from poseprior.data import load_bundled
from poseprior.evaluation import bench_specs, fit_prior, hold_out_files, label
from poseprior.fitting import DEFAULT_WEIGHT, fit_to_joints, pa_mpjpe, pck
from poseprior.formats.rotations import axis_angle_to_matrix, geodesic_angle
from poseprior.kinematics import SKELETON_JOINTS, forward_kinematics

SCENARIOS: dict[str, tuple[str, ...]] = {
    "left leg": ("left_hip", "left_knee", "left_ankle", "left_foot"),
    "right arm": ("right_shoulder", "right_elbow", "right_wrist"),
    "both legs": (
        "left_hip", "left_knee", "left_ankle", "left_foot",
        "right_hip", "right_knee", "right_ankle", "right_foot",
    ),  # fmt: skip
}
SWEEP_WEIGHTS = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
PCK_THRESHOLD = 0.05  # metres


def prior_specs(names: list[str] | None) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The priors to compare and the registered priors skipped (with why)."""
    specs: list[tuple[str, dict[str, Any]]] = bench_specs(["gaussian"])
    skipped = []
    for name in poseprior.list_priors():
        if name == "gaussian":
            continue
        layout = poseprior.create(name).layout.name  # the layout of its defaults
        if layout != "body":
            skipped.append(f"{name} (models layout {layout!r}, not the body)")
        else:
            specs.append((name, {}))
    if names is not None:
        specs = [s for s in specs if s[0] in names or label(*s) in names]
    return specs, skipped


def frame_indices(data: PoseData, n: int) -> Tensor:
    """The indices of ``n`` evenly spaced frames of ``data`` (all of them if it has fewer)."""
    return torch.linspace(0, len(data) - 1, min(n, len(data))).round().long()


def frames_of(data: PoseData, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` evenly spaced frames: body pose (n, 21, 3), root orientation (n, 3), translation (n, 3)."""
    idx = frame_indices(data, n)
    return data.poses_for("body")[idx], data.root_orient[idx], data.trans[idx]


def run(
    methods: dict[str, poseprior.PosePrior | None],
    pose: Tensor,
    root: Tensor,
    trans: Tensor,
    *,
    weight: float,
    noise: float,
    steps: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Fits every scenario with every method; returns one row of metrics per (scenario, method)."""
    truth = forward_kinematics(pose, root, trans)
    rot_true = axis_angle_to_matrix(pose)
    rows = []
    for scenario, joints in SCENARIOS.items():
        hidden = torch.tensor([j in joints for j in SKELETON_JOINTS])
        gen = torch.Generator().manual_seed(seed)  # the same noise for every method of a scenario
        observed = truth + noise * torch.randn(truth.shape, generator=gen, dtype=truth.dtype)
        base = None
        for name, prior in methods.items():
            start = time.perf_counter()
            res = fit_to_joints(observed, prior, visible=~hidden, weight=weight, steps=steps)
            seconds = time.perf_counter() - start
            dist = torch.linalg.vector_norm(res.joints - truth, dim=-1)  # (N, 22)
            per_frame = dist[:, hidden].mean(-1)
            rot = geodesic_angle(axis_angle_to_matrix(res.body_pose), rot_true).mean()  # joints and frames
            row = {
                "scenario": scenario,
                "method": name,
                "hidden": 1000 * float(per_frame.mean()),
                "all": 1000 * float(dist.mean()),
                "pa": 1000 * pa_mpjpe(res.joints, truth),
                "pck": 100 * pck(res.joints, truth, PCK_THRESHOLD, hidden),
                "rot": math.degrees(float(rot)),
                "seconds": seconds,
            }
            if base is None:
                base = per_frame
            else:
                row["delta"] = _paired(per_frame, base)
            row["per_frame"] = per_frame
            rows.append(row)
            print(f"  {scenario:10s} {name:34s} hidden {row['hidden']:6.1f} mm  all {row['all']:5.1f} mm  "
                  f"PA {row['pa']:5.1f} mm  PCK {row['pck']:5.1f} %  rot {row['rot']:5.2f} deg  "
                  f"({seconds:.1f} s)", flush=True)  # fmt: skip
    gaussian = {q["scenario"]: q["per_frame"] for q in rows if q["method"] == "gaussian"}
    for r in rows:  # paired against the full Gaussian of the same scenario
        ref = gaussian.get(r["scenario"])
        if ref is not None and r["method"] != "gaussian":
            r["vs_gaussian"] = _paired(r["per_frame"], ref)
    return rows


def _paired(a: Tensor, b: Tensor) -> tuple[float, float]:
    """Mean and 2 standard errors (mm) of the per-frame difference ``a - b`` (metres in)."""
    diff = 1000 * (a - b)
    return float(diff.mean()), 2 * float(diff.std()) / math.sqrt(len(diff))


def summary(rows: list[dict[str, Any]]) -> str:
    """Mean hidden-joint MPJPE / rotation error over scenarios, as a table cell."""
    hidden = sum(r["hidden"] for r in rows) / len(rows)
    return f"{hidden:.1f} / {sum(r['rot'] for r in rows) / len(rows):.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = [
        "scenario", "prior", "hidden MPJPE (mm)", "all MPJPE (mm)", "all PA-MPJPE (mm)",
        f"hidden PCK@{1000 * PCK_THRESHOLD:g}mm (%)", "rot. error (deg)",
        "Δ hidden vs no prior (mm, ±2 s.e.)", "Δ hidden vs gaussian (mm, ±2 s.e.)", "fit s",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        delta = "–" if "delta" not in r else f"{r['delta'][0]:+.1f} ± {r['delta'][1]:.1f}"
        versus = "–" if "vs_gaussian" not in r else f"{r['vs_gaussian'][0]:+.1f} ± {r['vs_gaussian'][1]:.1f}"
        cells = [r["scenario"], r["method"], f"{r['hidden']:.1f}", f"{r['all']:.1f}", f"{r['pa']:.1f}",
                 f"{r['pck']:.1f}", f"{r['rot']:.2f}"]  # fmt: skip
        lines.append("| " + " | ".join([*cells, delta, versus, f"{r['seconds']:.1f}"]) + " |")
    return "\n".join(lines)


def fit_priors(
    specs: list[tuple[str, dict[str, Any]]],
    train: PoseData,
    quick: bool,
    seed: int,
    *,
    pretrained: bool = False,
) -> dict[str, poseprior.PosePrior | None]:
    """No prior, then every spec fitted on ``train`` (or its shipped ``<name>.cmu`` with ``pretrained``)."""
    methods: dict[str, poseprior.PosePrior | None] = {"no prior": None}
    shipped = set(poseprior.list_pretrained("*.cmu"))
    for name, kwargs in specs:
        if pretrained and not kwargs and f"{name}.cmu" in shipped:
            methods[name] = poseprior.load_pretrained(f"{name}.cmu")
            print(f"loaded {name}.cmu (D={methods[name].dim})", flush=True)
            continue
        prior, seconds = fit_prior(
            name, train, quick=quick, generator=torch.Generator().manual_seed(seed), prior_kwargs=kwargs
        )
        methods[label(name, kwargs)] = prior
        print(f"fitted {label(name, kwargs)} in {seconds:.1f} s (D={prior.dim})", flush=True)
    return methods


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short prior training, 48 frames, 60 fitting steps")
    p.add_argument("--frames", type=int, default=None, help="validation frames, evenly spaced (default 512)")
    p.add_argument("--noise-mm", type=float, default=10.0, help="noise std on visible joints, per axis")
    p.add_argument("--weight", type=float, default=DEFAULT_WEIGHT, help="prior weight (per modelled value)")
    p.add_argument("--steps", type=int, default=None, help="L-BFGS iterations (default 200)")
    p.add_argument("--priors", default=None, help="comma-separated prior labels to keep (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--sweep", action="store_true", help="choose the weight on a hold-out of the train files")
    p.add_argument("--out", default=None, help="markdown output (default results/completion[_sweep].md)")
    p.add_argument("--split", choices=("val", "unseen"), default="val",
                   help="the frames: the val split or the unseen-subject split (poseprior.data.load_bundled)")
    p.add_argument("--pretrained", action="store_true",
                   help="use the shipped <prior>.cmu checkpoints where there is one, instead of fitting")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = args.frames or (48 if args.quick else 512)
    steps = args.steps or (60 if args.quick else 200)
    specs, skipped = prior_specs(args.priors.split(",") if args.priors else None)
    train = load_bundled("train")
    noise = args.noise_mm / 1000

    if args.sweep:
        fit_part, held = hold_out_files(train)
        methods = fit_priors(specs, fit_part, args.quick, args.seed)
        pose, root, trans = frames_of(held, frames)
        settings = dict(noise=noise, steps=steps, seed=args.seed)
        base = run({"no prior": None}, pose, root, trans, weight=0.0, **settings)
        cells: dict[str, list[str]] = {}
        for w in SWEEP_WEIGHTS:
            priors = {k: v for k, v in methods.items() if v is not None}
            rows = run(priors, pose, root, trans, weight=w, **settings)
            cells[f"{w:g}"] = [summary([r for r in rows if r["method"] == m]) for m in priors]
        head = ["weight", *[f"{m}: hidden / rot" for m in methods if m != "no prior"]]
        lines = [
            f"# Prior weight sweep: hold-out of the train files, {len(pose)} frames, "
            f"noise {args.noise_mm:g} mm",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
            f"| no prior | {summary(base)} |" + " |" * (len(head) - 2),
            *(f"| {w} | " + " | ".join(c) + " |" for w, c in cells.items()),
            "",
            "Cells: hidden-joint MPJPE (mm) / rotation error (deg), means over the scenarios "
            f"{', '.join(SCENARIOS)}; {steps} L-BFGS iterations.",
        ]
        out = Path(args.out or "results/completion_sweep.md")
    else:
        methods = fit_priors(specs, train, args.quick, args.seed, pretrained=args.pretrained)
        pose, root, trans = frames_of(load_bundled(args.split), frames)
        rows = run(methods, pose, root, trans, weight=args.weight, noise=noise, steps=steps, seed=args.seed)
        source = (
            "the shipped checkpoints (<prior>.cmu), the diagonal Gaussian fitted on the bundled training data"
            if args.pretrained
            else "priors fitted on the bundled training data with their defaults"
            + (" (quick: short training)" if args.quick else "")
        )
        lines = [
            f"# Pose completion on the {args.split} split",
            "",
            f"{len(pose)} evenly spaced {args.split} frames; observed joints = FK of the true pose on the "
            f"built-in skeleton + N(0, {args.noise_mm:g} mm) per axis on the visible joints; fit_to_joints "
            f"with L-BFGS, {steps} iterations, prior weight {args.weight:g} (per value in the density); "
            f"{source}; seed {args.seed}; torch {torch.__version__}.",
            "",
            table(rows),
        ]
        if skipped:
            lines += ["", "Not applicable: " + "; ".join(skipped) + "."]
        out = Path(args.out or "results/completion.md")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
