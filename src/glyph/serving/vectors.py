"""Vector recipes: how scenes and glyphs become vectors for the scene index.

Every recipe takes an *encoder* — ``encode(pairs, adapter=None) -> (mean over text tokens,
last token)`` — so this module knows nothing about models (``GlyphModel.hidden`` is the one
glyph uses). Recipes are tables: :data:`SCENE_VECTORS` (how raw scene vectors are centred)
and :data:`GLYPH_VECTORS` (how a glyph becomes a vector); adding one touches one place.

Example::

    >>> raw = scene_vectors(gm.hidden, scene_list)                   # doctest: +SKIP
    >>> centred, styles = SCENE_VECTORS["style-centred"](raw, scene_list)   # doctest: +SKIP
"""
from __future__ import annotations

from typing import Callable

from ..errors import ConfigError

DEFAULT_SCENE_VECTORS = "style-centred"  # chosen by measurement: benchmarks/expand.md
DEFAULT_GLYPH_VECTORS = "centroid"  # chosen by measurement: benchmarks/expand.md


def glyph_key(symbol: str, register: str | None = None) -> str:
    """Tensor name of a glyph vector: ``U+27C1`` or ``U+27C1/poetry`` (safetensors-safe)."""
    key = "U+" + "-".join(f"{ord(c):04X}" for c in symbol)
    return f"{key}/{register}" if register else key


#: ``encode(pairs, adapter=None) -> (mean over text tokens, last token)`` as float32 arrays:
#: how the index turns ``(prefix, text)`` pairs into vectors (e.g. ``GlyphModel.hidden``).
Encoder = Callable[..., tuple]


def unit(x):
    import numpy as np

    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def scene_vectors(encode: Encoder, scene_list):
    """Raw (uncentred) scene vectors: base hidden states mean-pooled over the scene text."""
    from ..corpus import scenes as sc

    pairs = [(sc.header(s.register, s.level, s.lang), s.text) for s in scene_list]
    means, _ = encode(pairs, adapter=None)
    return means


def style_key(scene) -> str:
    """The style group a scene is centred in: language, register and level."""
    return f"{scene.lang}/{scene.register}/{scene.level}"


def centre_by_style(raw, scene_list):
    """Subtract from each scene vector the mean of its style group; return ``(x, centres)``.

    A small model's hidden states say first *how* a text is written (language, register,
    level) and only then *what* it is about. Removing each style's mean leaves the topic:
    on the default run this triples held-out retrieval (benchmarks/expand.md, "vectors").
    """
    import numpy as np

    x = np.array(raw, dtype="float32", copy=True)
    keys = [style_key(s) for s in scene_list]
    centres = {}
    for k in sorted(set(keys)):
        rows = [i for i, kk in enumerate(keys) if kk == k]
        centres[k] = x[rows].mean(0)
        x[rows] -= centres[k]
    return x, centres


def _mean_centred(raw, scene_list):
    return raw - raw.mean(0, keepdims=True), {}


#: how raw scene vectors are centred: name → ``(raw, scenes) -> (centred, style centres)``
SCENE_VECTORS = {"style-centred": centre_by_style, "mean-centred": _mean_centred}


def _centroid(encode, glyph, scene_list, unit_vecs, regs, center, lead):
    rows = [i for i, s in enumerate(scene_list)
            if s.glyph == glyph.symbol and s.split == "train" and s.register in regs]
    return unit_vecs[rows].mean(0) if rows else None


def _prompt(encode, glyph, scene_list, unit_vecs, regs, center, lead):
    from ..corpus import scenes as sc

    prompts = [(sc.prompt(glyph.symbol, r, lv, lang, lead), "") for r in regs for lv in sc.LEVELS
               for lang in sorted({s.lang for s in scene_list})]
    _, last = encode(prompts, adapter=glyph.trigger)
    return unit(last - center).mean(0)


#: how a glyph becomes a vector: name → ``(encode, glyph, scenes, unit scene vectors,
#: registers, centre, the run's prompt lead) -> vector or None``
GLYPH_VECTORS = {"centroid": _centroid, "prompt": _prompt}


def glyph_vectors(encode: Encoder, glyphs, scene_list, unit_scene_vecs, method: str, registers,
                  center, lead: str = "") -> dict:
    """``{glyph_key: unit vector}`` for every glyph, overall and per register."""
    import numpy as np

    if method not in GLYPH_VECTORS:
        raise ConfigError(f"unknown glyph vectors {method!r}; use one of "
                          f"{', '.join(GLYPH_VECTORS)}")
    make = GLYPH_VECTORS[method]
    out = {}
    for g in glyphs:
        groups = {None: list(registers)} | {r: [r] for r in registers}
        for reg, regs in groups.items():
            v = make(encode, g, scene_list, unit_scene_vecs, regs, center, lead)
            if v is not None:
                out[glyph_key(g.symbol, reg)] = unit(np.asarray(v, dtype="float32"))
    return out
