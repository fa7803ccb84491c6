"""Safe writes: results go to a temporary sibling with an unpredictable name (never a planted
symlink), are flushed to disk, get the mode the umask allows, then are renamed into place. Output
folders are checked and locked against a second writer; names read from files are checked before
they become paths."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path

import pandas as pd

from bench.errors import BenchError

NAME = re.compile(r"[A-Za-z0-9._-]+")  # what a name read from a file may hold before it becomes part of a path


@cache
def _umask() -> int:
    """This process's umask, read without changing it where Linux says it (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain `open` would give a new file (0o666 less the umask): results are shared files."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode `mkdir` would give a new folder (0o777 less the umask)."""
    return 0o777 & ~_umask()


def write_error(path: str | Path, exc: BaseException) -> BenchError:
    """A one-line error for a failed write of `path`: disk full, file-size limit, permission, or the OS's words."""
    code, text = getattr(exc, "errno", None), str(exc)
    if code == errno.ENOSPC or "No space left" in text or "errno = 28" in text:
        why = "disk full"
    elif code == errno.EFBIG or "File too large" in text or "errno = 27" in text:
        why = "file size limit reached (ulimit -f)"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied" if code != errno.EROFS else "read-only file system"
    elif isinstance(exc, MemoryError):
        why = "out of memory"
    else:
        why = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    return BenchError(f"{path}: cannot write it ({why})")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the whole new one."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_csv(path: str | Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def _temporary(path: Path, suffix: str = "") -> tuple[int, Path]:
    """A new file beside `path` (O_EXCL, unpredictable name, so nothing planted there is followed) with
    the umask's mode; its descriptor and path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.fchmod(fd, file_mode())
    except OSError as exc:
        raise write_error(path, exc) from None
    return fd, Path(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary sibling, flush it to disk, then rename it over `path`."""
    path = Path(path)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, MemoryError)):
            raise write_error(path, exc) from None
        raise


def approx_bytes(obj) -> int:
    """About how many bytes `obj` takes written out: arrays and sparse matrices by their buffers,
    tables by their deep memory use, containers by their parts."""
    if hasattr(obj, "memory_usage") and hasattr(obj, "columns"):
        return int(obj.memory_usage(deep=True, index=True).sum())
    if hasattr(obj, "indptr"):
        return sum(int(getattr(obj, part).nbytes) for part in ("data", "indices", "indptr"))
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(approx_bytes(k) + approx_bytes(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sum(approx_bytes(v) for v in obj)
    return len(str(obj)) + 16


def check_room(path: Path, nbytes: int) -> None:
    """A one-line error, before anything is written, when a file of about `nbytes` cannot fit at
    `path`: past the file-size limit (ulimit -f) or the free disk space. (HDF5 handles a write that
    fails half-way badly, so h5ad files are checked first.)"""
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft != resource.RLIM_INFINITY and nbytes > soft:
        raise BenchError(f"{path}: cannot write it (file size limit reached (ulimit -f): about {nbytes:,} bytes needed, "
                         f"the limit is {soft:,})")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise BenchError(f"{path}: cannot write it (disk full: about {nbytes:,} bytes needed, {free:,} free)")


def atomic_write_h5ad(path: str | Path, adata) -> None:
    """Write an AnnData to `path` atomically (h5ad), flushed to disk before the rename; refused
    first when it would not fit (`check_room`)."""
    path = Path(path)
    check_room(path, sum(approx_bytes(part) for part in (adata.X, adata.obs, adata.var, dict(adata.uns))) + (1 << 16))
    fd, tmp = _temporary(path, ".h5ad")
    os.close(fd)
    try:
        adata.write_h5ad(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, MemoryError)) or "errno =" in str(exc):  # HDF5's own write errors
            raise write_error(path, exc) from None
        raise


def fsync_file(path: Path) -> None:
    """Flush a file another library wrote (by name) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def file_lock(path: str | Path, timeout: float | None = None, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a folder, or a file created if missing; never through a
    symlink) while the block runs: processes that would compute the same cached file wait for the
    first one instead of repeating its work. With `timeout` (seconds; 0: do not wait), a lock still
    held then is a one-line error (`busy`, or one naming the lock file)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDONLY | os.O_DIRECTORY if path.is_dir() else os.O_RDWR | os.O_CREAT
        fd = os.open(path, flags | os.O_NOFOLLOW, file_mode())
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        _acquire(fd, path, timeout, busy)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, timeout: float | None, busy: str | None) -> None:
    """flock `fd`: blocking without `timeout`, else polled until it runs out."""
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BenchError(busy or f"{path}: held by another bench process for over {timeout:g} s") from None
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def folder_lock(folder: Path, option: str = "--out") -> AbstractContextManager[None]:
    """The lock of an existing output folder (a lock on the folder itself, so no lock file is left):
    a second bench writing into it stops at once with one line."""
    busy = f"{folder}: another bench process is writing into this folder; wait for it to finish or choose another {option}"
    return file_lock(Path(folder), timeout=0, busy=busy)


def check_writable(folder: str | Path, option: str = "--out") -> Path:
    """`folder` when it is a folder bench can write into or create (nothing is created yet); a
    one-line error when it is a file or its nearest existing folder cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BenchError(f"{folder}: exists and is not a folder; {option} names a folder")
    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        raise BenchError(f"{folder}: cannot be created, {existing} is a file; {option} names a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BenchError(f"{folder}: not writable ({existing}: permission denied); choose another {option}")
    return folder


def writable_dir(folder: str | Path, option: str = "--out") -> Path:
    """`folder`, created if missing, or a one-line error when it is a file or cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BenchError(f"{folder}: exists and is not a folder; {option} names a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"{folder}: is not writable: cannot create the folder ({exc.strerror or exc}); {option} names a folder") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BenchError(f"{folder}: not writable (permission denied); choose another {option}")
    return folder


def check_writable_file(path: str | Path, option: str = "--out") -> Path:
    """`path` for a file to write: not a folder, in a folder bench can write into or create (nothing
    is created yet); one-line errors."""
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"{path}: is a folder; {option} names a file")
    check_writable(path.parent, option)
    return path


def safe_name(name: object, what: str, source: str | Path) -> str:
    """`name` (read from `source`) when it can be a file name as it is: letters, digits, '.', '_' and
    '-' only, no '..' and no leading '.'; else a one-line error naming the file and the value."""
    text = str(name)
    if not NAME.fullmatch(text) or ".." in text or text.startswith("."):
        raise BenchError(f"{source}: {what} {text!r} cannot name a file: expected letters, digits, '.', '_' or '-' only "
                         "(no '..', no leading '.')")
    return text


def inside(root: str | Path, path: str | Path) -> Path:
    """`path` when it resolves (symlinks followed) inside `root`, else a one-line error."""
    base, target = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([base, target]) != base:
        raise BenchError(f"{path}: resolves to {target}, outside the output folder {root}; refused")
    return Path(path)


def make_shared_dir(folder: Path) -> None:
    """Give a folder `mkdtemp` made private the mode a plain `mkdir` would have given it."""
    folder.chmod(dir_mode())


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written temporary directory into place, replacing any previous one (moved aside
    under an unpredictable name first, then removed)."""
    if final_dir.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.old.", dir=final_dir.parent))
        os.replace(final_dir, trash)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
