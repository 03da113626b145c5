r"""Anatomical ranges of the body joints per axis-angle component, the floors derived from them,
and uniform draws in the ranges.

**Ranges** (:data:`BODY_RANGES_DEG`). Clinical range-of-motion norms (flexion/extension,
abduction/adduction and axial rotation of each joint, as tabulated for goniometry, e.g. the AAOS
norms) mapped onto the SMPL/SMPL-H/SMPL-X local joint axes (x: mostly flexion of the legs and
spine; y: the elbow's hinge and axial turns of the legs and trunk; z: sideways bending and
abduction; the rest pose is the T-pose with the arms along x), with generous margins. They bound
*single components* of the axis-angle vector, not coupled motion: a draw with every component
uniform in its interval is a deliberately odd but physically reachable pose, which is what an
out-of-distribution check needs (:func:`uniform_poses`). Over 99% of every value of the bundled
CMU data lies inside its interval (tested). The minor degrees of freedom (:data:`MINOR_DOFS`),
which capture pipelines often freeze but people move, have these sources:

- knee y/z (tibial axial rotation, varus/valgus): +-10 deg; clinically the tibia turns 10-20 deg
  about its axis in a flexed knee and a few degrees sideways; real SMPL-family fits move these
  values with standard deviations of 0.04-0.13 rad (measured on motion from other studios,
  issue 19 of this project).
- elbow x: +-30 deg. With the arm along x in the rest pose, x is the forearm's axial twist
  (pronation/supination, about 80 deg each way clinically), which SMPL-family fits split between
  elbow and wrist; real fits reach 0.97 rad at the elbow (standard deviations 0.05-0.31 rad).
- elbow z: +-15 deg (carrying angle and its change with flexion, 10-15 deg clinically).
- collars (sternoclavicular joint): +-20 deg on every axis (elevation/depression, protraction/
  retraction and axial rotation of the clavicle, each 15-40 deg clinically); real fits move them
  with standard deviations of 0.06-0.27 rad.
- foot (toes) y/z: +-10 / +-15 deg (the toes' sideways motion is small).

**Floors and spreads.** A value whose standard deviation in the training data is below its
*floor* (:func:`value_floors`) is not learned from the data but gets an independent Gaussian
whose standard deviation is its *spread* (:func:`value_spreads`), at least the floor and the
training standard deviation (see :class:`~poseprior.PosePrior`). For the minor degrees of freedom
the floor and the spread are both a quarter of the range's width (the range spans +-2 standard
deviations, about 95% of a Gaussian): knee y/z 5 deg, elbow x 15 deg, elbow z 7.5 deg, collars
10 deg, toes y/z 5 / 7.5 deg. Every other value has the floor :data:`DEFAULT_FLOOR_DEG` (3 deg,
the order of the joint-angle error of motion capture: a value moving less than that was not
captured) and, if the training data froze it (a rig without a second spine joint, a hand that
does not follow the forearm), the spread a quarter of its range's width too: the spread anatomy
allows, not the capture's. Joints without a tabulated range (fingers, jaw, eyes, the root) use
:data:`DEFAULT_FLOOR_DEG` for both.

The ranges are not joint limits for an optimizer: use them to test priors, not to clamp poses.
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
    "left_collar": ((-20.0, 20.0), (-20.0, 20.0), (-20.0, 20.0)),
    "right_collar": ((-20.0, 20.0), (-20.0, 20.0), (-20.0, 20.0)),
    "head": ((-30.0, 45.0), (-30.0, 30.0), (-30.0, 30.0)),
    "left_shoulder": ((-100.0, 90.0), (-140.0, 90.0), (-110.0, 40.0)),
    "right_shoulder": ((-100.0, 90.0), (-90.0, 140.0), (-40.0, 110.0)),
    "left_elbow": ((-30.0, 30.0), (-150.0, 0.0), (-15.0, 15.0)),
    "right_elbow": ((-30.0, 30.0), (0.0, 150.0), (-15.0, 15.0)),
    "left_wrist": ((-120.0, 90.0), (-90.0, 80.0), (-80.0, 90.0)),
    "right_wrist": ((-120.0, 120.0), (-110.0, 110.0), (-135.0, 135.0)),
}


MINOR_DOFS: tuple[tuple[str, int], ...] = (
    *((f"{side}_knee", axis) for side in ("left", "right") for axis in (1, 2)),
    *((f"{side}_elbow", axis) for side in ("left", "right") for axis in (0, 2)),
    *((f"{side}_collar", axis) for side in ("left", "right") for axis in (0, 1, 2)),
    *((f"{side}_foot", axis) for side in ("left", "right") for axis in (1, 2)),
)
"""``(joint, axis)`` of the minor degrees of freedom: their floor is a quarter of their range's width."""

DEFAULT_FLOOR_DEG = 3.0
"""The floor (degrees) of every value that is not a minor degree of freedom."""


def value_floors(layout: str | JointLayout = "body") -> Tensor:
    r"""The floor of every value of ``layout`` in radians, with shape :math:`(J, 3)` (see the module docs).

    Defined for every layout: joints without a tabulated range get :data:`DEFAULT_FLOOR_DEG`.
    """
    layout = get_layout(layout)
    floors = torch.full((len(layout), 3), DEFAULT_FLOOR_DEG, dtype=torch.float64)
    for joint, axis in MINOR_DOFS:
        if joint in layout.joints:
            lo, hi = BODY_RANGES_DEG[joint][axis]
            floors[layout.joints.index(joint), axis] = (hi - lo) / 4.0
    return floors * (math.pi / 180.0)


def value_spreads(layout: str | JointLayout = "body") -> Tensor:
    r"""The anatomical spread of every value of ``layout`` in radians, with shape :math:`(J, 3)`.

    A quarter of the value's range width for the body joints, :data:`DEFAULT_FLOOR_DEG` for joints
    without a tabulated range (see the module docs).
    """
    layout = get_layout(layout)
    spreads = torch.full((len(layout), 3), DEFAULT_FLOOR_DEG, dtype=torch.float64)
    for j, joint in enumerate(layout.joints):
        if joint in BODY_RANGES_DEG:
            spreads[j] = torch.tensor(
                [(hi - lo) / 4.0 for lo, hi in BODY_RANGES_DEG[joint]], dtype=torch.float64
            )
    return spreads * (math.pi / 180.0)


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


def plausible(x: Tensor, layout: str | JointLayout = "body", margin_deg: float = 30.0) -> Tensor:
    r"""Which poses keep every value within its anatomical range widened by ``margin_deg`` on each side.

    A screen for defective frames of training data (a head turned 170 degrees by a failed
    retargeting, a wrist twisted a half turn), not a joint limit: real motion passes it (every
    frame of the bundled CMU data's validation splits does at the default margin).

    Arguments:
        x: Axis-angle poses of ``layout`` with shape :math:`(*, J, 3)`.
        layout: Their layout; its joints need a tabulated range (see :func:`joint_ranges`).
        margin_deg: How far outside its range a value may be, in degrees.

    Returns:
        A boolean tensor with shape :math:`(*)`.
    """
    lo, hi = joint_ranges(layout)
    margin = math.radians(margin_deg)
    lo, hi = (lo - margin).to(x), (hi + margin).to(x)
    return ((x >= lo) & (x <= hi)).flatten(-2).all(-1)


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


__all__ = [
    "BODY_RANGES_DEG",
    "DEFAULT_FLOOR_DEG",
    "MINOR_DOFS",
    "joint_ranges",
    "plausible",
    "uniform_poses",
    "value_floors",
    "value_spreads",
]
