"""Base-model vectors of scenes, kept per base fingerprint: an index is embedded once per base.

A scene's index vector comes from the *untouched base* (no glyph, no adapter), so every run
on the same base — and every rebuild of an index — needs the same numbers. On a real 0.5B
model embedding the 1,344 starter scenes is minutes of CPU; with this cache a second run on
that base spends none. Stored in ``$GLYPH_HOME/vectors/<base fingerprint>-v<VERSION>-L<layers>/``
as plain ``.npy`` arrays ``[scenes, layers, d]`` and a JSON list of keys (no pickle),
published atomically; another set of layers is another cache.

Example::

    >>> encode = cached_encoder(gm.hidden, fingerprint="3fa2…")   # doctest: +SKIP
    >>> means, lasts = encode(pairs, adapter=None, layers=(8, 12))  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from .. import paths
from ..files import locked, publishing

VERSION = 2  # bump when GlyphModel.hidden changes what it returns (2: per layer)


def _key(prefix: str, text: str) -> str:
    return hashlib.sha256(f"{prefix}\0{text}".encode("utf-8")).hexdigest()[:24]


class VectorCache:
    """The cached ``(mean, last)`` base vectors of one base at some layers (None: the last)."""

    def __init__(self, fingerprint: str, layers=None, root: Path | None = None):
        self.layers = tuple(layers) if layers else None
        at = "last" if self.layers is None else ".".join(map(str, self.layers))
        self.dir = (root or paths.home() / "vectors") / f"{fingerprint}-v{VERSION}-L{at}"

    def _read(self):
        import numpy as np

        try:
            keys = json.loads((self.dir / "keys.json").read_text())
            means = np.load(self.dir / "means.npy", allow_pickle=False)
            lasts = np.load(self.dir / "lasts.npy", allow_pickle=False)
        except (OSError, ValueError):
            return {}, None, None  # nothing (or nothing usable) cached yet
        return {k: i for i, k in enumerate(keys)}, means, lasts

    def encode(self, encode: Callable, pairs, **kw):
        """``encode(pairs, adapter=None, layers=…)`` with the vectors already cached taken
        from disk."""
        import numpy as np

        keys = [_key(p, t) for p, t in pairs]
        row, means, lasts = self._read()
        missing = sorted({k: i for i, k in enumerate(keys) if k not in row}.values())
        if missing:
            new_means, new_lasts = encode([pairs[i] for i in missing], adapter=None,
                                          layers=self.layers, **kw)
            with locked(self.dir):
                row, means, lasts = self._read()  # another process may have added some
                add = [(keys[i], j) for j, i in enumerate(missing) if keys[i] not in row]
                all_keys = sorted(row, key=row.get) + [k for k, _ in add]
                idx = [j for _, j in add]
                means = new_means[idx] if means is None else np.concatenate(
                    [means, new_means[idx]])
                lasts = new_lasts[idx] if lasts is None else np.concatenate(
                    [lasts, new_lasts[idx]])
                with publishing(self.dir) as tmp:
                    (tmp / "keys.json").write_text(json.dumps(all_keys))
                    np.save(tmp / "means.npy", means.astype("float32"))
                    np.save(tmp / "lasts.npy", lasts.astype("float32"))
                row = {k: i for i, k in enumerate(all_keys)}
        at = [row[k] for k in keys]
        return means[at], lasts[at]


def cached_encoder(encode: Callable, fingerprint: str) -> Callable:
    """``encode`` with its base-model calls (``adapter=None``) served from the cache."""
    caches: dict = {}

    def wrapped(pairs, adapter=None, layers=None, **kw):
        if adapter is not None:  # a glyph's adapter: not the base, not cached
            return encode(pairs, adapter=adapter, layers=layers, **kw)
        key = tuple(layers) if layers else None
        cache = caches.setdefault(key, VectorCache(fingerprint, key))
        return cache.encode(encode, pairs, **kw)

    return wrapped
