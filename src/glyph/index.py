"""The scene index: scenes and glyphs as vectors in the trained model's own space, in FAISS.

Vectors (the choice and its numbers: ``benchmarks/expand.md``, "Which vectors"):

- a **scene** is the mean of the base model's last hidden states over the scene's text
  (prompt = its header only: no glyph, no adapter, so a scene is embedded the same way whether
  or not it was trained on), centred on the mean of its *style group* (language · register ·
  level; ``scene_vectors="mean-centred"``: on the corpus mean) and L2-normalised;
- a **glyph** is, with ``glyph_vectors="centroid"`` (default), the normalised mean of the
  vectors of its *training* scenes; with ``"prompt"``, the last hidden state of
  ``glyph + header`` under the glyph's adapter, averaged over registers, levels and
  languages. Per-register glyph vectors are stored too: ``neighbors(⟁, register="poetry")``
  searches from the poetry vector.

Cosine similarity = inner product of unit vectors. Up to ``EXACT_LIMIT`` scenes the index is
exact (``IndexFlatIP``); past it, approximate (see :func:`make_faiss_index`). Saved beside the
run in ``RUN/index/``: ``scenes.faiss``, ``vectors.safetensors`` (glyph vectors, centre) and
``meta.json`` — no pickle. The style centres are saved too (``__center__/en/poetry/micro``).

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

from .errors import ConfigError, ModelError, NotFound

INDEX_FORMAT = 2            # 2: style-centred scene vectors
EXACT_LIMIT = 20_000         # exact search below: ~1 ms per query at this size
IVF_MIN_PER_LIST = 64        # IVF lists hold ~this many vectors or more
IVF_NPROBE = 24              # lists visited per query at least; raised at build time until
IVF_TARGET_RECALL = 0.95     # … recall@10 against exact search reaches this on a sample,
IVF_MAX_NPROBE = 1024        # … never past this (latency: benchmarks/expand.md)
HNSW_M, HNSW_EF_SEARCH = 32, 128
GLYPH_VECTORS = ("centroid", "prompt")
SCENE_VECTORS = ("style-centred", "mean-centred")
DEFAULT_SCENE_VECTORS = "style-centred"  # chosen by measurement: benchmarks/expand.md
DEFAULT_GLYPH_VECTORS = "centroid"  # chosen by measurement: benchmarks/expand.md


def make_faiss_index(vectors, *, kind: str = "auto", exact_limit: int = EXACT_LIMIT,
                     nprobe: int = IVF_NPROBE, seed: int = 0):
    """An inner-product FAISS index over unit ``vectors`` (float32 ``[n, d]``).

    ``kind``: ``flat`` (exact), ``ivf`` (inverted lists, ``nlist ≈ 4·√n``, trained on a sample;
    ``nprobe`` starts at ``nprobe`` and is raised by :func:`calibrate_nprobe` until recall@10
    reaches 0.95 on a sample), ``hnsw`` (graph, M=32), or ``auto``: flat up to
    ``exact_limit`` vectors, IVF past it (the measured trade-off: benchmarks/expand.md).
    """
    import faiss
    import numpy as np

    x = np.ascontiguousarray(vectors, dtype="float32")
    n, d = x.shape
    if kind == "auto":
        kind = "flat" if n <= exact_limit else "ivf"
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivf":
        nlist = max(1, min(int(4 * n ** 0.5), n // IVF_MIN_PER_LIST))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(n, size=min(n, nlist * 64), replace=False)]
        index.cp.seed = seed
        index.train(sample)
        index.nprobe = min(nprobe, nlist)
    else:
        raise ConfigError(f"unknown index kind {kind!r}; use auto, flat, ivf or hnsw")
    index.add(x)
    if kind == "ivf":
        index.nprobe = calibrate_nprobe(index, x, start=min(nprobe, index.nlist), seed=seed)
    return index


def calibrate_nprobe(index, x, *, start: int = IVF_NPROBE, target: float = IVF_TARGET_RECALL,
                     k: int = 10, queries: int = 200, seed: int = 0) -> int:
    """The smallest ``nprobe`` (doubling from ``start``) whose recall@k reaches ``target``.

    Queries are a sample of the indexed vectors, scored against exact search (each query's
    own vector is set aside). How many lists a query must visit depends on how clustered
    the data is: well-separated clusters need few, overlapping ones many
    (benchmarks/expand.md measures both), so the index measures it once at build time.
    """
    import faiss
    import numpy as np

    n = x.shape[0]
    rng = np.random.default_rng(seed)
    qi = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    q = np.ascontiguousarray(x[qi])
    _, truth = faiss.knn(q, x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)

    def recall(found) -> float:
        hits = 0
        for own, t, f in zip(qi, truth, found):
            want = [i for i in t if i != own][:k]
            hits += len(set(want) & set(int(i) for i in f if i != own))
        return hits / (k * len(qi))

    nprobe = max(1, start)
    while True:
        index.nprobe = nprobe
        _, found = index.search(q, k + 1)
        if recall(found) >= target or nprobe >= min(index.nlist, IVF_MAX_NPROBE):
            return nprobe
        nprobe = min(nprobe * 2, index.nlist, IVF_MAX_NPROBE)


def index_kind(index) -> str:
    import faiss

    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if hasattr(index, "hnsw"):
        return "hnsw"
    return "flat"


def glyph_key(symbol: str, register: str | None = None) -> str:
    """Tensor name of a glyph vector: ``U+27C1`` or ``U+27C1/poetry`` (safetensors-safe)."""
    key = "U+" + "-".join(f"{ord(c):04X}" for c in symbol)
    return f"{key}/{register}" if register else key


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

    def __init__(self, index, meta: list[dict], vectors: dict, info: dict):
        self.index, self.meta, self.vectors, self.info = index, meta, vectors, info

    @staticmethod
    def directory(run: Path | str) -> Path:
        return Path(run) / "index"

    @classmethod
    def exists(cls, run: Path | str) -> bool:
        return (cls.directory(run) / "meta.json").is_file()

    @classmethod
    def load(cls, run: Path | str) -> "SceneIndex":
        import faiss
        from safetensors.numpy import load_file

        d = cls.directory(run)
        if not cls.exists(run):
            raise NotFound(f"run {run} has no scene index; build it with `glyph index build {run}`")
        meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        if meta.get("version") != INDEX_FORMAT:
            raise ModelError(f"{d} was written by another glyph version; rebuild it with "
                             f"`glyph index build {run}`")
        index = faiss.read_index(str(d / "scenes.faiss"))
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = meta["info"].get("nprobe", IVF_NPROBE)
        return cls(index, meta["scenes"], load_file(str(d / "vectors.safetensors")), meta["info"])

    def save(self, run: Path | str) -> Path:
        """Write ``RUN/index/`` atomically (a temp dir renamed into place)."""
        import shutil

        import faiss
        from safetensors.numpy import save_file

        d = self.directory(run)
        tmp = d.with_name(f".index.tmp-{time.time_ns()}")
        tmp.mkdir(parents=True)
        try:
            faiss.write_index(self.index, str(tmp / "scenes.faiss"))
            save_file(self.vectors, str(tmp / "vectors.safetensors"))
            (tmp / "meta.json").write_text(json.dumps(
                {"version": INDEX_FORMAT, "info": self.info, "scenes": self.meta},
                ensure_ascii=False, indent=1), encoding="utf-8")
            if d.exists():
                shutil.rmtree(d)
            tmp.rename(d)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return d

    # ------------------------------------------------------------ queries
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


# ---------------------------------------------------------------- building
def _unit(x):
    import numpy as np

    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def scene_vectors(gm, scene_list) -> "object":
    """Raw (uncentred) scene vectors: base hidden states mean-pooled over the scene text."""
    from . import scenes as sc

    pairs = [(sc.header(s.register, s.level, s.lang), s.text) for s in scene_list]
    means, _ = gm.hidden(pairs, adapter=None)
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


def glyph_vectors(gm, scene_list, unit_scene_vecs, method: str, registers, center) -> dict:
    """``{glyph_key: unit vector}`` for every glyph of the run, overall and per register.

    ``unit_scene_vecs`` are the centred, normalised scene vectors; ``center`` their mean.
    """
    import numpy as np

    from . import scenes as sc

    out = {}
    for sym, g in gm.glyphs.items():
        groups = {None: list(registers)} | {r: [r] for r in registers}
        for reg, regs in groups.items():
            if method == "centroid":
                rows = [i for i, s in enumerate(scene_list)
                        if s.glyph == sym and s.split == "train" and s.register in regs]
                if not rows:
                    continue
                v = unit_scene_vecs[rows].mean(0)
            elif method == "prompt":
                prompts = [(sc.prompt(sym, r, lv, lang), "") for r in regs for lv in sc.LEVELS
                           for lang in sorted({s.lang for s in scene_list})]
                _, last = gm.hidden(prompts, adapter=g["trigger"])
                v = _unit(last - center).mean(0)
            else:
                raise ConfigError(f"unknown glyph vectors {method!r}; use one of "
                                  f"{', '.join(GLYPH_VECTORS)}")
            out[glyph_key(sym, reg)] = _unit(np.asarray(v, dtype="float32"))
    return out


def build(run: Path | str, *, registry=None, corpus=None, glyph_method: str =
          DEFAULT_GLYPH_VECTORS, scene_method: str = DEFAULT_SCENE_VECTORS, kind: str = "auto",
          gm=None,
          log: Callable[[str], None] | None = None) -> SceneIndex:
    """Embed the scenes of the run's glyphs and its glyphs; save ``RUN/index/``; return it."""
    from . import registry as registry_mod
    from . import scenes as sc
    from .runtime import GlyphModel

    t0 = time.time()
    if glyph_method not in GLYPH_VECTORS:
        raise ConfigError(f"unknown --glyph-vectors {glyph_method!r}; use one of "
                          f"{', '.join(GLYPH_VECTORS)}")
    reg = registry if registry is not None else registry_mod.load()
    gm = gm or GlyphModel.load(run, registry=reg, with_index=False)
    corpus = corpus if corpus is not None else sc.load_corpus(reg)
    scene_list = [s for s in corpus.scenes if s.glyph in gm.glyphs]
    if not scene_list:
        raise NotFound(f"no scene of run {run}'s glyphs in the corpus; add scenes first")
    if log:
        log(f"embedding {len(scene_list)} scenes with the base model of {run}")
    raw = scene_vectors(gm, scene_list)
    center = raw.mean(0, keepdims=True)
    if scene_method == "style-centred":
        centred, styles = centre_by_style(raw, scene_list)
    elif scene_method == "mean-centred":
        centred, styles = raw - center, {}
    else:
        raise ConfigError(f"unknown scene vectors {scene_method!r}; use one of "
                          f"{', '.join(SCENE_VECTORS)}")
    unit = _unit(centred).astype("float32")
    vectors = glyph_vectors(gm, scene_list, unit, glyph_method, list(reg.registers), center)
    vectors["__center__"] = center[0].astype("float32")
    for k, v in styles.items():
        vectors[f"__center__/{k}"] = v.astype("float32")
    index = make_faiss_index(unit, kind=kind)
    info = {"glyph_vectors": glyph_method, "scene_vectors": scene_method,
            "kind": index_kind(index), "dim": int(unit.shape[1]), "scenes": len(scene_list),
            "corpus": corpus.fingerprint(), "run": str(Path(run).resolve()),
            "nprobe": getattr(index, "nprobe", None), "seconds": round(time.time() - t0, 1)}
    meta = [{"id": s.id, "glyphs": "".join(s.glyphs), "register": s.register, "level": s.level,
             "tier": s.tier, "lang": s.lang, "split": s.split, "text": s.text}
            for s in scene_list]
    idx = SceneIndex(index, meta, vectors, info)
    idx.save(run)
    gm.index = idx
    return idx
