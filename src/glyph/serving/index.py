"""The scene index: scenes and glyphs as vectors in the trained model's own space, in FAISS.

Vectors (the choice and its numbers: ``benchmarks/expand.md``, "Which vectors"):

- a **scene** is the mean of the base model's hidden states over the scene's text, at a few
  layers of the stack (``vectors.DEPTHS``; each layer treated as below, then joined)
  (prompt = its header only: no glyph, no adapter, so a scene is embedded the same way whether
  or not it was trained on), centred on the mean of its *style group* (language · register ·
  level), whitened by how training scenes vary within one glyph (``serving.whitening``;
  ``scene_vectors="style-centred"`` stops before that, ``"mean-centred"`` centres on the
  corpus mean only) and L2-normalised;
- a **glyph** is, with ``glyph_vectors="centroid"`` (default), the normalised mean of the
  vectors of its *training* scenes; with ``"prompt"``, the last hidden state of
  ``glyph + header`` under the glyph's adapter, averaged over registers, levels and
  languages. Per-register glyph vectors are stored too: ``neighbors(⟁, register="poetry")``
  searches from the poetry vector.

Cosine similarity = inner product of unit vectors. Up to ``EXACT_LIMIT`` scenes the index is
exact (``IndexFlatIP``); past it, approximate (see :func:`make_faiss_index`). Saved beside the
run in ``RUN/index/``: ``scenes.faiss``, ``vectors.safetensors`` (glyph vectors),
``projection.safetensors`` (style centres and whitening: how any text embedded like a scene
enters the space, :mod:`glyph.serving.projection`) and ``meta.json`` — no pickle.

Example::

    >>> idx = build("runs/default")                        # doctest: +SKIP
    >>> [h.scene_id for h in idx.neighbors("⟁", k=3)]      # doctest: +SKIP
    ['Δ105', 'Δ141', 'Δ117']
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, NotFound, ModelError
from ..files import publishing, read_json
from ..limits import MAX_INDEX_META_BYTES
from .faiss_index import IVF_NPROBE, index_kind, make_faiss_index
from .projection import Projection
from .vectors import (DEFAULT_GLYPH_VECTORS, DEFAULT_SCENE_VECTORS, GLYPH_VECTORS,
                      SCENE_VECTORS, Encoder, glyph_key, glyph_symbol, glyph_vectors,
                      scene_space, scene_vectors, unit)

INDEX_FORMAT = 2            # 2: style-centred scene vectors
_META_KEYS = {"id", "glyphs", "register", "level", "tier", "lang", "split", "text"}


def _read_binaries(d: Path, rebuild: str):
    """``scenes.faiss`` and ``vectors.safetensors``; a corrupt file is a ModelError."""
    import faiss
    from safetensors.numpy import load_file

    out = []
    for name, read in (("scenes.faiss", faiss.read_index), ("vectors.safetensors", load_file)):
        f = d / name
        if not f.is_file():
            raise ModelError(f"{d}: {name} is missing; {rebuild}")
        try:
            out.append(read(str(f)))
        except Exception as e:  # noqa: BLE001 - FAISS/safetensors raise RuntimeError & co.
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            raise ModelError(f"{f}: cannot be read ({first}); {rebuild}") from None
    return out


def _read_projection(d: Path, dim: int, rebuild: str) -> Projection | None:
    """``projection.safetensors`` (None when the index predates it); damaged: ModelError."""
    f = d / "projection.safetensors"
    if not f.is_file():
        return None
    try:
        p = Projection.load(f)
        ok = p(p.mean[None]).shape[1] == dim  # the projection leads into this index's space
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise ModelError(f"{f}: cannot be read ({first}); {rebuild}") from None
    if not ok:
        raise ModelError(f"{d}: projection.safetensors and scenes.faiss do not agree "
                         f"(different builds?); {rebuild}")
    return p


@dataclass
class Hit:
    """One retrieved scene with its cosine score."""

    scene_id: str
    score: float
    glyphs: str
    register: str
    level: str
    tier: str
    lang: str
    split: str
    text: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class SceneIndex:
    """The FAISS index of a run's scenes, their metadata and the glyph vectors."""

    def __init__(self, index, meta: list[dict], vectors: dict, info: dict,
                 projection: Projection | None = None):
        self.index, self.meta, self.vectors, self.info = index, meta, vectors, info
        self.projection = projection  # None: an index built before glyph saved it

    @staticmethod
    def directory(run: Path | str) -> Path:
        return Path(run) / "index"

    @classmethod
    def exists(cls, run: Path | str) -> bool:
        return (cls.directory(run) / "meta.json").is_file()

    @classmethod
    def load(cls, run: Path | str) -> "SceneIndex":
        """Read ``RUN/index/``; a damaged or foreign index is one :class:`ModelError` line."""
        d = cls.directory(run)
        if not cls.exists(run):
            raise NotFound(f"run {run} has no scene index; build it with `glyph index build {run}`")
        rebuild = f"rebuild it with `glyph index build {run}`"
        meta = read_json(d / "meta.json", ModelError, limit=MAX_INDEX_META_BYTES,
                         what="an index", fix=rebuild)
        if not isinstance(meta, dict) or meta.get("version") != INDEX_FORMAT:
            raise ModelError(f"{d} was written by another glyph version; {rebuild}")
        index, vectors = _read_binaries(d, rebuild)
        info, scenes = meta.get("info"), meta.get("scenes")
        if (not isinstance(info, dict) or not isinstance(scenes, list)
                or not all(isinstance(m, dict) and _META_KEYS <= set(m) for m in scenes)):
            raise ModelError(f"{d / 'meta.json'}: not the shape glyph writes; {rebuild}")
        if index.ntotal != len(scenes) or any(
                getattr(v, "ndim", 0) != 1 or v.shape[0] != index.d for v in vectors.values()):
            raise ModelError(f"{d}: scenes.faiss, meta.json and vectors.safetensors do not "
                             f"agree (different builds?); {rebuild}")
        import faiss

        if isinstance(index, faiss.IndexIVF):
            nprobe = info.get("nprobe")
            index.nprobe = nprobe if isinstance(nprobe, int) and nprobe > 0 else IVF_NPROBE
        return cls(index, scenes, vectors, info, _read_projection(d, index.d, rebuild))

    def save(self, run: Path | str) -> Path:
        """Write ``RUN/index/`` atomically (a temp dir renamed into place)."""
        import faiss
        from safetensors.numpy import save_file

        d = self.directory(run)
        with publishing(d) as tmp:
            faiss.write_index(self.index, str(tmp / "scenes.faiss"))
            save_file(self.vectors, str(tmp / "vectors.safetensors"))
            if self.projection is not None:
                self.projection.save(tmp / "projection.safetensors")
            (tmp / "meta.json").write_text(json.dumps(
                {"version": INDEX_FORMAT, "info": self.info, "scenes": self.meta},
                ensure_ascii=False, indent=1), encoding="utf-8")
        return d

    # ------------------------------------------------------------ queries
    def has_glyph(self, symbol: str) -> bool:
        return glyph_key(symbol) in self.vectors

    def scene_vector(self, scene_id: str):
        """The indexed (centred, unit) vector of a scene, or None if it is not indexed."""
        if "_row" not in self.__dict__:
            self._row = {m["id"]: i for i, m in enumerate(self.meta)}
            if hasattr(self.index, "make_direct_map"):  # IVF: reconstruct needs the map
                self.index.make_direct_map()
        i = self._row.get(scene_id)
        return None if i is None else self.index.reconstruct(i)

    def glyph_vector(self, symbol: str, register: str | None = None):
        key = glyph_key(symbol, register)
        if key not in self.vectors:
            if register is not None and glyph_key(symbol) in self.vectors:
                return self.vectors[glyph_key(symbol)]  # no scene of it in that register
            raise NotFound(f"{symbol} is not in this index; train it, then run "
                           "`glyph index build` again")
        return self.vectors[key]

    def search(self, vector, *, k: int = 5, where: Callable[[dict], bool] | None = None
               ) -> list[Hit]:
        """The ``k`` nearest scenes to ``vector`` (cosine) that satisfy ``where``."""
        import numpy as np

        q = np.asarray(vector, dtype="float32").reshape(1, -1)
        n = len(self.meta)
        want = k if where is None else n if self.info["kind"] == "flat" else min(n, max(64, 16 * k))
        scores, ids = self.index.search(q, max(1, min(want, n)))
        hits: list[Hit] = []
        for s, i in zip(scores[0], ids[0]):
            if i < 0:
                continue
            m = self.meta[i]
            if where is not None and not where(m):
                continue
            hits.append(Hit(scene_id=m["id"], score=round(float(s), 4), glyphs=m["glyphs"],
                            register=m["register"], level=m["level"], tier=m["tier"],
                            lang=m["lang"], split=m["split"], text=m["text"]))
            if len(hits) == k:
                break
        return hits

    def neighbors(self, symbol: str, *, k: int = 5, register: str | None = None) -> list[Hit]:
        """Nearest scenes of a glyph (from its per-register vector when ``register`` is given)."""
        where = None if register is None else (lambda m: m["register"] == register)
        return self.search(self.glyph_vector(symbol, register), k=k, where=where)

    def glyphs(self) -> list[str]:
        """The glyphs that have a vector, in the order they were indexed."""
        return [glyph_symbol(k) for k in self.vectors if k.startswith("U+") and "/" not in k]

    def rank_glyphs(self, vector, symbols=None) -> list[tuple[str, float]]:
        """``(glyph, cosine)`` of every glyph (of ``symbols``, default all) to ``vector`` (a
        unit vector in the index's space), best first."""
        import numpy as np

        keys = [g for g in (self.glyphs() if symbols is None else symbols) if self.has_glyph(g)]
        if not keys:
            return []
        scores = np.stack([self.glyph_vector(g) for g in keys]) @ np.asarray(vector, "float32")
        return [(keys[i], round(float(scores[i]), 4)) for i in np.argsort(-scores, kind="stable")]


def build(run: Path | str, encode: Encoder, glyphs, corpus, registers, *,
          glyph_method: str = DEFAULT_GLYPH_VECTORS, scene_method: str = DEFAULT_SCENE_VECTORS,
          kind: str = "auto", log: Callable[[str], None] | None = None,
          lead: str = "", layers=None) -> SceneIndex:
    """Embed the scenes of ``glyphs`` (GlyphEntries) and the glyphs; save ``RUN/index/``.

    ``encode`` turns ``(prefix, text)`` pairs into vectors (see :data:`Encoder`); ``layers``
    are the base's layers scene vectors may come from (None: the last one only).
    """
    t0 = time.time()
    if glyph_method not in GLYPH_VECTORS:
        raise ConfigError(f"unknown --glyph-vectors {glyph_method!r}; use one of "
                          f"{', '.join(GLYPH_VECTORS)}")
    if scene_method not in SCENE_VECTORS:
        raise ConfigError(f"unknown scene vectors {scene_method!r}; use one of "
                          f"{', '.join(SCENE_VECTORS)}")
    symbols = {g.symbol for g in glyphs}
    scene_list = [s for s in corpus.scenes if s.glyph in symbols]
    if not scene_list:
        raise NotFound(f"no scene of run {run}'s glyphs in the corpus; add scenes first")
    if log:
        log(f"embedding {len(scene_list)} scenes with the base model of {run}")
    raw = scene_vectors(encode, scene_list, layers)
    space = scene_space(raw, scene_list, scene_method, layers)
    unit_vecs = unit(space.vectors).astype("float32")
    vectors = glyph_vectors(encode, glyphs, scene_list, unit_vecs, glyph_method, list(registers),
                            space, lead)
    index = make_faiss_index(unit_vecs, kind=kind)
    info = {"glyph_vectors": glyph_method, "scene_vectors": scene_method,
            "layers": list(space.layers) if space.layers else None, **space.notes,
            "kind": index_kind(index), "dim": int(unit_vecs.shape[1]), "scenes": len(scene_list),
            "corpus": corpus.fingerprint(), "run": str(Path(run).resolve()),
            "nprobe": getattr(index, "nprobe", None), "seconds": round(time.time() - t0, 1)}
    meta = [{"id": s.id, "glyphs": "".join(s.glyphs), "register": s.register, "level": s.level,
             "tier": s.tier, "lang": s.lang, "split": s.split, "text": s.text}
            for s in scene_list]
    idx = SceneIndex(index, meta, vectors, info, space.projection)
    idx.save(run)
    return idx
