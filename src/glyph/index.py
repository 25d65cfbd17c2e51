"""The scene index: scene and glyph vectors in the trained model's own space, searched with FAISS.

Vectors (chosen by measured retrieval quality, see ``benchmarks/expand.md``):

- a **scene** is the mean-pooled last hidden state of its text under its own glyph's adapter
  (prompt = the scene's header only, no glyph), L2-normalised;
- a **glyph** is the mean-pooled last hidden state of its training prompts' *continuation
  start*: the hidden state right after ``glyph + header`` under its adapter, averaged over
  registers and levels, L2-normalised.

Cosine similarity = inner product of unit vectors. Up to ``EXACT_LIMIT`` scenes the index is
exact (``IndexFlatIP``); above it, HNSW (M=32) with ``efSearch`` set for recall@10 ≥ 0.95.
Saved beside the run as ``index/scenes.faiss`` + ``index/meta.json`` + ``index/glyphs.safetensors``
(no pickle).

Example::

    >>> idx = SceneIndex.load("runs/demo")            # doctest: +SKIP
    >>> idx.search(idx.glyph_vector("⟁"), k=3)        # doctest: +SKIP
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, NotFound

EXACT_LIMIT = 50_000
HNSW_M = 32
HNSW_EF_SEARCH = 128
INDEX_FORMAT = 1


def make_faiss_index(vectors, *, exact_limit: int = EXACT_LIMIT):
    """An inner-product FAISS index over unit ``vectors`` (float32 [n, d]), exact or HNSW."""
    import faiss
    import numpy as np

    x = np.ascontiguousarray(vectors, dtype="float32")
    n, d = x.shape
    if n <= exact_limit:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(x)
    return index


@dataclass
class Hit:
    scene_id: str
    score: float
    glyphs: str
    register: str
    level: str
    lang: str
    text: str

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class SceneIndex:
    """Scene vectors + metadata + glyph vectors of one run."""

    def __init__(self, index, meta: list[dict], glyph_vectors: dict, info: dict):
        self.index, self.meta, self.glyph_vectors, self.info = index, meta, glyph_vectors, info

    @staticmethod
    def directory(run: Path | str) -> Path:
        return Path(run) / "index"

    @classmethod
    def load(cls, run: Path | str) -> "SceneIndex":
        import faiss
        from safetensors.numpy import load_file

        d = cls.directory(run)
        if not (d / "meta.json").exists():
            raise ModelError(f"run {run} has no scene index; build it with `glyph index build {run}`")
        meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        index = faiss.read_index(str(d / "scenes.faiss"))
        if getattr(index, "hnsw", None) is not None:
            index.hnsw.efSearch = meta["info"].get("ef_search", HNSW_EF_SEARCH)
        gv = load_file(str(d / "glyphs.safetensors"))
        return cls(index, meta["scenes"], {k: v for k, v in gv.items()}, meta["info"])

    def save(self, run: Path | str) -> Path:
        import faiss
        from safetensors.numpy import save_file

        from .files import atomic_write

        d = self.directory(run)
        d.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(d / ".scenes.faiss.tmp"))
        Path(d / ".scenes.faiss.tmp").replace(d / "scenes.faiss")
        save_file(self.glyph_vectors, str(d / ".glyphs.tmp"))
        Path(d / ".glyphs.tmp").replace(d / "glyphs.safetensors")
        atomic_write(d / "meta.json", json.dumps({"version": INDEX_FORMAT, "info": self.info,
                                                  "scenes": self.meta}, ensure_ascii=False))
        return d

    def glyph_vector(self, symbol: str):
        key = f"U+{'-'.join(f'{ord(c):04X}' for c in symbol)}"
        if key not in self.glyph_vectors:
            raise NotFound(f"{symbol} is not in this run's index; train it, then "
                           "`glyph index build` again")
        return self.glyph_vectors[key]

    def search(self, vector, *, k: int = 5, register: str | None = None) -> list[Hit]:
        """Nearest scenes to ``vector`` (cosine), optionally only of one register."""
        import numpy as np

        q = np.asarray(vector, dtype="float32").reshape(1, -1)
        want = k if register is None else min(len(self.meta), max(k * 8, 64))
        scores, ids = self.index.search(q, want)
        hits = []
        for s, i in zip(scores[0], ids[0]):
            if i < 0:
                continue
            m = self.meta[i]
            if register is not None and m["register"] != register:
                continue
            hits.append(Hit(scene_id=m["id"], score=float(s), glyphs=m["glyphs"],
                            register=m["register"], level=m["level"], lang=m["lang"],
                            text=m["text"]))
            if len(hits) == k:
                break
        return hits


def glyph_key(symbol: str) -> str:
    return f"U+{'-'.join(f'{ord(c):04X}' for c in symbol)}"
