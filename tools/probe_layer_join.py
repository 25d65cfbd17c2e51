"""Joined layers against single layers for glyph-whitened scene vectors, by nested CV.

Reads the scene vectors a ``glyph index build`` cached (``$GLYPH_HOME/vectors/<base>-v2-L…/``,
every layer the index embeds) and compares, for the whitened vectors of each layer alone and
of layers joined (unit vectors concatenated):

- **nested 5-fold cross-validation on the training scenes**: the whitening is refitted on
  each fold's training part, at the shrinkage the layer's own fit picks — what a choice
  between recipes may look at;
- **held-out per-scene retrieval** (nearest glyph centroid of training scenes) — what
  ``glyph eval`` reports, shown beside it, never used to choose.

Usage (the registry and scenes of the run whose index filled the cache)::

    python tools/probe_layer_join.py "$GLYPH_HOME/vectors/qwen-0ca1…-v2-L8.12.16.24"
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from _probe import corpus_scenes, heldout_accuracy


def load(cache: Path):
    """The cached scene vectors ``[n, layers, d]`` of the corpus scenes, their layers, scenes."""
    import numpy as np

    from glyph.corpus import scenes as sc
    from glyph.serving.vector_cache import _key

    layers = [int(x) for x in cache.name.rsplit("-L", 1)[1].split(".")]
    row = {k: i for i, k in enumerate(json.loads((cache / "keys.json").read_text()))}
    means = np.load(cache / "means.npy", allow_pickle=False)
    scene_list = corpus_scenes()
    at = [row.get(_key(sc.header(s.register, s.level, s.lang), s.text)) for s in scene_list]
    if any(a is None for a in at):
        raise SystemExit(f"{cache}: {sum(a is None for a in at)} scenes are not cached; build "
                         "the index of a run on this registry and scenes first")
    return means[at].astype("float64"), layers, scene_list


def main() -> None:
    import numpy as np

    from glyph.serving import whitening
    from glyph.serving.vectors import centre_by_style, unit
    from glyph.serving.whitening import FOLDS, _accuracy, _within

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cache", type=Path, help="a scene-vector cache directory (…-v2-L…)")
    a = ap.parse_args()
    x, layers, scenes = load(a.cache)
    labels = np.array([s.glyph for s in scenes])
    train = np.array([s.split == "train" for s in scenes])
    xs, shrink, whole = {}, {}, {}
    for i, lay in enumerate(layers):
        xs[lay] = centre_by_style(x[:, i], scenes)[0]
        w = whitening.fit(xs[lay], labels, train)
        shrink[lay], whole[lay] = w.shrinkage, unit(xs[lay] @ w.transform)
    rows = np.flatnonzero(train)
    fold_of = np.arange(len(rows)) % FOLDS  # the folds whitening.fit uses
    combos = [c for n in range(1, len(layers) + 1) for c in itertools.combinations(layers, n)]
    cv = dict.fromkeys(combos, 0.0)
    for f in range(FOLDS):
        fit, test = np.zeros(len(x), bool), np.zeros(len(x), bool)
        fit[rows[fold_of != f]], test[rows[fold_of == f]] = True, True
        z = {}
        for lay in layers:
            values, vecs = _within(xs[lay][fit], labels[fit])
            z[lay] = unit(xs[lay] @ vecs / np.sqrt(values + shrink[lay] * values.mean()))
        for c in combos:
            cv[c] += _accuracy(np.concatenate([z[lay] for lay in c], 1), labels, fit, test) / FOLDS
    print(f"{len(scenes)} scenes ({train.sum()} training), layers {layers}")
    print("| layers | nested CV (training scenes) | held-out per-scene retrieval |")
    print("|---|---:|---:|")
    for c in sorted(combos, key=lambda c: (len(c) not in (1, len(layers)), -cv[c])):
        held = heldout_accuracy(np.concatenate([whole[lay] for lay in c], 1), scenes)
        print(f"| {'+'.join(map(str, c))} | {cv[c]:.3f} | {held:.3f} |")


if __name__ == "__main__":
    main()
