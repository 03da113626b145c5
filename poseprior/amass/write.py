"""Writing AMASS-format npz files, atomically."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import Tensor

from .._atomicdir import write_file
from ..formats.adapters import to_layout
from ..formats.layouts import JointLayout


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    r"""Writes ``arrays`` to the npz file ``path`` (that exact name) atomically.

    The arrays go to a temporary file in the same folder, which then replaces ``path`` in one
    step: a reader never sees a half-written file, and an interrupted write leaves the previous
    file as it was. Returns ``path``.
    """
    path = Path(path)
    buffer = io.BytesIO()  # a file object: np.savez would otherwise append .npz to the name
    np.savez(buffer, **arrays)
    return write_file(path, buffer.getvalue())


def save_npz(
    path: str | Path,
    poses: Tensor,
    layout: str | JointLayout,
    *,
    fps: float = 30.0,
    extra: Mapping[str, np.ndarray] | None = None,
) -> Path:
    r"""Writes axis-angle poses as an AMASS-format SMPL-H file that :func:`load_npz` reads back.

    ``poses`` holds the joints of ``layout``; the file's ``poses`` are SMPL-H ``(N, 156)`` with the
    root and every joint ``layout`` lacks set to zero, ``trans`` and ``betas`` zero, ``gender``
    ``"neutral"`` and ``mocap_framerate`` ``fps``. The write is atomic (:func:`write_npz`).

    Arguments:
        path: The file; ``.npz`` is appended if the name lacks it (as ``np.savez`` does).
        poses: Poses with shape :math:`(N, J, 3)`.
        layout: The layout of ``poses``.
        fps: The frame rate to record.
        extra: More arrays to store beside the AMASS ones.

    Returns:
        The path written.
    """
    path = Path(path)
    if not path.name.endswith(".npz"):
        path = path.with_name(path.name + ".npz")
    n = len(poses)
    smplh = to_layout(poses.detach().float().cpu(), layout, "smplh", missing="zero").reshape(n, -1)
    arrays = {
        "poses": smplh.numpy(),
        "trans": np.zeros((n, 3), np.float32),
        "betas": np.zeros(16, np.float32),
        "gender": np.str_("neutral"),
        "mocap_framerate": np.float64(fps),
    }
    return write_npz(path, {**arrays, **(extra or {})})


# ---------------------------------------------------------------------------------- folders
