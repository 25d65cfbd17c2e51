"""The 2D map of a run's scene index: scene and glyph vectors projected on their first two
principal components. The evaluation report plots it; the atlas page draws it.

Example::

    >>> m = map_2d(SceneIndex.load("runs/default"))        # doctest: +SKIP
    >>> m.scenes.shape, m.symbols[:2]                       # doctest: +SKIP
    ((1344, 2), ['⟁', '☉'])
"""
from __future__ import annotations

from dataclasses import dataclass

from .index import SceneIndex
from .vectors import glyph_key


@dataclass
class Map2D:
    """Scene points (rows of ``index.meta``), glyph points and the glyphs' symbols."""

    scenes: "object"     # numpy [n, 2]
    meta: list[dict]
    glyphs: "object"     # numpy [g, 2]
    symbols: list[str]


def map_2d(idx: SceneIndex) -> Map2D | None:
    """PCA of the index's scene vectors, glyph vectors projected alike (None if the index
    cannot give its vectors back, as an approximate one may not)."""
    import numpy as np

    try:
        x = idx.index.reconstruct_n(0, idx.index.ntotal)
    except RuntimeError:
        return None
    mean = x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    proj = vt[:2].T
    syms = [s for s in sorted({m["glyphs"][0] for m in idx.meta}) if glyph_key(s) in idx.vectors]
    g = np.stack([idx.vectors[glyph_key(s)] for s in syms]) if syms else np.zeros((0, x.shape[1]))
    return Map2D((x - mean) @ proj, idx.meta, (g - mean) @ proj, syms)


def atlas_map(service) -> dict:
    """The map as JSON for the atlas page: scenes (with text to read on hover) and glyphs."""
    gm = service.model
    m = map_2d(service.index) if service.index is not None else None
    if m is None:
        return {"scenes": [], "glyphs": [], "available": False}
    names = {g.symbol: g.name for g in gm.glyphs.values()}
    scenes = [{"x": round(float(p[0]), 5), "y": round(float(p[1]), 5), "id": s["id"],
               "glyph": s["glyphs"][0], "register": s["register"], "level": s["level"],
               "lang": s["lang"], "text": s["text"]} for p, s in zip(m.scenes, m.meta)]
    glyphs = [{"x": round(float(p[0]), 5), "y": round(float(p[1]), 5), "symbol": s,
               "name": names.get(s, "")} for p, s in zip(m.glyphs, m.symbols)]
    return {"scenes": scenes, "glyphs": glyphs, "available": True}
