"""FAISS indexes over unit vectors, chosen by size: exact up to ``EXACT_LIMIT``, approximate past it.

Index kinds are a table (:data:`KINDS`): ``flat`` (exact ``IndexFlatIP``), ``ivf`` (inverted
lists, ``nlist ≈ 4·√n``, ``nprobe`` calibrated at build time to recall@10 ≥ 0.95 on a sample)
and ``hnsw`` (graph, M=32); ``auto`` picks flat or IVF by size (the measured trade-off:
benchmarks/expand.md).

Example::

    >>> index = make_faiss_index(unit_vectors)          # doctest: +SKIP
    >>> index_kind(index)                               # doctest: +SKIP
    'flat'
"""
from __future__ import annotations

from ..errors import ConfigError

EXACT_LIMIT = 20_000         # exact search below: ~1 ms per query at this size
IVF_MIN_PER_LIST = 64        # IVF lists hold ~this many vectors or more
IVF_NPROBE = 24              # lists visited per query at least; raised at build time until
IVF_TARGET_RECALL = 0.95     # … recall@10 against exact search reaches this on a sample,
IVF_MAX_NPROBE = 1024        # … never past this (latency: benchmarks/expand.md)
HNSW_M, HNSW_EF_SEARCH = 32, 128


def _flat(x, seed: int, nprobe: int):
    import faiss

    return faiss.IndexFlatIP(x.shape[1])


def _hnsw(x, seed: int, nprobe: int):
    import faiss

    index = faiss.IndexHNSWFlat(x.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def _ivf(x, seed: int, nprobe: int):
    import faiss
    import numpy as np

    n, d = x.shape
    nlist = max(1, min(int(4 * n ** 0.5), n // IVF_MIN_PER_LIST))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(n, size=min(n, nlist * 64), replace=False)]
    index.cp.seed = seed
    index.train(sample)
    index.nprobe = min(nprobe, nlist)
    return index


#: index kinds: name → ``(vectors, seed, nprobe) -> empty (trained) FAISS index``
KINDS = {"flat": _flat, "ivf": _ivf, "hnsw": _hnsw}


def make_faiss_index(vectors, *, kind: str = "auto", exact_limit: int = EXACT_LIMIT,
                     nprobe: int = IVF_NPROBE, seed: int = 0):
    """An inner-product FAISS index over unit ``vectors`` (float32 ``[n, d]``).

    ``kind``: one of :data:`KINDS`, or ``auto``: flat up to ``exact_limit`` vectors, IVF past
    it. An IVF index then raises ``nprobe`` (from ``nprobe``) by :func:`calibrate_nprobe`
    until recall@10 reaches 0.95 on a sample.
    """
    import numpy as np

    x = np.ascontiguousarray(vectors, dtype="float32")
    if kind == "auto":
        kind = "flat" if x.shape[0] <= exact_limit else "ivf"
    if kind not in KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; use auto, {', '.join(KINDS)}")
    index = KINDS[kind](x, seed, nprobe)
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
