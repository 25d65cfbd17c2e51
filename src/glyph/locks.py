"""The inter-process lock every glyph writer takes: waits as long as writers make progress.

``locked(path)`` holds an OS lock (``flock``) on ``<path>.lock``. The holder writes a line
naming itself (pid, a random token) into the lock file; a waiter gives up only when *one*
holder has kept the lock for ``LOCK_STALL_SECONDS`` — never merely because many writers are
queued ahead of it. So 8 × 50 concurrent ``glyph add`` all land, however long the queue, while
a holder that is stuck (stopped with ``kill -STOP``, hung on a dead network disk) is reported
with its pid after ten minutes instead of blocking forever.

The OS releases the lock when its holder dies (``kill -9``), so a leftover lock file is
harmless and must never be deleted by hand while writers run: a writer holding the old file's
lock and one locking a fresh file would both write.

Example::

    >>> with locked(Path("glyphs_registry.yaml")):       # doctest: +SKIP
    ...     ...                                          # read, change, atomic_write
"""
from __future__ import annotations

import os
import random
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .display import shown
from .errors import FileError, GlyphError
from .limits import LOCK_STALL_SECONDS
from .readers import os_reason

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: filelock, bounded by the total wait
    fcntl = None


def _holder(fd: int) -> bytes:
    try:
        return os.pread(fd, 200, 0)
    except OSError:
        return b""


def _acquire(fd: int, path: Path, stall: float) -> None:
    """flock ``fd``, polling; fail only if the same holder keeps it ``stall`` seconds."""
    holder, since, delay = None, time.monotonic(), 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now, who = time.monotonic(), _holder(fd)
        if who != holder:  # another writer got it: the queue moves, keep waiting
            holder, since = who, now
        elif now - since > stall:
            pid = who.split()[0].decode("ascii", "replace") if who.split() else "?"
            raise GlyphError(f"{path} is locked by glyph process {pid}, which has held it for "
                             f"{stall:.0f} s without finishing; if that process is stuck, stop "
                             f"it (kill {pid}) and run the command again")
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.05)


@contextmanager
def locked(path: Path, stall: float = LOCK_STALL_SECONDS) -> Iterator[None]:
    """Hold ``<path>.lock`` (see the module docstring) for the duration of the block."""
    lock_path = Path(str(path) + ".lock")
    if fcntl is None:  # pragma: no cover
        yield from _filelock(lock_path, stall)
        return
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise FileError(f"cannot lock {path}: {os_reason(lock_path, e)} ({lock_path}); glyph "
                        "needs to create that file: check the directory's permissions") from None
    except ValueError:  # a NUL byte in the path
        raise FileError(f"cannot lock {shown(str(path))}: not a usable file name (it holds a "
                        "NUL byte)") from None
    try:
        _acquire(fd, path, stall)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {secrets.token_hex(8)}\n".encode(), 0)
        except OSError:
            pass  # the record only helps waiters name the holder
        try:
            yield
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _filelock(lock_path: Path, stall: float):  # pragma: no cover - non-POSIX systems
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=stall)
    except Timeout:
        raise GlyphError(f"{lock_path} stayed locked for {stall:.0f} s; wait for the other glyph "
                         "process to finish") from None
    try:
        yield
    finally:
        lock.release()
