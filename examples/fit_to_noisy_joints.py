"""Fit body poses to noisy 3D joints with a hidden leg, with and without a pose prior.

The observed joints are the forward kinematics of real CMU validation poses (bundled data) on the
built-in skeleton, so the true poses are known. The left leg is hidden and the visible joints get
Gaussian noise; a prior (default: full-covariance Gaussian fitted on the train split) fills in the
leg. With SMPL-X model files, pass ``--smplx path/to/SMPLX_NEUTRAL.npz`` to fit through smplx
(the observations are then made with the same body model).

    python examples/fit_to_noisy_joints.py [--prior gaussian] [--frames 64] [--quick]
"""

from __future__ import annotations

import argparse
import math

import torch

import poseprior
from poseprior.amass import load_split
from poseprior.data import sample_path
from poseprior.evaluation import fit_prior
from poseprior.fitting import DEFAULT_WEIGHT, SMPLXFK, SkeletonFK, fit_to_joints, mpjpe
from poseprior.formats.rotations import axis_angle_to_matrix, geodesic_angle
from poseprior.kinematics import SKELETON_JOINTS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", default="gaussian", help=f"one of {poseprior.list_priors()} (body layout)")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--noise-mm", type=float, default=10.0)
    p.add_argument("--weight", type=float, default=DEFAULT_WEIGHT)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--smplx", default=None, help="an SMPL-X .npz model file (default: built-in skeleton)")
    p.add_argument("--quick", action="store_true", help="short settings (CI)")
    args = p.parse_args()
    frames, steps = (16, 60) if args.quick else (args.frames, args.steps)

    folder = sample_path()
    train, val = load_split(folder, "train"), load_split(folder, "val")
    gen = torch.Generator().manual_seed(0)  # all randomness from generators: no global seeding
    prior, seconds = fit_prior(args.prior, train, quick=args.quick, generator=gen)
    print(f"fitted {args.prior} on {len(train)} train poses in {seconds:.1f} s (D = {prior.dim})")

    # Ground truth: evenly spaced validation frames with their real root orientation and translation.
    idx = torch.linspace(0, len(val) - 1, frames).round().long()
    pose, root, trans = val.poses_for("body")[idx], val.root_orient[idx], val.trans[idx]
    fk = SMPLXFK(args.smplx) if args.smplx else SkeletonFK()
    truth = fk(pose, root, trans)

    leg = ("left_hip", "left_knee", "left_ankle", "left_foot")
    hidden = torch.tensor([j in leg for j in SKELETON_JOINTS])
    observed = truth + args.noise_mm / 1000 * torch.randn(truth.shape, generator=gen)
    observed[:, hidden] = float("nan")  # hidden joints may be NaN; they are masked out

    names = ", ".join(j for j, h in zip(SKELETON_JOINTS, hidden, strict=True) if h)
    print(f"{frames} frames, hidden: {names}, "
          f"noise {args.noise_mm:g} mm, {steps} L-BFGS steps, weight {args.weight:g}")  # fmt: skip
    print(f"{'':10s} {'hidden MPJPE':>13s} {'all MPJPE':>10s} {'rot. error':>11s}")
    for name, pr in (("no prior", None), (args.prior, prior)):
        res = fit_to_joints(observed, pr, visible=~hidden, weight=args.weight, steps=steps, fk=fk)
        rot = geodesic_angle(axis_angle_to_matrix(res.body_pose), axis_angle_to_matrix(pose)).mean()
        err_hidden, err_all = 1000 * mpjpe(res.joints, truth, hidden), 1000 * mpjpe(res.joints, truth)
        print(f"{name:10s} {err_hidden:10.1f} mm {err_all:7.1f} mm {math.degrees(float(rot)):7.2f} deg")

    # The penalty can also be used directly in your own objective:
    with torch.no_grad():
        penalty = prior.penalty(res.body_pose, per_dim=True)
    print(f"prior penalty of the fitted poses: {float(penalty.mean()):.3f} nats per modelled value")


if __name__ == "__main__":
    main()
