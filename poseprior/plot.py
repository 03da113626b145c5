r"""Stick-figure pictures of body poses (matplotlib, imported only when a picture is drawn).

The joints come from :func:`poseprior.kinematics.forward_kinematics` on the built-in skeleton, so
no SMPL model file is needed. Figures are drawn on matplotlib's Agg canvas directly (no
``pyplot``, no backend switch), so plotting changes no global matplotlib state and works without a
display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .errors import ShapeError
from .kinematics import SKELETON_JOINTS, SKELETON_PARENTS, forward_kinematics

__all__ = ["plot_poses"]

_COLORS = {"left": "#1f77b4", "right": "#d62728", "centre": "#333333"}
# Screen axes (horizontal, vertical) as indices into (x, y, z) of the SMPL rest frame
# (+y up, +z forward: the subject faces the viewer in the front view).
_VIEWS = {"front": (0, 1), "side": (2, 1)}


def _side(name: str) -> str:
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"


def plot_poses(
    poses: Tensor,
    path: str | Path,
    *,
    cols: int = 4,
    titles: Sequence[str] | None = None,
    view: Literal["front", "side"] = "front",
    panel_size: float = 2.0,
    dpi: int = 100,
) -> Path:
    r"""Draws body poses as stick figures in a grid and saves the picture.

    Every pose is drawn with the pelvis at the origin and no root rotation, from the front
    (the subject faces the viewer: their left side, in blue, is on the viewer's right) or from the
    side (the subject faces right). All panels share one scale, in metres.

    Arguments:
        poses: Axis-angle rotations of the 21 body joints (layout ``"body"``), relative to their
            parents, with shape :math:`(N, 21, 3)`.
        path: The picture file; its suffix picks the format (``.png``, ``.pdf``, ``.svg``, ...).
            Without a suffix, matplotlib's default format is used and its suffix appended.
        cols: Panels per row.
        titles: One title per pose (e.g. its log-density), or ``None``.
        view: ``"front"`` (x to the right, y up) or ``"side"`` (z to the right, y up).
        panel_size: Width of one panel in inches (the height is 1.3 times that).
        dpi: Resolution of raster formats.

    Returns:
        The path written.

    Example:
        >>> import tempfile, os
        >>> out = plot_poses(torch.zeros(2, 21, 3), os.path.join(tempfile.mkdtemp(), "rest.png"))
        >>> out.suffix
        '.png'
    """
    _check_plot_args(poses, titles, view, cols)
    return _draw(poses, Path(path), cols=cols, titles=titles, view=view, panel_size=panel_size, dpi=dpi)


def _check_plot_args(poses: object, titles: Sequence[str] | None, view: str, cols: int) -> None:
    if not isinstance(poses, Tensor):
        raise TypeError(f"plot_poses: expected a torch.Tensor, got {type(poses).__name__}")
    if poses.dim() != 3 or tuple(poses.shape[1:]) != (21, 3):
        raise ShapeError(
            "plot_poses: expected body poses with shape (N, 21, 3) (layout 'body'), "
            f"got {tuple(poses.shape)}; "
            "select the body joints with poseprior.formats.adapters.to_layout(x, layout, 'body')"
        )
    n = poses.shape[0]
    if n == 0:
        raise ShapeError("plot_poses: got 0 poses; nothing to draw")
    if titles is not None and len(titles) != n:
        raise ValueError(f"plot_poses: got {len(titles)} titles for {n} poses")
    if view not in _VIEWS:
        raise ValueError(f"plot_poses: view must be 'front' or 'side', got {view!r}")
    if cols < 1:
        raise ValueError(f"plot_poses: cols must be >= 1, got {cols}")


def _draw(
    poses: Tensor,
    path: Path,
    *,
    cols: int,
    titles: Sequence[str] | None,
    view: str,
    panel_size: float,
    dpi: int,
) -> Path:
    """Draws validated poses (see :func:`plot_poses`) and saves the picture; returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = poses.shape[0]
    h, v = _VIEWS[view]
    with torch.no_grad():
        joints = forward_kinematics(poses.detach().to("cpu", torch.float64)).numpy()  # (N, 22, 3)
    pts = joints[..., [h, v]]
    # One scale for every panel, none clipped: horizontally symmetric about the pelvis, vertically
    # spanning all poses, padded to the panels' 1 : 1.3 aspect.
    half_w = max(float(abs(pts[..., 0]).max()), 0.3) * 1.08
    lo, hi = float(pts[..., 1].min()), float(pts[..., 1].max())
    mid, half_h = (lo + hi) / 2, max((hi - lo) / 2 * 1.08, 1.3 * half_w)
    half_w = half_h / 1.3
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(panel_size * cols, 1.3 * panel_size * rows), dpi=dpi)
    FigureCanvasAgg(fig)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        for j in range(1, len(SKELETON_JOINTS)):
            p = SKELETON_PARENTS[j]
            ax.plot(
                pts[i, [p, j], 0],
                pts[i, [p, j], 1],
                color=_COLORS[_side(SKELETON_JOINTS[j])],
                linewidth=2.2,
                solid_capstyle="round",
            )
        ax.scatter(pts[i, :, 0], pts[i, :, 1], s=6, color="black", zorder=3)
        ax.set_xlim(-half_w, half_w)
        ax.set_ylim(mid - half_h, mid + half_h)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    if not path.suffix:  # savefig would append the default format's suffix: return the real name
        from matplotlib import rcParams

        path = path.with_name(f"{path.name}.{rcParams['savefig.format']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
