"""File helpers every part of glyph shares: YAML with line numbers, publishing files and
directories atomically, inter-process locks, and build-once caches.

Publishing means: write into a temporary sibling named after this process, fsync, rename
over the target in one step, fsync the directory. A reader sees the old version or the new
one, never half of one. Temporaries of processes that died (``kill -9``) are swept the next
time anything is published beside them.

Example::

    >>> data = load_yaml("a: 1\\n", Path("x.yaml"), GlyphError)
    >>> data["a"], data["__line__"]
    (1, 1)
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import yaml

from .errors import GlyphError


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader (no arbitrary objects) that records where each mapping starts."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, path: Path, error: type[GlyphError]):
    """Parse YAML; every mapping gets ``__line__`` (1-based). Errors become ``file:line: …``."""
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{path}:{line}: not valid YAML ({problem}); fix the file by hand "
                    "— glyph never overwrites a file it cannot read") from None


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
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


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
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def publishing(out: Path) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces ``out`` in one rename.

    If the block raises, ``out`` is untouched and the temporary is removed. Example::

        >>> with publishing(Path("runs/x/index")) as tmp:     # doctest: +SKIP
        ...     (tmp / "meta.json").write_text("{}")
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(out)
    tmp = _temp_sibling(out)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def locked(path: Path, timeout: float = 600) -> Iterator[None]:
    """Hold ``<path>.lock`` (an OS file lock shared by all glyph processes).

    The lock is released by the OS when its holder dies, so a stale lock file is harmless.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise GlyphError(f"{path} is locked by another glyph process that has held it for "
                         f"{timeout:.0f} s; wait for that process to finish") from None
    try:
        yield
    finally:
        lock.release()


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
