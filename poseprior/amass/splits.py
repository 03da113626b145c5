"""``splits.json``: which files of a folder are train, val, ...; loading one split."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from .posedata import OnError, PoseData
from .read import _check_folder, load_folder


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
