"""Joint layouts, rotation representations and the adapters between pose formats."""

from .adapters import (
    flatten,
    hand_flat_to_relative,
    hand_relative_to_flat,
    joint_mask,
    mirror_hand,
    mirror_pose,
    smplh_to_smplx,
    smplx53_to_smplx,
    smplx_to_smplh,
    smplx_to_smplx53,
    swap_limbs,
    to_layout,
    to_prior,
    unflatten,
)
from .layouts import LAYOUTS, JointLayout, get_layout, list_layouts
from .ranges import joint_ranges, plausible, uniform_poses, value_floors

__all__ = [
    "LAYOUTS",
    "JointLayout",
    "flatten",
    "get_layout",
    "hand_flat_to_relative",
    "hand_relative_to_flat",
    "joint_mask",
    "joint_ranges",
    "list_layouts",
    "mirror_hand",
    "mirror_pose",
    "plausible",
    "smplh_to_smplx",
    "smplx53_to_smplx",
    "smplx_to_smplh",
    "smplx_to_smplx53",
    "swap_limbs",
    "to_layout",
    "to_prior",
    "unflatten",
    "uniform_poses",
    "value_floors",
]
