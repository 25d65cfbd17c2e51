"""What the probe tools share: their command line, the base they probe, the corpus scenes they
embed and how they score per-scene retrieval (``tools/probe_*.py`` import it from beside them).

Example::

    >>> a = probe_args(__doc__)                         # doctest: +SKIP
    >>> model, tok = load_probe_base(a.base)            # doctest: +SKIP
"""
from __future__ import annotations

import argparse
from pathlib import Path


def probe_args(doc: str) -> argparse.Namespace:
    """``--base`` (what to probe) and ``--out`` (the markdown to write)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--base", required=True, help=".gguf file, model directory or hub id")
    ap.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return ap.parse_args()


def load_probe_base(base: str):
    """``(model, tokenizer)`` of ``base``, loaded as glyph loads bases (float32, eval mode)."""
    from transformers import AutoTokenizer

    from glyph.model.base import load_base

    model, info = load_base(base, log=print)
    return model, AutoTokenizer.from_pretrained(info.path)


def corpus_scenes() -> list:
    """The corpus scenes of the registry's active glyphs, in corpus order (the index's)."""
    from glyph.corpus import scenes as sc
    from glyph.vocab import registry

    reg = registry.load()
    active = {g.symbol for g in reg.active()}
    return [s for s in sc.load_corpus(reg).scenes if s.glyph in active]


def heldout_accuracy(vectors, scenes) -> float:
    """Per-scene retrieval as the index scores it: is each held-out scene's nearest glyph
    centroid (unit mean of the glyph's unit training-scene vectors) its own glyph?"""
    import numpy as np

    from glyph.serving.vectors import unit

    u = unit(np.asarray(vectors))
    glyph = np.array([s.glyph for s in scenes])
    train = np.array([s.split == "train" for s in scenes])
    held = np.array([s.split == "heldout" for s in scenes])
    names = sorted(set(glyph))
    cents = unit(np.stack([u[train & (glyph == g)].mean(0) for g in names]))
    return float((np.array(names)[(u[held] @ cents.T).argmax(1)] == glyph[held]).mean())
