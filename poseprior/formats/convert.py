r"""Changing the joint layout of stored poses: what ``poseprior convert`` does to an npz file.

:func:`detect_layout` names the layout of a pose array from its joint count, and
:func:`convert_layout` changes the layout of axis-angle poses with the dedicated adapters where
they exist (``smplx53`` <-> ``smplx``, ``smplh`` <-> ``smplx``) and by joint name otherwise,
refusing to drop joints that hold motion unless asked to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ShapeError
from . import adapters
from .layouts import JointLayout, get_layout, list_layouts

__all__ = ["DETECT_ORDER", "convert_layout", "detect_layout"]

DETECT_ORDER: tuple[str, ...] = ("smplh", "smplx", "smplx53", "smpl", "body", "body_hands", "hands")
"""The layouts :func:`detect_layout` tries, in order: the first with the right joint count wins."""


def detect_layout(joints: int) -> str:
    """The name of the layout of poses with ``joints`` joints (the first of :data:`DETECT_ORDER`).

    Raises:
        ShapeError: If no layout of :data:`DETECT_ORDER` has that many joints.
    """
    found = [n for n in DETECT_ORDER if len(get_layout(n)) == joints]
    if not found:
        raise ShapeError(
            f"cannot tell the layout of poses with {joints} joints; name the source layout "
            f"(one of {', '.join(list_layouts())})"
        )
    return found[0]


def convert_layout(
    x: Tensor,
    src: str | JointLayout,
    dst: str | JointLayout,
    *,
    missing: adapters.Missing = "error",
    drop_nonzero: bool = False,
) -> Tensor:
    r"""Axis-angle poses from layout ``src`` to layout ``dst``, joints matched by name.

    The dedicated adapters handle the pairs they exist for (:func:`~.adapters.smplx53_to_smplx`,
    ...); other pairs go through :func:`~.adapters.to_layout`.

    Arguments:
        x: Poses with shape :math:`(N, J_{src}, 3)`.
        src: The layout of ``x``.
        dst: The layout wanted.
        missing: ``"error"`` (default) or ``"zero"`` to fill joints that ``src`` lacks with zeros.
        drop_nonzero: Drop joints that ``dst`` lacks even when they are not zero (by default that
            raises, since it loses motion).

    Returns:
        The poses with shape :math:`(N, J_{dst}, 3)`.
    """
    src, dst = get_layout(src), get_layout(dst)
    pair = (src.name, dst.name)
    if pair == ("smplx53", "smplx"):
        return adapters.smplx53_to_smplx(x)
    if pair == ("smplx", "smplx53"):
        return adapters.smplx_to_smplx53(x, drop_nonzero_eyes=drop_nonzero)
    if pair == ("smplh", "smplx"):
        return adapters.smplh_to_smplx(x, missing=missing)
    if pair == ("smplx", "smplh"):
        return adapters.smplx_to_smplh(x, drop_nonzero=drop_nonzero)
    dropped = [j for j in src.joints if j not in dst.joints]
    if dropped and not drop_nonzero:
        largest = x.index_select(1, torch.tensor(src.indices(dropped))).abs().amax(dim=(0, 2)).tolist()
        nonzero = [j for j, v in zip(dropped, largest, strict=True) if v != 0]
        if nonzero:
            raise ShapeError(
                f"converting {src.name!r} to {dst.name!r} drops joint(s) that are not zero: "
                f"{', '.join(nonzero[:6])}{' ...' if len(nonzero) > 6 else ''}; "
                "pass drop_nonzero=True to drop them"
            )
    return adapters.to_layout(x, src, dst, missing=missing)
