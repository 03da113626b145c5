"""Compare every registered body prior on the bundled CMU data: density and use as a regularizer.

For each prior over the ``body`` layout (plus a diagonal Gaussian), fitted on the train split:
the validation NLL (nats per pose) and bits per dimension, and a pose-completion test: fit the
joints of validation poses with a hidden left leg and 10 mm noise, and report the hidden-joint
MPJPE and the joint-rotation error, next to the same fit without a prior.

``--quick`` (CI) fits every prior on every 8th train frame, for one epoch where it trains by
gradient descent: the numbers then only show that everything runs. Without it the priors are
fitted with their defaults (see ``benchmarks/completion.py`` for the full benchmark).

    python examples/compare_priors.py [--frames 64] [--quick]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import poseprior
from poseprior.amass import load_split
from poseprior.data import sample_path
from poseprior.evaluation import fit_prior, label
from poseprior.fitting import fit_to_joints, mpjpe
from poseprior.formats.rotations import axis_angle_to_matrix, geodesic_angle
from poseprior.kinematics import SKELETON_JOINTS, forward_kinematics
from poseprior.metrics import bits_per_dim, nll

HIDDEN = ("left_hip", "left_knee", "left_ankle", "left_foot")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=64, help="validation frames for the completion test")
    p.add_argument("--quick", action="store_true", help="short settings (CI)")
    args = p.parse_args()
    frames, steps = (16, 40) if args.quick else (args.frames, 200)

    folder = sample_path()
    train, val = load_split(folder, "train"), load_split(folder, "val")
    specs = [("gaussian", {"covariance": "diagonal"})]
    for name in poseprior.list_priors():
        layout = poseprior.create(name).layout.name  # the layout of its defaults
        if layout == "body":
            specs.append((name, {}))
        else:
            print(f"skipping {name}: it models layout {layout!r}, not the body")

    idx = torch.linspace(0, len(val) - 1, frames).round().long()
    pose = val.poses_for("body")[idx]
    truth = forward_kinematics(pose, val.root_orient[idx], val.trans[idx])
    hidden = torch.tensor([j in HIDDEN for j in SKELETON_JOINTS])
    observed = truth + 0.01 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))

    def completion(prior: poseprior.PosePrior | None) -> tuple[float, float]:
        res = fit_to_joints(observed, prior, visible=~hidden, steps=steps)
        rot = geodesic_angle(axis_angle_to_matrix(res.body_pose), axis_angle_to_matrix(pose)).mean()
        return 1000 * mpjpe(res.joints, truth, hidden), math.degrees(float(rot))

    rows = [("no prior", "–", "–", "–", *completion(None))]
    for name, kwargs in specs:
        gen = torch.Generator().manual_seed(0)
        if args.quick:
            start = time.perf_counter()
            prior = poseprior.create(name, **kwargs)
            options = {"epochs": 1, "generator": gen} if prior.iterative_fit else {}
            prior.fit(train.poses_for("body")[::8], **options).eval()
            seconds = time.perf_counter() - start
        else:
            prior, seconds = fit_prior(name, train, generator=gen, prior_kwargs=kwargs)
        xv = val.poses_for("body")
        density = (f"{seconds:.1f}", f"{nll(prior, xv):.2f}", f"{bits_per_dim(prior, xv):.3f}")
        rows.append((label(name, kwargs), *density, *completion(prior)))
        print(f"done: {rows[-1][0]}", flush=True)

    print(f"\nCompletion: {frames} val frames, left leg hidden, 10 mm noise, {steps} L-BFGS steps"
          f"{' (quick: priors barely trained)' if args.quick else ''}\n")  # fmt: skip
    print("| prior | fit s | val NLL | val BPD | hidden MPJPE (mm) | rot. error (deg) |")
    print("|---|---|---|---|---|---|")
    for name, secs, v, b, err, rot in rows:
        print(f"| {name} | {secs} | {v} | {b} | {err:.1f} | {rot:.2f} |")


if __name__ == "__main__":
    main()
