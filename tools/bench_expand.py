"""Benchmark retrieval and decompression → benchmarks/expand.md.

Three parts, each runnable alone:

- ``faiss``: query latency (1 OpenMP thread, one query at a time) p50/p99 and recall@10
  against exact search, at 10k / 100k / 1M synthetic *clustered* unit vectors of the default
  model's width (128), for exact, IVF (nprobe sweep) and HNSW (efSearch sweep) indexes, and
  the index ``glyph.serving.faiss_index.make_faiss_index`` picks automatically;
- ``vectors``: which scene / glyph vectors retrieve held-out scenes best (per-scene: the
  nearest glyph vector is the scene's own; recall@1/5 over the held-out pool) on the default
  run or ``--run`` (a real base's run gets its own section) — the measurement behind the
  index's default;
- ``expand``: warm ``expand`` latency split into retrieval and generation, and a batch of 16
  mixed-adapter prompts in one pass vs the same prompts one by one.

    python tools/bench_expand.py --parts faiss,vectors,expand --out benchmarks/expand.md

The run for ``vectors`` / ``expand`` is the default run (``glyph demo`` makes it) or ``--run``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SIZES = (10_000, 100_000, 1_000_000)
DIM = 128


NOISE = 0.6  # per-dimension noise around a cluster centre (centres are N(0, 1) per dimension)


def clustered(n: int, d: int = DIM, *, clusters: int | None = None, seed: int = 0,
              noise: float = NOISE):
    """Unit vectors around ``clusters`` centres (like scenes around glyphs and registers)."""
    rng = np.random.default_rng(seed)
    clusters = clusters or max(10, n // 200)
    centres = rng.normal(size=(clusters, d)).astype("float32")
    x = np.empty((n, d), dtype="float32")
    for i in range(0, n, 100_000):  # in chunks: keeps peak memory low at 1M
        m = min(100_000, n - i)
        x[i: i + m] = centres[rng.integers(0, clusters, m)] + noise * rng.normal(size=(m, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, centres


def queries(centres, q: int, seed: int = 1, noise: float = NOISE):
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, len(centres), q)] + noise * rng.normal(size=(q, centres.shape[1]))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def latency(index, q) -> tuple[float, float, np.ndarray]:
    """p50, p99 in ms of single-query searches (k=10), and the result ids."""
    times, ids = [], []
    for v in q:
        t = time.perf_counter()
        _, i = index.search(v.reshape(1, -1), 10)
        times.append((time.perf_counter() - t) * 1000)
        ids.append(i[0])
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1], np.stack(ids)


def recall(got, want) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]))


def bench_faiss(sizes, n_queries: int, noise: float = NOISE) -> list[dict]:
    import faiss

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from glyph.serving.faiss_index import index_kind, make_faiss_index

    rows = []
    for n in sizes:
        x, centres = clustered(n, noise=noise)
        q = queries(centres, n_queries, noise=noise)

        def measure(label: str, index, build_s: float) -> None:
            p50, p99, got = latency(index, q)
            rows.append(dict(n=n, index=label, build_s=build_s, p50=p50, p99=p99,
                             recall=recall(got, truth)))
            print(rows[-1], file=sys.stderr, flush=True)

        def build(kind: str):
            faiss.omp_set_num_threads(os.cpu_count() or 1)  # build with all cores …
            t = time.perf_counter()
            index = make_faiss_index(x, kind=kind)
            faiss.omp_set_num_threads(1)                   # … query with one
            return index, time.perf_counter() - t

        exact, _ = build("flat")
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        _, truth = exact.search(q, 10)  # ground truth, batched, all cores
        faiss.omp_set_num_threads(1)
        measure("flat (exact)", exact, 0.0)
        del exact
        ivf, t_ivf = build("ivf")
        for nprobe in (8, 24, 96, 384):
            ivf.nprobe = nprobe
            measure(f"IVF{ivf.nlist} nprobe={nprobe}", ivf, t_ivf)
        del ivf
        hnsw, t_hnsw = build("hnsw")
        for ef in (32, 64, 128):
            hnsw.hnsw.efSearch = ef
            measure(f"HNSW32 efSearch={ef}", hnsw, t_hnsw)
        del hnsw
        auto, t_auto = build("auto")
        label = index_kind(auto) + (f" nprobe={auto.nprobe} (calibrated)"
                                    if index_kind(auto) == "ivf" else "")
        measure(f"**auto → {label}**", auto, t_auto)
        del auto, x
    return rows


def bench_vectors(run: Path, glyph_methods: list[str]) -> tuple[str, list[dict]]:
    """Held-out retrieval quality of each scene- and glyph-vector method on a trained run."""
    from glyph.corpus import scenes
    from glyph.evaluation.metrics import retrieval, scene_retrieval
    from glyph.serving import vectors
    from glyph.serving.service import GlyphService
    from glyph.vocab import registry

    reg = registry.load()
    corpus = scenes.load_corpus(reg)
    svc = GlyphService.load(run, registry=reg, with_index=False)
    held = [s for s in corpus.select(split="heldout") if s.glyph in svc.model.glyphs]
    syms = sorted(svc.model.glyphs)
    rows = []
    for scene_method in vectors.SCENE_VECTORS:
        for method in glyph_methods:
            t = time.perf_counter()
            idx = svc.build_index(corpus, glyph_method=method, scene_method=scene_method)
            r = retrieval(idx, held, syms)["overall"]
            per_scene = scene_retrieval(idx, held, syms)
            rows.append(dict(scene=scene_method, method=method,
                             scenes=per_scene["overall"]["scenes"],
                             scene_accuracy=per_scene["overall"]["accuracy"],
                             by=per_scene["by_style"],
                             shrinkage=(idx.info.get("whitening") or {}).get("shrinkage"),
                             layers=idx.info.get("layers"),
                             cv=(idx.info.get("whitening") or {}).get("cv_scene_accuracy"),
                             seconds=time.perf_counter() - t, **r))
            print(rows[-1], file=sys.stderr, flush=True)
    svc.build_index(corpus)  # leave the default behind
    return svc.run.manifest().base.name, rows


def bench_expand(run: Path, repeats: int) -> dict:
    import torch

    from glyph.serving.service import GlyphService
    from glyph.vocab import registry

    torch.set_num_threads(os.cpu_count() or 1)
    gm = GlyphService.load(run, registry=registry.load())
    gm.expand("⟁", register="poetry")  # warm
    ret, gen = [], []
    for i in range(repeats):
        t = time.perf_counter()
        hits = gm.neighbors("⟁", k=3, register="poetry")
        t1 = time.perf_counter()
        gm.generate([f"⟁\n⟨poetry · {hits[0].level} · {hits[0].lang}⟩\n"], seed=i,
                    max_new_tokens=64, min_new_tokens=64)
        t2 = time.perf_counter()
        ret.append((t1 - t) * 1000)
        gen.append((t2 - t1) * 1000)
    syms = list(gm.model.glyphs)
    prompts = [f"{syms[i % len(syms)]}\n⟨{['poetry', 'logic', 'body', 'interface'][i % 4]} · "
               f"meso · en⟩\n" if i % 5 else "plain text without glyphs," for i in range(16)]
    kw = dict(max_new_tokens=64, min_new_tokens=64, temperature=0)
    gm.generate(prompts[:2], **kw)  # warm
    t = time.perf_counter()
    batch = gm.generate(prompts, **kw)
    t_batch = time.perf_counter() - t
    t = time.perf_counter()
    for p in prompts:
        gm.generate([p], **kw)
    t_seq = time.perf_counter() - t
    return dict(retrieval_ms=sorted(ret)[len(ret) // 2], generation_ms=sorted(gen)[len(gen) // 2],
                repeats=repeats, batch_s=t_batch, sequential_s=t_seq, prompts=len(prompts),
                new_tokens=64, adapters=sorted({t for g in batch for t in g.triggers}) + ["base"])


def _base_label(base: str) -> str:
    """Section titles: the embedded default by its usual name, a real base by its file."""
    return "the default run" if "embedded default" in base else f"a run on {Path(base).name}"


def write(path: Path, args, faiss_rows, vec_rows, exp) -> None:
    import importlib.metadata as md

    old = path.read_text(encoding="utf-8") if path.exists() else ""
    sections = {}
    if old:  # keep the parts not re-run
        for chunk in old.split("\n## ")[1:]:
            title = chunk.split("\n", 1)[0]
            sections[title] = "## " + chunk.rstrip() + "\n"
    cpu = platform.processor() or platform.machine()
    head = [
        "# Retrieval and decompression benchmark", "",
        "Command: `python tools/bench_expand.py --parts faiss,vectors,expand --out "
        "benchmarks/expand.md` (each section names the part that produced it)", "",
        f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, faiss-cpu "
        f"{md.version('faiss-cpu')}, torch {md.version('torch')}, peft {md.version('peft')}.", "",
    ]
    if faiss_rows:
        title = "FAISS: latency and recall@10 vs exact search" + (
            f" (harder data: noise {args.noise})" if args.noise != NOISE else "")
        lines = [f"## {title}", "",
                 f"Command: `python tools/bench_expand.py --parts faiss --sizes {args.sizes}"
                 + (f" --noise {args.noise}" if args.noise != NOISE else "") + "`", "",
                 f"{args.queries} queries, one at a time with 1 OpenMP thread (the `glyph "
                 "neighbors` case); build with all cores. Data: unit vectors of width 128 around "
                 f"n/200 Gaussian centres, noise {args.noise} per dimension around them (centres "
                 "N(0, 1): 0.6 is well separated, 1.5 overlaps heavily); "
                 "queries from the same distribution, not in the index. Targets at 1M: "
                 "p99 ≤ 5 ms at recall@10 ≥ 0.95.", "",
                 "| scenes | index | build (s) | p50 (ms) | p99 (ms) | recall@10 |",
                 "|---:|---|---:|---:|---:|---:|"]
        for r in faiss_rows:
            lines.append(f"| {r['n']:,} | {r['index']} | {r['build_s']:.1f} | {r['p50']:.3f} | "
                         f"{r['p99']:.3f} | {r['recall']:.3f} |")
        sections[title] = "\n".join(lines) + "\n"
    if vec_rows:
        base, rows = vec_rows
        title = f"Which vectors: retrieval of held-out scenes on {_base_label(base)}"
        lines = [f"## {title}", "",
                 "Command: `python tools/bench_expand.py --parts vectors"
                 + (f" --run {args.run}" if args.run else "")
                 + (f" --glyph-vectors {args.glyph_vectors}"
                    if args.glyph_vectors != "centroid,prompt" else "") + "`", "",
                 "Scene vectors: mean of the base model's hidden states over the scene "
                 "text, centred on the mean of the scene's style group (language · register · "
                 "level: `style-centred`) or on the corpus mean (`mean-centred`), both at the "
                 "last layer; "
                 "`glyph-whitened` = at each layer of the layers column (1/3, 1/2, 2/3 and all "
                 "of the depth), style-centred, then whitened by the covariance of training "
                 "scenes around their glyph's mean, shrunk towards its mean variance by the "
                 "amount 5-fold cross-validation on the training scenes picks (the shrinkage "
                 "column), normalised, and the layers joined. Glyph vectors: `centroid` = mean of the "
                 "glyph's *training* scene vectors; `prompt` = hidden state after `glyph + "
                 "header` under the glyph's adapter, averaged over registers, levels and "
                 "languages. Rsc: for each held-out scene, is the nearest glyph vector its own "
                 "(`glyph eval`'s per-scene retrieval; chance 1/#glyphs). recall@k: for each "
                 "glyph, its own held-out scenes in the top k of all held-out scenes / min(k, "
                 "#own), macro average over glyphs. Build: seconds to build the index, scene "
                 "vectors cached.", "",
                 "| scene vectors | glyph vectors | layers | shrinkage | Rsc | recall@1 "
                 "| recall@5 | chance@1 | chance@5 | build (s) |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            layers = "+".join(map(str, r["layers"] or ["last"]))
            shrink = r["shrinkage"]
            if isinstance(shrink, dict):  # per layer
                shrink = " ".join(sorted({f"{v:g}" for v in shrink.values()}))
            lines.append(f"| {r['scene']} | {r['method']} | {layers} | {shrink or ''} | "
                         f"{r['scene_accuracy']:.3f} | {r['recall@1']:.3f} | "
                         f"{r['recall@5']:.3f} | {r['chance@1']:.3f} | {r['chance@5']:.3f} | "
                         f"{r['seconds']:.1f} |")
        lines.append("")
        if isinstance(rows[0]["cv"], dict):
            lines += ["Cross-validated accuracy on the training scenes of each layer alone "
                      "(first row): " + ", ".join(f"layer {k} {v:.3f}"
                                                  for k, v in rows[0]["cv"].items()) + ".", ""]
        lines += [f"{rows[0]['scenes']} held-out scenes. Rsc of the first row, by"]
        for attr, groups in rows[0]["by"].items():
            lines.append(f"- {attr}: " + ", ".join(f"{k} {g['accuracy']:.2f} ({g['scenes']})"
                                                   for k, g in groups.items()))
        sections[title] = "\n".join(lines) + "\n"
    if exp:
        lines = ["## expand: latency and mixed-adapter batches (default run)", "",
                 f"Warm `GlyphModel`, all cores. `expand ⟁ --register poetry`, median of "
                 f"{exp['repeats']}: retrieval {exp['retrieval_ms']:.2f} ms, generation of 64 "
                 f"tokens {exp['generation_ms']:.0f} ms.", "",
                 f"{exp['prompts']} prompts mixing adapters ({', '.join(exp['adapters'])}), 64 "
                 "new tokens each, greedy:", "",
                 "| how | seconds | prompts/s | speed-up |", "|---|---:|---:|---:|",
                 f"| one batch (peft `adapter_names`) | {exp['batch_s']:.2f} | "
                 f"{exp['prompts'] / exp['batch_s']:.2f} | "
                 f"{exp['sequential_s'] / exp['batch_s']:.2f}× |",
                 f"| one by one | {exp['sequential_s']:.2f} | "
                 f"{exp['prompts'] / exp['sequential_s']:.2f} | 1.00× |", "",
                 "Target: batch of 16 ≥ 3× the throughput of sequential calls."]
        sections["expand: latency and mixed-adapter batches (default run)"] = \
            "\n".join(lines) + "\n"
    path.write_text("\n".join(head) + "\n" + "\n".join(sections.values()), encoding="utf-8")
    print(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="faiss,vectors,expand")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--noise", type=float, default=NOISE)
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--glyph-vectors", default="centroid,prompt",
                    help="glyph vector methods for the vectors part (prompt runs the model)")
    ap.add_argument("--out", default="benchmarks/expand.md")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from glyph import paths

    run = a.run or paths.default_run()
    faiss_rows = bench_faiss([int(s) for s in a.sizes.split(",")], a.queries, a.noise) \
        if "faiss" in parts else None
    vec_rows = bench_vectors(run, a.glyph_vectors.split(",")) if "vectors" in parts else None
    exp = bench_expand(run, a.repeats) if "expand" in parts else None
    write(Path(a.out), a, faiss_rows, vec_rows, exp)


if __name__ == "__main__":
    main()
