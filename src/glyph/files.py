"""File helpers every part of glyph shares: publishing files and directories atomically,
inter-process locks (:mod:`glyph.locks`), build-once caches, and the strict readers
(:mod:`glyph.readers`, re-exported here).

Publishing means: write into a temporary sibling named after this process, fsync, rename
over the target in one step, fsync the directory. A reader sees the old version or the new
one, never half of one. Temporaries of processes that died (``kill -9``) are swept the next
time anything is published beside them.

A failure to write (permissions, a file where a directory belongs, a full disk, a
pseudo-filesystem) is a :class:`glyph.errors.FileError` naming the target, and leaves the
target as it was.

Example::

    >>> atomic_write(Path("out/notes.txt"), "hello")      # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .display import shown
from .errors import FileError
from .locks import locked
from .readers import load_yaml, os_reason, read_json, read_text

__all__ = ["atomic_write", "publishing", "sweep_leftovers", "locked", "cached", "load_yaml",
           "read_text", "read_json"]


# ---------------------------------------------------------------- publishing
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _temp_sibling(target: Path) -> Path:
    """``.<name>.tmp-<pid>-<random>`` beside ``target`` (not created)."""
    return target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def sweep_leftovers(target: Path) -> list[Path]:
    """Remove temporaries of ``target`` left by processes that no longer run; return them."""
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP_RE.match(p.name)
        if m is None or m["name"] != target.name or _alive(int(m["pid"])):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except OSError:
            continue  # not ours to remove (permissions): the write itself will tell
        removed.append(p)
    return removed


@contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Turn an OS failure while writing ``target`` into one line naming it."""
    try:
        yield
    except OSError as e:
        raise FileError(f"cannot write {target}: {os_reason(target, e)}; check that its "
                        "directory exists, is writable and has space (nothing was changed)") \
            from None
    except ValueError:  # a NUL byte in the path
        raise FileError(f"cannot write {shown(str(target))}: not a usable file name (it holds "
                        "a NUL byte)") from None


def _fsync_dir(d: Path) -> None:
    try:  # make the rename itself durable
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, rename."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(path)
        tmp = _temp_sibling(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o777)
            os.replace(tmp, path)
        except BaseException:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise
    _fsync_dir(path.parent)


@contextmanager
def publishing(out: Path) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces ``out`` in one rename.

    If the block raises, ``out`` is untouched and the temporary is removed; an ``out`` that
    is a file is refused (a directory never replaces a user's file). Example::

        >>> with publishing(Path("runs/x/index")) as tmp:     # doctest: +SKIP
        ...     (tmp / "meta.json").write_text("{}")
    """
    out = Path(out)
    if out.is_file():
        raise FileError(f"{out} is a file; choose a directory path (glyph writes a directory "
                        "there)")
    with _writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(out)
        tmp = _temp_sibling(out)
        tmp.mkdir()
    try:
        with _writing(out):
            yield tmp
            _fsync_tree(tmp)
            _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` over ``out`` (moving an old ``out`` aside first)."""
    if out.exists() or out.is_symlink():
        old = _temp_sibling(out)
        os.replace(out, old)  # a directory cannot be renamed over a non-empty one
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, out)
    _fsync_dir(out.parent)


def cached(target: Path, build: Callable[[Path], None], *, done: str,
           log: Callable[[str], None] | None = None, what: str = "") -> Path:
    """Build ``target`` once per machine, safely when several processes ask at once.

    ``done`` is the file whose presence marks a finished build; ``build(tmp)`` fills a
    temporary directory that is published as ``target``. Example::

        >>> cached(home() / "tokenizers" / "qwen3-1234", build_into, done="tokenizer.json")  # doctest: +SKIP
    """
    target = Path(target)
    if (target / done).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.parent / f".{target.name}"):
        if not (target / done).is_file():  # another process may have built it meanwhile
            if log and what:
                log(what)
            with publishing(target) as tmp:
                build(tmp)
    return target
