"""Draw body poses from a prior fitted on the bundled CMU data, and check that they look like poses.

Fits a prior (default: full-covariance Gaussian) on the CMU train split, draws poses with a
torch.Generator, scores them and the validation poses under the prior, and compares a few
plausibility statistics of the samples and of real validation poses on the built-in skeleton:
knee flexion, hyper-extended knees, and how far the wrists and ankles are from the pelvis.

    python examples/sample_poses.py [--prior gaussian] [--n 1000] [--out samples.npz] [--quick]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from torch import Tensor

import poseprior
from poseprior.amass import load_split
from poseprior.data import sample_path
from poseprior.evaluation import fit_prior
from poseprior.formats.layouts import BODY_JOINT_NAMES
from poseprior.kinematics import SKELETON_JOINTS, forward_kinematics
from poseprior.metrics import nll


def stats(pose: Tensor) -> dict[str, float]:
    """Plausibility statistics of body poses (N, 21, 3) on the built-in skeleton (T-pose rest)."""
    knees = pose[:, [BODY_JOINT_NAMES.index("left_knee"), BODY_JOINT_NAMES.index("right_knee")], 0]
    joints = forward_kinematics(pose)
    reach = {j: float(torch.linalg.vector_norm(joints[:, SKELETON_JOINTS.index(j)], dim=-1).mean())
             for j in ("left_wrist", "right_wrist", "left_ankle", "right_ankle")}  # fmt: skip
    return {
        "knee flexion (deg)": math.degrees(float(knees.mean())),
        "hyper-extended knees (< -10 deg, %)": 100 * float((knees < -math.radians(10)).float().mean()),
        "|wrist - pelvis| (m)": (reach["left_wrist"] + reach["right_wrist"]) / 2,
        "|ankle - pelvis| (m)": (reach["left_ankle"] + reach["right_ankle"]) / 2,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", default="gaussian", help=f"one of {poseprior.list_priors()} (body layout)")
    p.add_argument("--n", type=int, default=1000, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the samples (body_pose, joints) to this .npz")
    p.add_argument("--quick", action="store_true", help="short settings (CI)")
    args = p.parse_args()
    n = 200 if args.quick else args.n

    folder = sample_path()
    train, val = load_split(folder, "train"), load_split(folder, "val")
    gen = torch.Generator().manual_seed(args.seed)  # all randomness from generators: no global seeding
    prior, seconds = fit_prior(args.prior, train, quick=args.quick, generator=gen)
    print(f"fitted {args.prior} on {len(train)} train poses in {seconds:.1f} s (D = {prior.dim})")

    samples = prior.sample(n, generator=torch.Generator().manual_seed(args.seed))  # (n, 21, 3), no grad
    real = val.poses_for("body")
    print(f"NLL (nats per pose): samples {nll(prior, samples):.2f}, val poses {nll(prior, real):.2f}")

    s, r = stats(samples), stats(real)
    print(f"{'':38s} {'samples':>9s} {'val poses':>10s}")
    for key in s:
        print(f"{key:38s} {s[key]:9.2f} {r[key]:10.2f}")

    if args.out:
        np.savez(args.out, body_pose=samples.numpy(), joints=forward_kinematics(samples).numpy(),
                 joint_names=np.array(SKELETON_JOINTS))  # fmt: skip
        print(f"wrote {n} samples to {args.out}")


if __name__ == "__main__":
    main()
