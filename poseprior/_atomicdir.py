"""Replace a folder's whole content atomically: readers and a killed writer see the old or the new folder.

:func:`write_folder` writes the files into a temporary sibling ``.<name>.poseprior-tmp-<random>``
(in the same parent, hence on the same filesystem), fsyncs them and the sibling, then swaps the
sibling into place with one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux >= 3.15 on ext4, xfs,
btrfs, tmpfs, ...) and only then deletes the previous content. A process killed at any moment
leaves ``<name>`` holding either the complete old content or the complete new one, plus possibly
a temporary sibling, which the next write to the same folder deletes.

Writers serialize on an advisory ``flock`` of the parent folder: a write removes the temporary
siblings of earlier writes only while it holds that lock, so it never deletes the sibling of a
live writer (a killed writer's lock is released by the kernel).

**Fallbacks.** Where ``renameat2`` is unavailable (macOS, Windows, old kernels, filesystems
without exchange, e.g. some network filesystems), the swap is two renames, ``<name>`` to a
sibling and the new sibling to ``<name>``: a process killed between them leaves no ``<name>``
but both contents complete in hidden siblings. Where ``flock`` is unavailable, stale siblings
are left in place rather than risk deleting a live writer's.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

_TAG = ".poseprior-tmp-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def write_folder(target: Path, files: Mapping[str, bytes], *, check: Callable[[Path], None]) -> None:
    """Makes ``target`` a folder holding exactly ``files`` (name -> content), atomically.

    ``check(target)`` runs under the writers' lock before anything is written and raises to
    refuse replacing what is there (e.g. a folder of someone else's files).
    """
    target = Path(os.path.realpath(target))
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _writers_lock(parent) as locked:
        if locked:
            _remove_stale(parent, target.name)
        check(target)
        tmp = _new_sibling(parent, target.name)
        try:
            for name, data in files.items():
                _write_file(tmp / name, data)
            if target.is_dir():  # keep the permissions the user gave the folder
                os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
            _fsync_dir(tmp)
            old = _swap_into_place(tmp, target)
        except BaseException:
            _rmtree(tmp)
            raise
        _fsync_dir(parent)
        if old is not None:
            _rmtree(old)


def _swap_into_place(new: Path, target: Path) -> Path | None:
    """Moves ``new`` to ``target``; returns where the previous content now is (to delete), if any."""
    try:
        os.rename(new, target)  # atomic when target is absent or an empty folder
        return None
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) and not isinstance(e, FileExistsError):
            raise
    if _exchange(new, target):
        return new  # the two paths swapped: ``new`` now holds the previous content
    old = _new_sibling(target.parent, target.name)
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    return old


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, some musl)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchanges two existing paths; False where the platform or filesystem cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def _writers_lock(parent: Path) -> Iterator[bool]:
    """Holds an exclusive ``flock`` on ``parent``; yields False where none could be taken."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield False
        return
    try:
        fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError:  # e.g. a filesystem without flock
            locked = False
        yield locked
    finally:
        os.close(fd)  # releases the lock


def _prefix(name: str) -> str:
    return "." + name[:200] + _TAG  # stays under the usual 255-byte name limit


def _new_sibling(parent: Path, name: str) -> Path:
    while True:
        path = parent / (_prefix(name) + secrets.token_hex(6))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def _remove_stale(parent: Path, name: str) -> None:
    """Deletes the temporary siblings of ``name`` left by killed writes (call under the lock)."""
    prefix = _prefix(name)
    with os.scandir(parent) as entries:
        stale = [e.path for e in entries if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)]
    for path in stale:
        _rmtree(Path(path))


def _rmtree(path: Path) -> None:
    """Deletes a folder, tolerating entries that vanish meanwhile."""

    def ignore_missing(func: object, p: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=ignore_missing)
    else:
        shutil.rmtree(path, onerror=lambda func, p, info: ignore_missing(func, p, info[1]))


def write_file(path: Path, data: bytes) -> Path:
    """Replaces the file ``path`` with ``data`` atomically: a temporary file in the same folder,
    fsynced, then renamed over ``path``. Readers and a killed writer see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Makes the folder's entries durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
