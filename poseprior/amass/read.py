"""Reading AMASS-format npz files and folders into :class:`PoseData`."""

from __future__ import annotations

import logging
import math
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..formats.adapters import to_layout
from .posedata import _CANONICAL, COLUMNS_TO_LAYOUT, FPS_RTOL, FRAMERATE_KEYS, OnError, PoseData, _present_for

_READ_ERRORS = (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, KeyError)

logger = logging.getLogger("poseprior.amass")


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
        source_fps = _read_framerate(npz, keys, path)
        betas, gender = _read_subject(npz, keys, path)

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


def _read_framerate(npz: Any, keys: list[str], path: Path) -> float | None:
    """The file's frame rate (the first of :data:`FRAMERATE_KEYS` it has), or ``None``."""
    for key in FRAMERATE_KEYS:
        if key in keys:
            value = _read(npz, key, path)
            try:
                fps = float(value.reshape(()))
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: {key!r} is {value!r}; expected a single number of frames per second"
                ) from None
            if not (math.isfinite(fps) and fps > 0):
                raise DataError(f"{path}: {key!r} is {fps}; expected a positive frame rate")
            return fps
    return None


def _read_subject(npz: Any, keys: list[str], path: Path) -> tuple[np.ndarray, str]:
    """The file's ``betas`` (empty if it has none) and ``gender`` (``"unknown"`` if it has none)."""
    betas = (
        _read(npz, "betas", path).astype(np.float32).copy() if "betas" in keys else np.zeros(0, np.float32)
    )
    gender = "unknown"
    if "gender" in keys:
        g = _read(npz, "gender", path)
        if g.dtype.kind not in "SU" or g.size != 1:
            raise DataError(f"{path}: 'gender' has dtype {g.dtype} and shape {g.shape}; expected one string")
        item = g.reshape(()).item()
        gender = item.decode() if isinstance(item, bytes) else str(item)
    return betas, gender


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
