r"""The three kinds of values of a pose: excluded, anatomical and learned.

A prior over :math:`J` joints sees :math:`3J` axis-angle values (flat index ``3 * joint + axis``).
Each is *excluded* (not data: no density), *anatomical* (an independent Gaussian with the
anatomical floor, :func:`poseprior.formats.ranges.value_floors`) or *learned* (the prior's own
model). This module decides the kinds from training poses and turns them into masks; the rules
are documented in :class:`poseprior.PosePrior`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .errors import ShapeError
from .formats.layouts import JointLayout
from .formats.ranges import BODY_RANGES_DEG

__all__ = ["decide_values", "flat_indices", "value_masks"]

log = logging.getLogger("poseprior")

CONSTANT_STD = 1e-6
"""A joint whose values all vary less than this over the training poses was not captured."""


def flat_indices(name: str, values: Sequence[int] | None, n: int) -> list[int] | None:
    """``values`` as a sorted list of distinct flat indices in ``[0, n)`` (``None`` stays ``None``)."""
    if values is None:
        return None
    out = sorted(int(v) for v in values)
    if any(not 0 <= v < n for v in out) or len(set(out)) != len(out):
        raise ValueError(f"{name} must be distinct flat indices 3 * joint + axis in [0, {n}), got {out}")
    return out


def value_masks(n: int, exclude: list[int] | None, anatomical: list[int] | None) -> tuple[Tensor, Tensor]:
    """The ``present`` (in the density) and ``learned`` boolean masks, each with shape :math:`(n,)`."""
    both = sorted(set(exclude or ()) & set(anatomical or ()))
    if both:
        raise ValueError(f"values {both} are both excluded and anatomical; a value is one or the other")
    present = torch.ones(n, dtype=torch.bool)
    present[exclude or []] = False
    learned = present.clone()
    learned[anatomical or []] = False
    if not learned.any():
        raise ValueError(
            "no value is left to learn: every value is excluded or anatomical; a prior needs at least one "
            "value that the data moves (check the exclude / anatomical lists, or the data)"
        )
    return present, learned


def decide_values(
    x: Tensor,
    layout: JointLayout,
    floors: Tensor,
    *,
    present_joints: Tensor | None = None,
    exclude: list[int] | None = None,
    anatomical: list[int] | None = None,
    where: str = "fit",
) -> tuple[list[int], list[int]]:
    r"""Decides the excluded and anatomical values of training poses, where they are not given.

    Arguments:
        x: Training poses with shape :math:`(N, J, 3)`.
        layout: Their layout.
        floors: The floor of every value, radians, shape :math:`(J, 3)`.
        present_joints: Which joints the source files contain, shape :math:`(J,)`, if known.
        exclude: The excluded values if already decided, else ``None``: the joints absent from the
            source, and the joints outside the body (no tabulated range) whose values are all
            constant in ``x`` (with a logged warning).
        anatomical: The anatomical values if already decided, else ``None``: the values (not
            excluded) whose standard deviation in ``x`` is below their floor.
        where: Named in the errors.

    Returns:
        ``(exclude, anatomical)`` as sorted lists of flat indices.
    """
    std = x.reshape(x.shape[0], -1).std(0).cpu()
    j = len(layout)
    if exclude is None:
        absent = torch.zeros(j, dtype=torch.bool) if present_joints is None else ~present_joints.cpu()
        tabulated = torch.tensor([name in BODY_RANGES_DEG for name in layout.joints])
        frozen = (std.reshape(j, 3) <= CONSTANT_STD).all(-1) & ~tabulated & ~absent
        if frozen.any():
            log.warning(
                "%s: joint(s) %s are exactly constant in every training pose and have no anatomical range: "
                "treated as absent from the data and excluded from the density",
                where,
                ", ".join(name for name, f in zip(layout.joints, frozen.tolist(), strict=False) if f),
            )
        exclude = (absent | frozen).repeat_interleave(3).nonzero().flatten().tolist()
    if len(exclude) == 3 * j:
        raise ShapeError(
            f"{where}: every value of the {x.shape[0]} poses is constant or absent; a density needs varying "
            "data (give more or different poses)"
        )
    if anatomical is None:
        kept = torch.ones(3 * j, dtype=torch.bool)
        kept[exclude] = False
        low = (std < floors.reshape(-1).cpu()) & kept
        if bool(low[kept].all()):
            raise ShapeError(
                f"{where}: every value of the {x.shape[0]} training poses moves less than its anatomical "
                "floor, "
                "so there is nothing to learn; give poses with more motion"
            )
        anatomical = low.nonzero().flatten().tolist()
    return list(exclude), list(anatomical)


def upgrade_v1(config: dict[str, Any], state: dict[str, Tensor]) -> tuple[dict, dict]:
    """Maps a version-1 checkpoint (poseprior 0.1.0) onto the value kinds of today, same density.

    Version 1 excluded every value constant in the training data and had no anatomical values:
    its ``constant_dims`` become ``exclude``, with ``anatomical=[]``.
    """
    config = dict(config)
    config["exclude"] = config.pop("constant_dims", None)
    config["anatomical"] = []
    config.pop("constant_tol", None)
    config.setdefault("broad_weight", 0.0)  # written before the broad component existed
    state = dict(state)
    renames = {
        "constant_values": "data_mean",
        "broad_loc": "broad.loc",
        "broad_inv_scale": "broad.inv_scale",
        "broad_log_norm": "broad.log_norm",
    }
    for old, new in renames.items():
        if old in state:
            state[new] = state.pop(old)
    ref = state["data_mean"]
    present = torch.ones(ref.numel(), dtype=torch.bool)
    present[config["exclude"] or []] = False
    state.pop("modelled", None)
    state["present"], state["learned"] = present, present.clone()
    state.update(
        {
            "anatomy.loc": torch.zeros_like(ref),
            "anatomy.inv_scale": torch.zeros_like(ref),
            "anatomy.log_norm": ref.new_zeros(()),
        }
    )
    state.setdefault("initialized", torch.tensor(True))
    return config, state
