"""File helpers shared by the registry and the scene corpus: YAML with line numbers,
atomic writes and inter-process locks.

Example::

    >>> data = load_yaml("a: 1\\n", Path("x.yaml"), GlyphError)
    >>> data["a"], data["__line__"]
    (1, 1)
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, rename."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


@contextmanager
def locked(path: Path, timeout: float = 60) -> Iterator[None]:
    """Hold ``<path>.lock`` (an OS file lock shared by all glyph processes)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise GlyphError(f"{path}.lock is held by another glyph process for {timeout:.0f} s; "
                         "wait for it or delete the lock file if none is running") from None
    try:
        yield
    finally:
        lock.release()
