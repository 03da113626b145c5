r"""Forward kinematics of the 22 SMPL body joints on a built-in rest skeleton (no model files).

The rest skeleton is an idealised T-pose built from published anthropometric proportions
(segment lengths as fractions of body height :math:`H`, Winter, *Biomechanics and Motor Control
of Human Movement*, 4th ed., Fig. 4.1) for :math:`H = 1.70` m. Nothing is taken from the licensed
SMPL model files. Conventions match SMPL's rest frame: :math:`+y` up, :math:`+z` forward (the
subject faces :math:`+z`), :math:`+x` the subject's left; legs hang along :math:`-y` and arms point
along :math:`\pm x`, as in the retargeting of the bundled CMU data. For exact SMPL-X joint positions
use ``smplx`` with your own model files (see :mod:`poseprior.fitting`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .formats.layouts import LAYOUTS
from .formats.rotations import axis_angle_to_matrix

SKELETON_JOINTS: tuple[str, ...] = LAYOUTS["smpl"].joints[:22]
"""The 22 joints of the skeleton: the pelvis and the 21 body joints, in SMPL order."""
SKELETON_PARENTS: tuple[int, ...] = LAYOUTS["smpl"].parents[:22]

_H = 1.70
_HIP_X, _SHOULDER_X = 0.08, 0.18
_PELVIS_Y = 0.530 * _H + 0.02  # slightly above the greater trochanter
_REST = {
    "pelvis": (0.0, 0.0, 0.0),
    "left_hip": (_HIP_X, -0.06, 0.0),
    "right_hip": (-_HIP_X, -0.06, 0.0),
    "spine1": (0.0, 0.10, 0.0),
    "left_knee": (_HIP_X, 0.285 * _H - _PELVIS_Y, 0.0),  # knee height 0.285 H
    "right_knee": (-_HIP_X, 0.285 * _H - _PELVIS_Y, 0.0),
    "spine2": (0.0, 0.23, 0.0),
    "left_ankle": (_HIP_X, 0.039 * _H - _PELVIS_Y, 0.0),  # ankle height 0.039 H
    "right_ankle": (-_HIP_X, 0.039 * _H - _PELVIS_Y, 0.0),
    "spine3": (0.0, 0.29, 0.0),
    "left_foot": (_HIP_X, 0.039 * _H - _PELVIS_Y - 0.05, 0.11),  # ball of the foot, ~24 deg pitch
    "right_foot": (-_HIP_X, 0.039 * _H - _PELVIS_Y - 0.05, 0.11),
    "neck": (0.0, 0.818 * _H - _PELVIS_Y + 0.06, 0.0),  # shoulder height 0.818 H
    "left_collar": (0.07, 0.818 * _H - _PELVIS_Y - 0.03, 0.0),
    "right_collar": (-0.07, 0.818 * _H - _PELVIS_Y - 0.03, 0.0),
    "head": (0.0, 0.870 * _H - _PELVIS_Y + 0.05, 0.03),  # chin height 0.870 H
    "left_shoulder": (_SHOULDER_X, 0.818 * _H - _PELVIS_Y, 0.0),
    "right_shoulder": (-_SHOULDER_X, 0.818 * _H - _PELVIS_Y, 0.0),
    "left_elbow": (_SHOULDER_X + 0.186 * _H, 0.818 * _H - _PELVIS_Y, 0.0),  # upper arm 0.186 H
    "right_elbow": (-_SHOULDER_X - 0.186 * _H, 0.818 * _H - _PELVIS_Y, 0.0),
    "left_wrist": (_SHOULDER_X + 0.332 * _H, 0.818 * _H - _PELVIS_Y, 0.0),  # forearm 0.146 H
    "right_wrist": (-_SHOULDER_X - 0.332 * _H, 0.818 * _H - _PELVIS_Y, 0.0),
}


def rest_joints(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    r"""The rest (T-pose) positions of the 22 skeleton joints in metres, with shape :math:`(22, 3)`."""
    return torch.tensor([_REST[j] for j in SKELETON_JOINTS], dtype=dtype, device=device)


def forward_kinematics(
    body_pose: Tensor,
    root_orient: Tensor | None = None,
    trans: Tensor | None = None,
    rest: Tensor | None = None,
) -> Tensor:
    r"""Joint positions of SMPL body poses on the built-in skeleton.

    Arguments:
        body_pose: Axis-angle rotations of the 21 body joints (layout ``"body"``), relative to
            their parents, with shape :math:`(*, 21, 3)`.
        root_orient: The pelvis rotation, with shape :math:`(*, 3)`; identity if ``None``.
        trans: The pelvis position, with shape :math:`(*, 3)`; the origin if ``None``.
        rest: Rest joint positions with shape :math:`(22, 3)` (default :func:`rest_joints`).

    Returns:
        Joint positions in metres, with shape :math:`(*, 22, 3)`, in :data:`SKELETON_JOINTS` order.
    """
    if body_pose.shape[-2:] != (21, 3):
        raise ValueError(
            "forward_kinematics: expected body_pose with shape (*, 21, 3) (layout 'body'), "
            f"got {tuple(body_pose.shape)}"
        )
    batch = body_pose.shape[:-2]
    if root_orient is None:
        root_orient = body_pose.new_zeros(*batch, 3)
    rest = rest_joints(body_pose.dtype, body_pose.device) if rest is None else rest.to(body_pose)
    rot = axis_angle_to_matrix(torch.cat([root_orient.unsqueeze(-2), body_pose], -2))  # (*, 22, 3, 3)
    glob: list[Tensor] = [rot[..., 0, :, :]]
    pos: list[Tensor] = [torch.zeros_like(root_orient) if trans is None else trans.expand_as(root_orient)]
    for j in range(1, 22):
        p = SKELETON_PARENTS[j]
        glob.append(glob[p] @ rot[..., j, :, :])
        pos.append(pos[p] + (glob[p] @ (rest[j] - rest[p]).unsqueeze(-1)).squeeze(-1))
    return torch.stack(pos, -2)
