"""Vector recipes: how scenes and glyphs become vectors for the scene index.

Every recipe takes an *encoder* — ``encode(pairs, adapter=None, layers=None) -> (mean over
text tokens, last token)`` — so this module knows nothing about models (``GlyphModel.hidden``
is the one glyph uses). Recipes are tables: :data:`SCENE_VECTORS` (how raw scene vectors
become index vectors: centred by style, then whitened by glyph) and :data:`GLYPH_VECTORS`
(how a glyph becomes a vector); adding one touches one place.

Which layers: a real base's middle layers make better scene vectors than its last one
(``benchmarks/scene_layers.md``), and no single one is reliably best, so scenes are embedded
at the layers of :data:`DEPTHS` and ``glyph-whitened`` whitens each layer on its own and
joins them (:func:`scene_space`): cosine in the joined space is the mean of the layers'
cosines. The other recipes use the last layer, as they always did.

Example::

    >>> layers = candidate_layers(24)                                     # (8, 12, 16, 24)
    >>> raw = scene_vectors(gm.hidden, scene_list, layers)                # doctest: +SKIP
    >>> space = scene_space(raw, scene_list, "glyph-whitened", layers)    # doctest: +SKIP
    >>> space.vectors.shape, space.layers                                 # doctest: +SKIP
    ((1344, 3584), (8, 12, 16, 24))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError
from .projection import Projection, unit

DEFAULT_SCENE_VECTORS = "glyph-whitened"  # chosen by measurement: benchmarks/expand.md
DEFAULT_GLYPH_VECTORS = "centroid"  # chosen by measurement: benchmarks/expand.md
#: where in the layer stack glyph-whitened scene vectors come from (share of its depth; 1.0 =
#: the last layer). Joined, these layers beat every single one of them, in cross-validation on
#: training scenes and on held-out scenes, on the real base and on the tiny default
#: (benchmarks/scene_layers.md).
DEPTHS = (1 / 3, 1 / 2, 2 / 3, 1.0)


def glyph_key(symbol: str, register: str | None = None) -> str:
    """Tensor name of a glyph vector: ``U+27C1`` or ``U+27C1/poetry`` (safetensors-safe)."""
    key = "U+" + "-".join(f"{ord(c):04X}" for c in symbol)
    return f"{key}/{register}" if register else key


#: ``encode(pairs, adapter=None, layers=None) -> (mean over text tokens, last token)`` as
#: float32 arrays ``[n, len(layers), d]`` (layers: 1-based, None = the last): how the index
#: turns ``(prefix, text)`` pairs into vectors (e.g. ``GlyphModel.hidden``).
Encoder = Callable[..., tuple]


def glyph_symbol(key: str) -> str:
    """Inverse of :func:`glyph_key` (the register dropped).

    >>> glyph_symbol(glyph_key("⟁", "poetry"))
    '⟁'
    """
    return "".join(chr(int(h, 16)) for h in key.split("/")[0][2:].split("-"))


def candidate_layers(n_layers: int) -> tuple[int, ...]:
    """The layers (1-based) at :data:`DEPTHS` of an ``n_layers`` stack.

    >>> candidate_layers(24), candidate_layers(2)
    ((8, 12, 16, 24), (1, 2))
    """
    return tuple(sorted({min(n_layers, max(1, round(f * n_layers))) for f in DEPTHS}))


def scene_vectors(encode: Encoder, scene_list, layers=None):
    """Raw (uncentred) scene vectors ``[n, len(layers), d]``: base hidden states mean-pooled
    over the scene text, at each of ``layers`` (None: the last)."""
    from ..corpus import scenes as sc

    pairs = [(sc.header(s.register, s.level, s.lang), s.text) for s in scene_list]
    means, _ = encode(pairs, adapter=None, layers=layers)
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


@dataclass
class SceneSpace:
    """Scene vectors in the index's space, and how to bring another base vector there."""

    vectors: Any              # (scenes, d), not yet normalised
    projection: Projection    # raw base vectors -> the same space (saved beside the index)
    notes: dict = field(default_factory=dict)  # what the recipe chose; kept in the index info
    layers: tuple | None = None  # the layers the vectors come from (None: the last)

    def project(self, raw, style: str | None = None):
        """Raw base vectors ``[m, len(layers), d]`` in this space (see :class:`Projection`)."""
        return self.projection(raw, style)


def _mean_centred(raw, scene_list) -> SceneSpace:
    mean = raw.mean(0, keepdims=True)
    return SceneSpace(raw - mean, Projection(mean, [None]))


def _style_centred(raw, scene_list) -> SceneSpace:
    x, centres = centre_by_style(raw, scene_list)
    return SceneSpace(x, Projection(raw.mean(0, keepdims=True), [None], centres))


def _glyph_whitened(raw, scene_list) -> SceneSpace:
    """Style-centred, then whitened by the spread of training scenes within a glyph."""
    from . import whitening

    space = _style_centred(raw, scene_list)
    w = whitening.fit(space.vectors, [s.glyph for s in scene_list],
                      [s.split == "train" for s in scene_list])
    if w is None:  # one glyph or a handful of scenes: nothing to learn, style-centred as is
        return SceneSpace(space.vectors, space.projection, {"whitening": None})
    p = space.projection
    return SceneSpace(space.vectors @ w.transform, Projection(p.mean, [w.transform], p.centres),
                      w.notes())


#: how raw scene vectors become index vectors: name → ``(raw, scenes) -> SceneSpace``
SCENE_VECTORS = {"glyph-whitened": _glyph_whitened, "style-centred": _style_centred,
                 "mean-centred": _mean_centred}


def scene_space(raw, scene_list, method: str, layers=None) -> SceneSpace:
    """Recipe ``method`` applied to ``raw`` ``[n, len(layers), d]``; its projection takes
    base vectors of the space's layers, ``[m, len(space.layers), d]``.

    ``glyph-whitened`` is fitted at every layer on its own (each its shrinkage, chosen by
    cross-validation on the training scenes) and the unit vectors of all layers are joined;
    the other recipes take the last of ``layers``.
    """
    import numpy as np

    layers = tuple(layers) if layers else (None,)
    recipe = SCENE_VECTORS[method]
    spaces = [recipe(raw[:, i], scene_list)
              for i in (range(len(layers)) if method == "glyph-whitened" else [-1])]
    if len(spaces) == 1 or any(not sp.notes.get("whitening") for sp in spaces):
        # one layer, or whitening had nothing to learn from: the last layer as it is
        last = spaces[-1]
        return SceneSpace(last.vectors, last.projection, last.notes,
                          layers[-1:] if layers[-1] is not None else None)
    whitening = [sp.notes["whitening"] for sp in spaces]
    notes = {"whitening": {"folds": whitening[0]["folds"],
                           **{k: {str(lay): w[k] for lay, w in zip(layers, whitening)}
                              for k in ("shrinkage", "cv_scene_accuracy")}}}
    return SceneSpace(np.concatenate([unit(sp.vectors) for sp in spaces], axis=-1),
                      Projection.join([sp.projection for sp in spaces]), notes, layers)


def _centroid(encode, glyph, scene_list, unit_vecs, regs, space, lead):
    rows = [i for i, s in enumerate(scene_list)
            if s.glyph == glyph.symbol and s.split == "train" and s.register in regs]
    return unit_vecs[rows].mean(0) if rows else None


def _prompt(encode, glyph, scene_list, unit_vecs, regs, space, lead):
    from ..corpus import scenes as sc

    prompts = [(sc.prompt(glyph.symbol, r, lv, lang, lead), "") for r in regs for lv in sc.LEVELS
               for lang in sorted({s.lang for s in scene_list})]
    _, last = encode(prompts, adapter=glyph.trigger, layers=space.layers)
    return unit(space.project(last)).mean(0)


#: how a glyph becomes a vector: name → ``(encode, glyph, scenes, unit scene vectors,
#: registers, the :class:`SceneSpace`, the run's prompt lead) -> vector or None``
GLYPH_VECTORS = {"centroid": _centroid, "prompt": _prompt}


def glyph_vectors(encode: Encoder, glyphs, scene_list, unit_scene_vecs, method: str, registers,
                  space: SceneSpace, lead: str = "") -> dict:
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
            v = make(encode, g, scene_list, unit_scene_vecs, regs, space, lead)
            if v is not None:
                out[glyph_key(g.symbol, reg)] = unit(np.asarray(v, dtype="float32"))
    return out
