"""Validation at the public boundary: the only place that formats shape and value errors."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import ShapeError, ValueCheckError
from .formats.layouts import LAYOUTS, JointLayout

MAX_ABS_RADIANS = 1e4
"""The largest axis-angle value accepted (radians). Every prior's log_prob, gradient and
Hessian-vector product are finite for any value within it (tested up to 50 rad and at the bound);
beyond, the squares of standardized values would soon overflow float32."""

# Joint counts of the full layouts, to recognise a pose given in another format.
_FULL_COUNTS = {len(LAYOUTS[n]): n for n in ("smpl", "smplh", "smplx", "smplx53")}


def _layout_hint(got: int, layout: JointLayout) -> str:
    name = _FULL_COUNTS.get(got)
    if name is not None and got != len(layout):
        return (
            f"; {got} joints is the {name!r} layout: select the prior's joints with "
            f"poseprior.formats.to_layout(x, {name!r}, {layout.name!r})"
        )
    return ""


def check_pose(x: object, layout: JointLayout, where: str) -> Tensor:
    r"""Checks that ``x`` is an axis-angle pose tensor of ``layout``, with shape :math:`(*, J, 3)`.

    Returns ``x`` unchanged. Raises :class:`ShapeError` or :class:`ValueCheckError` with a message
    that names ``where``, what was expected, what arrived and how to fix it.
    """
    j = len(layout)
    expected = f"(*batch, {j}, 3) axis-angle for layout {layout.name!r}"
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor of shape {expected}, got {type(x).__name__}")
    shape = tuple(x.shape)
    if x.dim() >= 3 and shape[-3:] == (j, 3, 3):
        raise ShapeError(
            f"{where}: expected shape {expected}, got {shape}: these look like rotation matrices; "
            "convert them with poseprior.formats.rotations.matrix_to_axis_angle(x)"
        )
    if x.dim() >= 2 and shape[-2:] == (j, 6):
        raise ShapeError(
            f"{where}: expected shape {expected}, got {shape}: these look like 6D rotations; "
            "convert them with poseprior.formats.rotations.rot6d_to_axis_angle(x)"
        )
    if x.dim() >= 1 and shape[-1] == 3 * j and (x.dim() < 2 or shape[-2] != j):
        raise ShapeError(
            f"{where}: expected shape {expected}, got the flat shape {shape}; "
            f"reshape it with x.reshape(*x.shape[:-1], {j}, 3)"
        )
    if x.dim() < 2 or shape[-1] != 3 or shape[-2] != j:
        got = shape[-2] if x.dim() >= 2 and shape[-1] == 3 else None
        hint = _layout_hint(got, layout) if got is not None else ""
        if not hint:
            hint = f"; poses must be axis-angle with {j} joints in the order of layout {layout.name!r}"
        raise ShapeError(f"{where}: expected shape {expected}, got {shape}{hint}")
    if not x.is_floating_point():
        raise ValueCheckError(
            f"{where}: expected a floating-point tensor, got dtype {x.dtype}; use x.float()"
        )
    # One reduction and one sync (NaN propagates through amax, inf is its own maximum); only a
    # non-finite or huge maximum pays for the per-element checks.
    biggest = float(x.detach().abs().amax()) if x.numel() else 0.0
    if not math.isfinite(biggest):
        bad = (~torch.isfinite(x)).reshape(-1, j * 3).any(-1).nonzero().flatten()[:5].tolist()
        raise ValueCheckError(
            f"{where}: the poses contain NaN or inf (first bad flattened batch indices: {bad}); "
            "remove or repair those frames before calling"
        )
    if biggest > MAX_ABS_RADIANS:
        bad = (x.detach().abs() > MAX_ABS_RADIANS).reshape(-1, j * 3).any(-1).nonzero().flatten()[:5].tolist()
        raise ValueCheckError(
            f"{where}: the poses hold axis-angle values up to {biggest:.3g} rad (first such flattened batch "
            f"indices: {bad}); every rotation has an axis-angle vector of length at most pi, and values "
            f"beyond {MAX_ABS_RADIANS:g} rad are not poses (an optimizer that diverged?): wrap the angles, "
            "e.g. with "
            "poseprior.formats.rotations, or check the optimization"
        )
    return x


def check_like(x: Tensor, ref: Tensor, where: str) -> None:
    """Checks that ``x`` is on the same device as ``ref`` (the prior's parameters)."""
    if x.device != ref.device:
        raise ValueCheckError(
            f"{where}: the poses are on {x.device} but the prior is on {ref.device}; "
            f"move one of them, e.g. x.to({str(ref.device)!r}) or prior.to({str(x.device)!r})"
        )


def check_broad_weight(owner: str, value: object, has_broad: bool | None = None) -> float:
    """A prior's ``broad_weight`` as a float in [0, 1); with ``has_broad`` (a weight changed after
    construction), in (0, 1) if the prior has a broad component and 0 if it has none."""
    w = check_number("broad_weight", value, strict=False)
    if w >= 1.0 and has_broad is None:
        raise ValueError(f"broad_weight must be in [0, 1), got {value!r}")
    if has_broad and not 0.0 < w < 1.0:
        raise ValueError(
            f"{owner}.broad_weight: this prior has a broad component, so its weight must be in (0, 1), "
            f"got {value!r}; for the learned model alone use prior.without_broad()"
        )
    if has_broad is False and w != 0:
        raise ValueError(
            f"{owner}.broad_weight: this prior was built without a broad component, got {value!r}; the "
            f"component is fitted on the training data: create the prior with broad_weight={value!r} and "
            "fit it"
        )
    return w


def check_probability(name: str, value: object) -> float:
    """``value`` as a float in [0, 1]; else a ValueError naming ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    if not ok:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_number(name: str, value: object, *, at_least: float = 0.0, strict: bool = True) -> float:
    """``value`` as a finite float above (or at, if not ``strict``) ``at_least``; else a ValueError naming
    ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > at_least if strict else value >= at_least)
    if not ok:
        bound = f"> {at_least:g}" if strict else f">= {at_least:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)
