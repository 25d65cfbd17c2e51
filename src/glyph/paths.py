"""Where glyph finds the registry, the scene corpus and its cache.

- The registry is ``$GLYPH_REGISTRY`` if set, else the first ``glyphs_registry.yaml`` found
  in the current directory or one of its parents (like git finds ``.git``).
- The scene corpus is ``$GLYPH_SCENES`` if set, else ``glyphs/`` beside the registry.
- Caches and built artifacts live in ``$GLYPH_HOME`` (default: the user's cache dir,
  e.g. ``~/.cache/glyph``).

Example::

    >>> registry_path()            # doctest: +SKIP
    PosixPath('/home/me/project/glyphs_registry.yaml')
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import RegistryError

REGISTRY_FILENAME = "glyphs_registry.yaml"


def registry_path(start: Path | None = None) -> Path:
    """Return the registry file to use (it may not exist yet if set by env var)."""
    env = os.environ.get("GLYPH_REGISTRY")
    if env:
        return Path(env).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / REGISTRY_FILENAME
        if candidate.is_file():
            return candidate
    raise RegistryError(
        f"no {REGISTRY_FILENAME} in {here} or its parents; run `glyph init` here "
        "or set GLYPH_REGISTRY=/path/to/glyphs_registry.yaml"
    )


def scenes_dir(registry: Path | None = None) -> Path:
    """Return the scene corpus directory (``glyphs/`` beside the registry)."""
    env = os.environ.get("GLYPH_SCENES")
    if env:
        return Path(env).expanduser().resolve()
    return (registry or registry_path()).parent / "glyphs"


def home() -> Path:
    """Return (and create) the cache directory for built artifacts."""
    env = os.environ.get("GLYPH_HOME")
    if env:
        p = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir

        p = Path(user_cache_dir("glyph"))
    p.mkdir(parents=True, exist_ok=True)
    return p.resolve()


def default_run() -> Path:
    """The run ``glyph expand`` / ``neighbors`` / ``eval`` use without ``--run``.

    ``$GLYPH_RUN`` if set, else ``$GLYPH_HOME/runs/default`` (what ``glyph demo`` trains).
    """
    env = os.environ.get("GLYPH_RUN")
    return Path(env).expanduser() if env else home() / "runs" / "default"
