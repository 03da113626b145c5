r"""Loading AMASS-format motion files (``.npz``) into one canonical SMPL-X pose table.

An AMASS npz holds ``poses`` (axis-angle, one row per frame), ``trans``, ``betas``, ``gender``
and the frame rate. The layout of ``poses`` is recognised from its number of columns:

=========  ===========  ================================================================
columns    layout       notes
=========  ===========  ================================================================
156        ``smplh``    52 joints (AMASS SMPL-H release); no jaw, no eyes
165        ``smplx``    55 joints (AMASS SMPL-X release)
159        ``smplx53``  53 joints ``[global_orient, 21 body, jaw, 30 hand]``; no eyes
72         ``smpl``     24 joints; no fingers, jaw or eyes. SMPL's two hand joints (22, 23:
                        a rigid hand rotated at the wrist) have no SMPL-X equivalent and
                        are **dropped**
=========  ===========  ================================================================

Every file is converted **by joint name** to the SMPL-X order (55 joints). Joints a file lacks
are zero in :attr:`PoseData.poses` and marked absent in :attr:`PoseData.present`; asking for
them with :meth:`PoseData.poses_for` raises, so a zero that was never measured cannot pass for
data. Hands are flat-relative, as AMASS stores them (see
:func:`poseprior.formats.adapters.hand_relative_to_flat`).

Files are read with ``np.load(path, allow_pickle=False)``: nothing is ever unpickled, and a file
whose arrays need pickle is reported as an error.

Example:
    >>> from poseprior.data import sample_path
    >>> data = load_split(sample_path(), "val")
    >>> data.poses_for("body").shape
    torch.Size([3119, 21, 3])
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import secrets
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .errors import DataError
from .formats.adapters import joint_mask, to_layout
from .formats.layouts import JointLayout, get_layout

__all__ = [
    "COLUMNS_TO_LAYOUT",
    "PoseData",
    "concat",
    "load_npz",
    "load_folder",
    "load_splits",
    "load_split",
    "read_npz",
    "save_npz",
    "write_npz",
]

logger = logging.getLogger(__name__)

COLUMNS_TO_LAYOUT: dict[int, str] = {156: "smplh", 165: "smplx", 159: "smplx53", 72: "smpl"}
"""The supported widths of ``poses`` and the layout each one means."""

FRAMERATE_KEYS: tuple[str, ...] = ("mocap_framerate", "mocap_frame_rate")
"""Keys holding the frame rate: SMPL-H AMASS uses the first, SMPL-X AMASS the second."""

FPS_RTOL = 0.01
"""Relative tolerance for subsampling: the achieved rate ``source / stride`` must be this close."""

_CANONICAL = get_layout("smplx")
_READ_ERRORS = (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, KeyError)

OnError = Literal["raise", "skip"]


@dataclass(eq=False)  # tensors have no boolean equality
class PoseData:
    r"""Poses of one or more motion files, in the SMPL-X joint order.

    Attributes:
        poses: Axis-angle poses, float32, with shape :math:`(N, 55, 3)` in the ``"smplx"`` layout.
            Joints that no source file contains are zero (see ``present``).
        present: Boolean mask with shape :math:`(55,)`: the joints that every source file really
            contains. For SMPL-H files the jaw and eyes are ``False``.
        trans: Root translations, float32, with shape :math:`(N, 3)`.
        file_index: For every frame, the index of its file in ``files``, with shape :math:`(N,)`.
        files: The paths of the source files.
        source_layouts: For every file, the layout its ``poses`` were stored in (``"smplh"``, ...).
        fps: For every file, its frame rate after subsampling, or ``None`` if the file records none.
        betas: For every file, its shape coefficients (empty if the file has none).
        genders: For every file, its gender string (``"unknown"`` if the file has none).
        skipped: Files that were not loaded (with ``on_error="skip"``) and why: ``(path, reason)``.
    """

    poses: Tensor
    present: Tensor
    trans: Tensor
    file_index: Tensor
    files: list[str]
    source_layouts: list[str]
    fps: list[float | None]
    betas: list[np.ndarray]
    genders: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.poses.shape[0])

    @property
    def root_orient(self) -> Tensor:
        r"""The global (root) orientation, ``poses[:, 0]``, with shape :math:`(N, 3)`."""
        return self.poses[:, 0]

    @property
    def num_files(self) -> int:
        """The number of files loaded."""
        return len(self.files)

    def poses_for(self, layout: str | JointLayout, *, missing: Literal["error", "zero"] = "error") -> Tensor:
        r"""The poses of the joints of ``layout``, selected by name.

        Arguments:
            layout: A layout name (``"body"``, ``"body_hands"``, ``"smplx"``, ...) or a
                :class:`~poseprior.formats.JointLayout`.
            missing: ``"error"`` (default) raises :class:`~poseprior.DataError` if a requested
                joint is absent from the source files (see ``present``); ``"zero"`` returns the
                zeros stored for it.

        Returns:
            A new tensor with shape :math:`(N, J, 3)`.
        """
        layout = get_layout(layout)
        outside = [j for j in layout.joints if j not in _CANONICAL.joints]
        if outside:
            raise DataError(
                f"PoseData.poses_for: layout {layout.name!r} has joint(s) {', '.join(outside)} that the "
                "SMPL-X order of PoseData does not have (e.g. SMPL's hand joints); choose a layout "
                "made of SMPL-X joints such as 'body'"
            )
        if missing != "zero":
            if missing != "error":
                raise ValueError(f"PoseData.poses_for: missing must be 'error' or 'zero', got {missing!r}")
            present = set(_CANONICAL.joints[i] for i in self.present.nonzero().flatten().tolist())
            absent = [j for j in layout.joints if j not in present]
            if absent:
                layouts = ", ".join(sorted(set(self.source_layouts)))
                raise DataError(
                    f"PoseData.poses_for({layout.name!r}): joint(s) {', '.join(absent)} are absent from "
                    f"the source files (layouts: {layouts}) and only zero-filled; choose a layout "
                    "without them (e.g. 'body' or 'body_hands'), select files that have them, or pass "
                    "missing='zero' to use the zeros knowingly"
                )
        return to_layout(self.poses, _CANONICAL, layout)

    def present_for(self, layout: str | JointLayout) -> Tensor:
        r"""Which joints of ``layout`` the source files contain, a boolean tensor with shape :math:`(J,)`."""
        layout = get_layout(layout)
        have = {_CANONICAL.joints[i] for i in self.present.nonzero().flatten().tolist()}
        return torch.tensor([j in have for j in layout.joints], dtype=torch.bool)

    def select_frames(self, keep: Tensor) -> PoseData:
        r"""A new :class:`PoseData` with the frames where ``keep`` (boolean, shape :math:`(N,)`) is True.

        Every file stays listed (a file may keep no frame), so file-level splits still apply.
        """
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or keep.shape != (len(self),):
            got = tuple(keep.shape) if isinstance(keep, Tensor) else type(keep).__name__
            raise DataError(f"PoseData.select_frames: expected a boolean tensor of shape ({len(self)},), got {got}")
        rows = keep.nonzero().flatten()
        return dataclasses.replace(
            self, poses=self.poses[rows], trans=self.trans[rows], file_index=self.file_index[rows]
        )

    def select_files(self, names: Iterable[str]) -> PoseData:
        """A new :class:`PoseData` with the frames of the files named (by basename), in that order.

        Arguments:
            names: File basenames such as ``"cmu_01_01.npz"`` (a path's basename is also accepted).

        Returns:
            The selection; ``present`` is recomputed for the selected files.
        """
        names = [Path(n).name for n in names]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise DataError(f"PoseData.select_files: names given more than once: {', '.join(dup)}")
        by_name: dict[str, list[int]] = {}
        for i, f in enumerate(self.files):
            by_name.setdefault(Path(f).name, []).append(i)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise DataError(
                f"PoseData.select_files: {len(unknown)} file(s) not in this data: {', '.join(unknown[:10])}"
                f"{' ...' if len(unknown) > 10 else ''}; the data holds {len(self.files)} files "
                "(see .files)"
            )
        ambiguous = [n for n in names if len(by_name[n]) > 1]
        if ambiguous:
            raise DataError(
                f"PoseData.select_files: basename(s) {', '.join(ambiguous)} match several files; "
                "select from data loaded from one folder level"
            )
        chosen = [by_name[n][0] for n in names]
        frames = [(self.file_index == i).nonzero().flatten() for i in chosen]
        rows = torch.cat(frames) if frames else torch.zeros(0, dtype=torch.long)
        new_index = (
            torch.cat([torch.full((len(f),), k, dtype=torch.long) for k, f in enumerate(frames)])
            if frames
            else torch.zeros(0, dtype=torch.long)
        )
        layouts = [self.source_layouts[i] for i in chosen]
        present = self.present.clone()
        if chosen and all(_known_layout(s) for s in layouts):
            present = _present_for(layouts)
        return PoseData(
            poses=self.poses.index_select(0, rows),
            present=present,
            trans=self.trans.index_select(0, rows),
            file_index=new_index,
            files=[self.files[i] for i in chosen],
            source_layouts=layouts,
            fps=[self.fps[i] for i in chosen],
            betas=[self.betas[i].copy() for i in chosen],
            genders=[self.genders[i] for i in chosen],
            skipped=list(self.skipped),
        )

    def describe(self) -> str:
        """A short human-readable summary: frames, files, layouts, frame rates, absent joints."""
        counts: dict[str, int] = {}
        for s in self.source_layouts:
            counts[s] = counts.get(s, 0) + 1
        layouts = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
        rates = sorted({r for r in self.fps if r is not None})
        fps = ", ".join(f"{r:g}" for r in rates) or "unknown"
        if any(r is None for r in self.fps):
            fps += " (some files unknown)"
        absent = [_CANONICAL.joints[i] for i in (~self.present).nonzero().flatten().tolist()]
        lines = [
            f"PoseData: {len(self)} frames from {len(self.files)} files ({layouts})",
            f"  fps: {fps}",
            f"  joints present: {int(self.present.sum())} of {len(_CANONICAL)}"
            + (f" (absent, zero-filled: {', '.join(absent)})" if absent else ""),
        ]
        if self.skipped:
            lines.append(f"  skipped: {len(self.skipped)} file(s) (see .skipped)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"PoseData(frames={len(self)}, files={len(self.files)}, present={int(self.present.sum())}/55)"


_PRESENT_CACHE: dict[str, Tensor] = {}


def _known_layout(name: str) -> bool:
    return name in COLUMNS_TO_LAYOUT.values()


def _present_for(layouts: Sequence[str]) -> Tensor:
    """The SMPL-X joints contained in every one of ``layouts``."""
    present = torch.ones(len(_CANONICAL), dtype=torch.bool)
    for name in set(layouts):
        if name not in _PRESENT_CACHE:
            _PRESENT_CACHE[name] = joint_mask(name, _CANONICAL)
        present &= _PRESENT_CACHE[name]
    return present


# ---------------------------------------------------------------------------------- one file
def _read(npz: Any, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataError(
                f"{path}: key {key!r} holds a pickled object array, which poseprior never loads "
                "(allow_pickle=False); re-save it as a plain numeric/string array"
            ) from None
        raise DataError(
            f"{path}: cannot read key {key!r} ({e}); the file may be corrupt or truncated"
        ) from None
    except _READ_ERRORS as e:
        raise DataError(
            f"{path}: cannot read key {key!r} ({type(e).__name__}: {e}); the file is corrupt or truncated, "
            "re-download or re-export it"
        ) from None


def _first_bad(mask: np.ndarray, k: int = 5) -> str:
    idx = np.flatnonzero(mask)
    return ", ".join(str(i) for i in idx[:k]) + (" ..." if len(idx) > k else "")


def _check_finite(values: np.ndarray, key: str, path: Path) -> None:
    """Raises DataError naming the frames of ``values`` (N, C) that hold NaN or inf."""
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} of {len(values)} frames hold NaN or inf in {key!r} (first frame "
            f"indices: {_first_bad(bad)}); repair or remove those frames"
        )


def _stride_for(source: float, target: float, path: Path) -> int:
    if target > source * (1 + FPS_RTOL):
        raise DataError(
            f"{path}: cannot subsample {source:g} fps to a higher rate {target:g} fps; pass fps=None to "
            f"keep {source:g} fps or a rate at most {source:g}"
        )
    stride = max(1, round(source / target))
    if abs(source / stride - target) > FPS_RTOL * target:
        options = [source / k for k in range(1, 13) if source / k >= 1]
        near = sorted(options, key=lambda r: abs(r - target))[:4]
        raise DataError(
            f"{path}: {source:g} fps cannot be subsampled to {target:g} fps by an integer stride "
            f"(source/target = {source / target:.3f}); pass fps as {source:g}/k, e.g. "
            f"{', '.join(f'{r:g}' for r in sorted(near, reverse=True))}"
        )
    return stride


def _open_npz(path: Path) -> Any:
    """The open ``np.load`` archive of ``path`` (no pickles), or a :class:`DataError` saying why not."""
    try:
        npz = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(
                f"{path}: not an npz archive (neither a zip archive nor an .npy array; numpy would have "
                "to unpickle it, which poseprior never does); the file is corrupt or not an AMASS-style "
                ".npz written with np.savez"
            ) from None
        raise DataError(
            f"{path}: cannot be read as an npz archive ({e}); the file is corrupt or truncated"
        ) from None
    except _READ_ERRORS as e:
        raise DataError(
            f"{path}: cannot be read as an npz archive ({type(e).__name__}: {e}); the file is corrupt or "
            "truncated, re-download or re-export it"
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path}: holds a single .npy array of shape {getattr(npz, 'shape', '?')}, not an npz archive; "
            "expected an AMASS-style .npz with keys 'poses', 'trans', ... (np.savez)"
        )
    return npz


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    r"""Every array of the npz file ``path``, as stored (``allow_pickle=False``: nothing is unpickled).

    Raises:
        DataError: If the file is missing, not an npz archive, corrupt or truncated, or holds
            pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{str(path)!r} does not exist or is not a file")
    with _open_npz(path) as npz:
        return {key: _read(npz, key, path) for key in npz.files}


def _load_one(
    path: Path, fps: float | None
) -> tuple[np.ndarray, np.ndarray, str, float | None, np.ndarray, str]:
    """Reads and validates one file; returns (poses55, trans, layout, fps, betas, gender)."""
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path (or the folder passed to load_folder)")
    if not path.is_file():
        raise DataError(f"{path}: not a file; use load_folder for a folder of npz files")
    with _open_npz(path) as npz:
        keys = list(npz.files)
        if "poses" not in keys:
            raise DataError(
                f"{path}: no 'poses' key (keys found: {', '.join(keys) or 'none'}); expected an AMASS-style "
                "npz with 'poses' (N, 156|165|159|72) axis-angle and 'trans' (N, 3)"
            )
        poses = _read(npz, "poses", path)
        supported = ", ".join(f"{c} ({n})" for c, n in COLUMNS_TO_LAYOUT.items())
        if poses.ndim != 2 or poses.shape[1] not in COLUMNS_TO_LAYOUT:
            raise DataError(
                f"{path}: 'poses' has shape {poses.shape}; expected (N, C) with C one of the supported "
                f"column counts {supported}; convert the file to one of these layouts"
            )
        if not np.issubdtype(poses.dtype, np.number) or np.issubdtype(poses.dtype, np.complexfloating):
            raise DataError(
                f"{path}: 'poses' has dtype {poses.dtype}; expected real numbers (float32/float64)"
            )
        n, c = poses.shape
        layout = COLUMNS_TO_LAYOUT[c]
        if n == 0:
            raise DataError(
                f"{path}: 'poses' has zero frames (shape {poses.shape}); remove the file or re-export it"
            )
        poses = poses.astype(np.float32)
        _check_finite(poses, "poses", path)
        if "trans" not in keys:
            raise DataError(
                f"{path}: no 'trans' key (keys found: {', '.join(keys)}); AMASS npz files store the root "
                "translation as 'trans' with shape (N, 3)"
            )
        trans = _read(npz, "trans", path)
        if trans.shape != (n, 3) or not np.issubdtype(trans.dtype, np.number):
            raise DataError(
                f"{path}: 'trans' has shape {trans.shape} (dtype {trans.dtype}) but 'poses' has {n} frames; "
                f"expected 'trans' with shape ({n}, 3)"
            )
        trans = trans.astype(np.float32)
        _check_finite(trans, "trans", path)
        source_fps: float | None = None
        for key in FRAMERATE_KEYS:
            if key in keys:
                value = _read(npz, key, path)
                try:
                    source_fps = float(value.reshape(()))
                except (TypeError, ValueError):
                    raise DataError(
                        f"{path}: {key!r} is {value!r}; expected a single number of frames per second"
                    ) from None
                if not (math.isfinite(source_fps) and source_fps > 0):
                    raise DataError(f"{path}: {key!r} is {source_fps}; expected a positive frame rate")
                break
        betas = (
            _read(npz, "betas", path).astype(np.float32).copy()
            if "betas" in keys
            else np.zeros(0, np.float32)
        )
        gender = "unknown"
        if "gender" in keys:
            g = _read(npz, "gender", path)
            if g.dtype.kind in "SU" and g.size == 1:
                item = g.reshape(()).item()
                gender = item.decode() if isinstance(item, bytes) else str(item)
            else:
                raise DataError(
                    f"{path}: 'gender' has dtype {g.dtype} and shape {g.shape}; expected one string"
                )

    if fps is not None:
        if source_fps is None:
            raise DataError(
                f"{path}: no frame rate ({' or '.join(FRAMERATE_KEYS)}; keys found: {', '.join(keys)}) "
                f"but fps={fps:g} was requested; pass fps=None to keep every frame"
            )
        stride = _stride_for(source_fps, float(fps), path)
        poses, trans = poses[::stride], trans[::stride]
        source_fps = source_fps / stride
    x = to_layout(
        torch.from_numpy(np.ascontiguousarray(poses)).reshape(-1, c // 3, 3),
        layout,
        _CANONICAL,
        missing="zero",
    )
    if layout == "smpl":
        logger.debug("%s: SMPL file, its hand joints 22/23 (no SMPL-X equivalent) were dropped", path)
    return x.numpy(), trans, layout, source_fps, betas, gender


def load_npz(path: str | Path, *, fps: float | None = None) -> PoseData:
    r"""Loads one AMASS-format ``.npz`` file.

    Arguments:
        path: The file.
        fps: Target frame rate, reached by keeping every ``k``-th frame (``k`` an integer, the
            achieved rate within 1 % of ``fps``), or ``None`` to keep every frame.

    Returns:
        The file's poses in the SMPL-X order, with shape :math:`(N, 55, 3)`.

    Raises:
        DataError: If the file is missing, not an npz, corrupt or truncated, has no ``poses``, an
            unsupported number of columns, zero frames, NaN/inf values, a ``trans`` of another
            length, arrays that need unpickling, or no frame rate when ``fps`` is given.
    """
    return _assemble([Path(path)], fps, "raise")


def _assemble(paths: Sequence[Path], fps: float | None, on_error: OnError) -> PoseData:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number or None, got {fps!r}")
    loaded: list[tuple[str, np.ndarray, np.ndarray, str, float | None, np.ndarray, str]] = []
    skipped: list[tuple[str, str]] = []
    for p in paths:
        try:
            loaded.append((str(p), *_load_one(p, fps)))
        except DataError as e:
            if on_error == "raise":
                raise
            skipped.append((str(p), str(e)))
    if skipped:
        shown = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(
            f"skipped {len(skipped)} of {len(paths)} file(s) that could not be loaded ({shown}{more}); "
            "the list with reasons is in PoseData.skipped",
            stacklevel=3,
        )
    if not loaded:
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:5])
        raise DataError(f"none of the {len(paths)} file(s) could be loaded: {reasons}")
    return PoseData(
        poses=torch.from_numpy(np.concatenate([e[1] for e in loaded])),
        present=_present_for([e[3] for e in loaded]),
        trans=torch.from_numpy(np.concatenate([e[2] for e in loaded])),
        file_index=torch.cat([torch.full((len(e[1]),), i, dtype=torch.long) for i, e in enumerate(loaded)]),
        files=[e[0] for e in loaded],
        source_layouts=[e[3] for e in loaded],
        fps=[e[4] for e in loaded],
        betas=[e[5] for e in loaded],
        genders=[e[6] for e in loaded],
        skipped=skipped,
    )


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    r"""Writes ``arrays`` to the npz file ``path`` (that exact name) atomically.

    The arrays go to a temporary file in the same folder, which then replaces ``path`` in one
    step: a reader never sees a half-written file, and an interrupted write leaves the previous
    file as it was. Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # a file object: np.savez would otherwise append .npz to the name
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
def _check_folder(path: Path, where: str) -> None:
    if not path.exists():
        raise DataError(f"{where}: folder {path} does not exist; check the path")
    if not path.is_dir():
        raise DataError(f"{where}: {path} is not a folder; use load_npz for a single file")


def load_folder(
    path: str | Path,
    *,
    fps: float | None = None,
    files: Iterable[str] | None = None,
    on_error: OnError = "raise",
) -> PoseData:
    r"""Loads every ``*.npz`` file below a folder (recursively, in sorted order).

    Arguments:
        path: The folder. Files that are not ``.npz`` are ignored.
        fps: Target frame rate for every file (see :func:`load_npz`), or ``None``.
        files: Only these files: basenames (found anywhere below the folder) or paths relative
            to it, loaded in the given order.
        on_error: ``"raise"`` (default) stops at the first bad file; ``"skip"`` loads the others,
            records the bad ones with their reasons in :attr:`PoseData.skipped` and emits one
            warning summarising them.

    Returns:
        The poses of all the files, concatenated, with shape :math:`(N, 55, 3)`.
    """
    root = Path(path)
    _check_folder(root, "load_folder")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"load_folder: on_error must be 'raise' or 'skip', got {on_error!r}")
    found = sorted(
        (p for p in root.rglob("*.npz") if p.is_file()), key=lambda p: p.relative_to(root).as_posix()
    )
    if files is None:
        if not found:
            raise DataError(f"load_folder: no .npz files under {root}; expected AMASS-style npz motion files")
        return _assemble(found, fps, on_error)
    if isinstance(files, str):
        raise TypeError("load_folder: files must be a list of file names, not a single string")
    names = list(files)
    if not names:
        raise DataError("load_folder: files is empty; pass None to load every npz file of the folder")
    by_name: dict[str, list[Path]] = {}
    for p in found:
        by_name.setdefault(p.name, []).append(p)
    chosen: list[Path] = []
    missing: list[str] = []
    for name in names:
        direct = root / name
        if direct.is_file():
            chosen.append(direct)
        elif len(by_name.get(name, [])) == 1:
            chosen.append(by_name[name][0])
        elif name in by_name:
            where = ", ".join(p.relative_to(root).as_posix() for p in by_name[name])
            raise DataError(
                f"load_folder: {name!r} matches several files under {root} ({where}); give a relative path"
            )
        else:
            missing.append(name)
    if missing:
        raise DataError(
            f"load_folder: {len(missing)} file(s) requested are not under {root}: "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; "
            "check the folder or the file list"
        )
    return _assemble(chosen, fps, on_error)


def concat(parts: Sequence[PoseData]) -> PoseData:
    r"""The frames of several :class:`PoseData` in one, in order (e.g. the train splits of two folders).

    A joint is present only if it is present in every part.
    """
    parts = list(parts)
    if not parts:
        raise DataError("concat: got no PoseData; pass at least one")
    offsets, files = [], []
    for part in parts:
        offsets.append(len(files))
        files += part.files
    return PoseData(
        poses=torch.cat([p.poses for p in parts]),
        present=torch.stack([p.present for p in parts]).all(0),
        trans=torch.cat([p.trans for p in parts]),
        file_index=torch.cat([p.file_index + o for p, o in zip(parts, offsets)]),
        files=files,
        source_layouts=[s for p in parts for s in p.source_layouts],
        fps=[f for p in parts for f in p.fps],
        betas=[b for p in parts for b in p.betas],
        genders=[g for p in parts for g in p.genders],
        skipped=[s for p in parts for s in p.skipped],
    )


def load_splits(path: str | Path) -> dict[str, list[str]]:
    r"""Reads and validates a ``splits.json`` file: ``{"train": [file, ...], "val": [...], ...}``.

    Arguments:
        path: The JSON file.

    Returns:
        For every split name, its list of file names.

    Raises:
        DataError: If the file is missing or not valid JSON, if it is not an object of non-empty
            lists of strings, if a split lists a file twice, or if a file is in several splits.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f'load_splits: {path} not found; expected a splits.json such as {{"train": [...], "val": [...]}}'
        )
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"load_splits: {path} is not valid JSON ({e}); fix or regenerate it") from None
    if not isinstance(splits, dict) or not splits:
        raise DataError(
            f"load_splits: {path} holds a {type(splits).__name__}; expected a non-empty object mapping split "
            'names to lists of file names, e.g. {"train": ["a.npz"], "val": ["b.npz"]}'
        )
    owner: dict[str, str] = {}
    for name, entries in splits.items():
        if not isinstance(entries, list) or not entries or not all(isinstance(f, str) for f in entries):
            raise DataError(
                f"load_splits: {path}: split {name!r} must be a non-empty list of file names, got "
                f"{json.dumps(entries)[:80]}"
            )
        if len(set(entries)) != len(entries):
            dup = sorted({f for f in entries if entries.count(f) > 1})
            raise DataError(f"load_splits: {path}: split {name!r} lists {', '.join(dup[:5])} more than once")
        for f in entries:
            if f in owner:
                raise DataError(
                    f"load_splits: {path}: {f!r} is in both splits {owner[f]!r} and {name!r}; "
                    "the splits must "
                    "be disjoint"
                )
            owner[f] = name
    return {str(k): list(v) for k, v in splits.items()}


def load_split(
    folder: str | Path,
    split: str,
    *,
    splits_file: str | Path | None = None,
    fps: float | None = None,
    on_error: OnError = "raise",
) -> PoseData:
    r"""Loads the files of one split of a folder.

    Arguments:
        folder: The folder of npz files.
        split: The split's name, e.g. ``"train"`` or ``"val"``.
        splits_file: The splits JSON (see :func:`load_splits`); by default ``folder/splits.json``.
        fps: Target frame rate (see :func:`load_npz`), or ``None``.
        on_error: ``"raise"`` or ``"skip"`` (see :func:`load_folder`).

    Returns:
        The poses of the split's files, in the order the splits file lists them.
    """
    root = Path(folder)
    _check_folder(root, "load_split")
    splits = load_splits(root / "splits.json" if splits_file is None else splits_file)
    if split not in splits:
        raise DataError(
            f"load_split: no split {split!r} in the splits file; "
            f"available splits: {', '.join(map(repr, splits))}"
        )
    return load_folder(root, fps=fps, files=splits[split], on_error=on_error)
