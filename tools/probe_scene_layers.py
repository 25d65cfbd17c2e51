"""Which layer's hidden states make the best scene vectors for the index?

The index used to embed a scene as the mean of the base's *last* hidden states over its text.
Middle layers of a language model often hold more of what a text is about and less of what
token comes next. (Since this probe, the index embeds scenes at four depths, whitens each
layer on its own and joins them: ``glyph.serving.vectors.scene_space``.)
This probe runs every corpus scene (header + text, the index's pairs) once
through the untouched base with all hidden states, mean-pools each probed layer over the text
tokens, and reports per-scene retrieval of the held-out scenes (is the nearest glyph centroid
of training scenes the scene's own?) with the index's recipes, style-centred and
glyph-whitened, per layer.

Usage::

    python tools/probe_scene_layers.py --base "$GGUF" --out benchmarks/scene_layers.md
"""
from __future__ import annotations

import time

from _probe import corpus_scenes, heldout_accuracy, load_probe_base, probe_args

LAYERS = (4, 8, 12, 16, 20, -1)


def layer_means(model, tok, pairs, layers, batch_size: int = 16):
    """``{layer: (n, d) float32}``: hidden states mean-pooled over each pair's text tokens."""
    import numpy as np
    import torch

    rows, spans = [], []
    for prefix, text in pairs:
        p = tok.encode(prefix, add_special_tokens=False)
        t = tok.encode(text, add_special_tokens=False)
        rows.append(p + t)
        spans.append((len(p), len(p) + len(t)))
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = {lay: [None] * len(rows) for lay in layers}
    pad = tok.eos_token_id if tok.eos_token_id is not None else 0
    for i in range(0, len(order), batch_size):
        chunk = order[i: i + batch_size]
        n = max(len(rows[j]) for j in chunk)
        ids = torch.full((len(chunk), n), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), n), dtype=torch.long)
        for r, j in enumerate(chunk):
            ids[r, : len(rows[j])] = torch.tensor(rows[j])
            mask[r, : len(rows[j])] = 1
        with torch.no_grad():
            hs = model.model(input_ids=ids, attention_mask=mask,
                             output_hidden_states=True).hidden_states
        for lay in layers:
            h = hs[lay].float()
            for r, j in enumerate(chunk):
                a, b = spans[j]
                out[lay][j] = h[r, a:b].mean(0).numpy()
    return {lay: np.stack(v).astype("float32") for lay, v in out.items()}


def scene_accuracy(vectors, scenes, recipe: str) -> tuple[float, dict]:
    """Held-out per-scene retrieval with one of the index's scene-vector recipes."""
    from glyph.serving.vectors import SCENE_VECTORS

    space = SCENE_VECTORS[recipe](vectors, scenes)
    return heldout_accuracy(space.vectors, scenes), space.notes


def main() -> None:
    a = probe_args(__doc__)
    from glyph.corpus import scenes as sc

    t0 = time.time()
    model, tok = load_probe_base(a.base)
    scene_list = corpus_scenes()
    pairs = [(sc.header(s.register, s.level, s.lang), s.text) for s in scene_list]
    n_layers = model.config.num_hidden_layers
    layers = [lay for lay in LAYERS if lay == -1 or lay < n_layers]
    means = layer_means(model, tok, pairs, layers)
    embed_s = time.time() - t0
    lines = ["# Which layer makes the best scene vectors", "",
             f"Command: `python tools/probe_scene_layers.py --base {a.base} --out {a.out}` "
             f"({embed_s / 60:.1f} min to embed {len(pairs)} scenes; every level and tier).", "",
             "Per-scene retrieval of the held-out scenes: is the nearest glyph centroid "
             "(mean of the glyph's training scene vectors) the scene's own? Scene vector = "
             "the layer's hidden states mean-pooled over the scene text after its header, "
             "then the index's recipe. The base tokenizer is used (the index uses the run's, "
             "which only differs on glyph symbols inside scene texts). Chance 1/#glyphs.", "",
             "| layer | style-centred | glyph-whitened | shrinkage |", "|---:|---:|---:|---:|"]
    for lay in layers:
        plain, _ = scene_accuracy(means[lay], scene_list, "style-centred")
        white, notes = scene_accuracy(means[lay], scene_list, "glyph-whitened")
        name = f"{n_layers} (last, the index's)" if lay == -1 else str(lay)
        shrink = (notes.get("whitening") or {}).get("shrinkage", "")
        lines.append(f"| {name} | {plain:.3f} | {white:.3f} | {shrink} |")
        print(lines[-1], flush=True)
    a.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
