r"""Run folders: one trainer at a time, no silent overwrite, and ``run.json``, the record of a run.

``checkpoints/<run>/`` belongs to one run. :class:`RunLock` holds an advisory lock on
``checkpoints/<run>/.lock`` while a trainer writes there, so a second trainer of the same run
fails at once instead of interleaving checkpoints (the kernel releases the lock of a killed
process). :func:`prepare_run_folder` refuses a folder that already holds a run unless it is
resumed or explicitly overwritten.

``run.json`` (written atomically: a reader sees the old or the new record, never half of one)
holds everything needed to re-run: the resolved ``options`` (the names of ``poseprior train``'s
options, so ``poseprior train --config run.json`` reads them back), the prior's name, constructor
arguments and resolved configuration, the data (folder, splits, file lists and a hash of the
poses), package versions and the git commit of the poseprior source when it is a checkout, plus
the run's progress (``status``, ``epochs_done``, metrics, exports).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._atomicdir import write_file
from ..errors import CheckpointError

if TYPE_CHECKING:
    from ..base import PosePrior
    from .data import PoseDataModule

__all__ = ["RUN_RECORD", "RunLock", "prepare_run_folder", "read_run_record", "write_run_record"]

RUN_RECORD = "run.json"
LOCK_NAME = ".lock"
RUN_FORMAT = 1
"""Version of the layout of ``run.json``."""

_PACKAGES = ("poseprior", "torch", "pytorch-lightning", "numpy", "scipy", "nflows", "safetensors")


class RunLock:
    """An exclusive advisory lock on ``<run_dir>/.lock`` for the lifetime of a ``with`` block.

    Raises :class:`~poseprior.CheckpointError` naming the process that holds it. Where ``fcntl``
    is unavailable (Windows) the lock is the exclusive creation of the file, removed on exit.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        if fcntl is None:  # pragma: no cover - Windows
            try:
                self._fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR)
            except FileExistsError:
                raise self._busy(f"; if no trainer runs, delete {str(self.path)!r}") from None
        else:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._busy("") from None
            self._fd = fd
            os.ftruncate(fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def _busy(self, hint: str) -> CheckpointError:
        try:
            pid = self.path.read_text().strip() or "unknown"
        except OSError:
            pid = "unknown"
        return CheckpointError(
            f"run folder {str(self.path.parent)!r} is in use by another trainer (pid {pid}, lock file "
            f"{self.path.name}); wait for it to finish, or train into another run (--run NAME){hint}"
        )

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is None:
            return
        if sys.platform == "win32":  # pragma: no cover
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
        else:
            os.close(self._fd)  # releases the flock; the file stays (unlinking it would race a new locker)
        self._fd = None


def prepare_run_folder(run_dir: Path, logs_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuses a folder that holds a run unless ``resume``; with ``overwrite`` empties it and its logs.

    Call it with the :class:`RunLock` held. Only the run's own folders are touched.
    """
    run_dir, logs_dir = Path(run_dir), Path(logs_dir)
    held = sorted(p.name + ("/" if p.is_dir() else "") for p in _entries(run_dir))
    if logs_dir.is_dir() and any(logs_dir.iterdir()):
        held.append(f"logs in {logs_dir}")
    if resume or not held:
        return
    if not overwrite:
        raise CheckpointError(
            f"run {run_dir.name!r} already exists in {str(run_dir)!r} (holds {', '.join(held[:6])}); "
            "continue it with --resume (resume=True), replace it with --overwrite (overwrite=True), or pick "
            "another run name (--run NAME)"
        )
    import shutil

    for entry in _entries(run_dir):
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    if logs_dir.is_dir():
        shutil.rmtree(logs_dir)


def _entries(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.iterdir() if p.name != LOCK_NAME] if run_dir.is_dir() else []


# ---------------------------------------------------------------------------- run.json
def _plain(value: Any) -> Any:
    """JSON-ready: non-finite floats become None (JSON has no NaN), paths and tuples plain values."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_run_record(run_dir: Path, record: dict[str, Any]) -> Path:
    """Writes ``record`` to ``run_dir/run.json`` atomically (temporary file, fsync, rename)."""
    path = Path(run_dir) / RUN_RECORD
    text = json.dumps(_plain(record), indent=2, allow_nan=False) + "\n"
    return write_file(path, text.encode("utf-8"))


def read_run_record(path: str | Path) -> dict[str, Any]:
    """Reads a ``run.json`` (a file, or the run folder holding one); CheckpointError if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_RECORD
    if not path.is_file():
        raise CheckpointError(
            f"run record {str(path)!r} does not exist; pass the run.json of a poseprior train run"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{str(path)!r} is not a readable run record (JSON): {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
        raise CheckpointError(f"{str(path)!r} is not a poseprior run record: it has no 'options' object")
    fmt = record.get("run_format")
    if not isinstance(fmt, int) or fmt > RUN_FORMAT:
        raise CheckpointError(
            f"{str(path)!r}: run_format {fmt!r} is not one this poseprior reads (1 to {RUN_FORMAT}); "
            "upgrade poseprior"
        )
    return record


def now() -> str:
    """The current UTC time, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a run depends on (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    import torch

    out["torch"] = torch.__version__  # the build that runs (e.g. +cpu), not only the distribution's
    return out


def git_commit() -> dict[str, Any] | None:
    """The commit of the poseprior source when it is a git checkout (``{"commit", "dirty"}``), else None."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != root:  # an installed copy inside some other repository
        return None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "source": str(root)}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_record(source: str | Path | None) -> dict[str, Any] | None:
    """Where a stage started: the path and a hash of its weights file."""
    if source is None:
        return None
    path = Path(source).resolve()
    weights = path / "model.safetensors" if path.is_dir() else path
    return {"path": str(path), "sha256": file_sha256(weights) if weights.is_file() else None}


def new_record(
    run: str, prior: PosePrior, dm: PoseDataModule, options: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """The ``run.json`` of a run that starts now (``extra``: entries the caller adds)."""
    return {
        "run_format": RUN_FORMAT,
        "run": run,
        "status": "running",
        "started": now(),
        "updated": now(),
        "options": options,
        "prior": {
            "name": prior.name,
            "args": options.get("prior_args"),
            "config": prior.get_config(),
            "dim": prior.dim,
            "parameters": sum(p.numel() for p in prior.parameters()),
        },
        "data": dm.record(),
        "init_from": source_record(options.get("init_from")),
        "versions": package_versions(),
        "git": git_commit(),
        **extra,
        "epochs_done": 0,
    }
