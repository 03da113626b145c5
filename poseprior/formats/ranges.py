r"""Approximate anatomical ranges of the body joints, per axis-angle component, and uniform draws in them.

The ranges are clinical range-of-motion norms (flexion/extension, abduction/adduction, axial
rotation of each joint, as tabulated for goniometry) mapped onto the SMPL/SMPL-H/SMPL-X local
joint axes (x: mostly flexion of the legs and spine, y: the elbow's hinge and axial turns, z:
sideways bending and abduction), with generous margins. They bound *single components* of the
axis-angle vector, not coupled motion: a draw with every component uniform in its interval is a
deliberately odd but physically reachable pose, which is what an out-of-distribution check
needs (:func:`uniform_poses`). On the bundled CMU sample, over 99% of every moving value lies
inside its interval (tested), and the joints the CMU skeleton never moves (collars, knee and
elbow off-axis rotations) get small nonzero intervals, as real bodies have.

They are not joint limits for an optimizer: use them to test priors, not to clamp poses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .layouts import JointLayout, get_layout

# joint -> ((x_lo, x_hi), (y_lo, y_hi), (z_lo, z_hi)) in degrees, SMPL-X local axes.
BODY_RANGES_DEG: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "left_hip": ((-125.0, 30.0), (-45.0, 45.0), (-30.0, 60.0)),
    "right_hip": ((-125.0, 30.0), (-45.0, 45.0), (-60.0, 30.0)),
    "spine1": ((-30.0, 90.0), (-20.0, 20.0), (-20.0, 20.0)),
    "left_knee": ((0.0, 150.0), (-10.0, 10.0), (-10.0, 10.0)),
    "right_knee": ((0.0, 150.0), (-10.0, 10.0), (-10.0, 10.0)),
    "spine2": ((-20.0, 30.0), (-25.0, 25.0), (-20.0, 20.0)),
    "left_ankle": ((-45.0, 40.0), (-45.0, 30.0), (-20.0, 20.0)),
    "right_ankle": ((-45.0, 40.0), (-30.0, 45.0), (-20.0, 20.0)),
    "spine3": ((-30.0, 30.0), (-20.0, 20.0), (-20.0, 20.0)),
    "left_foot": ((-60.0, 60.0), (-10.0, 10.0), (-15.0, 15.0)),
    "right_foot": ((-60.0, 60.0), (-10.0, 10.0), (-15.0, 15.0)),
    "neck": ((-45.0, 50.0), (-70.0, 70.0), (-40.0, 40.0)),
    "left_collar": ((-15.0, 15.0), (-20.0, 20.0), (-20.0, 20.0)),
    "right_collar": ((-15.0, 15.0), (-20.0, 20.0), (-20.0, 20.0)),
    "head": ((-30.0, 45.0), (-30.0, 30.0), (-30.0, 30.0)),
    "left_shoulder": ((-100.0, 90.0), (-140.0, 90.0), (-110.0, 40.0)),
    "right_shoulder": ((-100.0, 90.0), (-90.0, 140.0), (-40.0, 110.0)),
    "left_elbow": ((-15.0, 15.0), (-150.0, 0.0), (-15.0, 15.0)),
    "right_elbow": ((-15.0, 15.0), (0.0, 150.0), (-15.0, 15.0)),
    "left_wrist": ((-120.0, 90.0), (-90.0, 80.0), (-80.0, 90.0)),
    "right_wrist": ((-120.0, 120.0), (-110.0, 110.0), (-135.0, 135.0)),
}


def joint_ranges(layout: str | JointLayout = "body") -> tuple[Tensor, Tensor]:
    r"""The lower and upper bounds in radians, each with shape :math:`(J, 3)`, of ``layout``'s joints.

    Raises ``KeyError`` naming the joints without a tabulated range (only the 21 body joints
    have one; hands, eyes and the pelvis' global orientation do not).
    """
    layout = get_layout(layout)
    missing = [j for j in layout.joints if j not in BODY_RANGES_DEG]
    if missing:
        raise KeyError(
            f"joint_ranges: no anatomical range for {missing} (only the 21 body joints have one); "
            "select the body joints first, e.g. layout='body'"
        )
    table = torch.tensor([BODY_RANGES_DEG[j] for j in layout.joints], dtype=torch.float64)
    table = table * (math.pi / 180.0)
    return table[..., 0], table[..., 1]


def uniform_poses(
    n: int,
    layout: str | JointLayout = "body",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Poses with shape :math:`(n, J, 3)`, every axis-angle value uniform in its anatomical range."""
    lo, hi = joint_ranges(layout)
    u = torch.rand(n, *lo.shape, generator=generator, dtype=torch.float64)
    return (lo + (hi - lo) * u).to(dtype)


__all__ = ["BODY_RANGES_DEG", "joint_ranges", "uniform_poses"]
