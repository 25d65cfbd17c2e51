"""The main job on the embedded default: registry → tokenizer → tiny base → train.

``glyph demo`` runs it; the README's first command calls it on a fresh machine.

Example::

    >>> run(Path("/tmp/glyph-demo"))     # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from . import paths


def run(out: Path | None = None, *, echo: Callable[[str], None] = print, steps: int | None = None,
        train: bool = True) -> Path:
    """Run the default pipeline into ``out`` (default ``$GLYPH_HOME/demo``); return ``out``."""
    from . import registry, scenes
    from . import tokenizer as tk
    from .project import validate_project

    t0 = time.time()
    out = Path(out) if out else paths.home() / "demo"
    out.mkdir(parents=True, exist_ok=True)

    echo("== 1. registry and scene corpus")
    for line in validate_project():
        echo(f"  {line}")
    reg = registry.load()

    echo("== 2. Qwen3 tokenizer (rebuilt offline) + glyph tokens")
    report = tk.build_glyph_tokenizer(reg.active(), out / "tokenizer")
    echo(f"  {'glyph':<6}{'name':<12}{'tokens before':>14}{'id after':>10}  kind")
    for r in report.rows:
        echo(f"  {r.symbol:<6}{r.name:<12}{r.cost_before:>14}{r.id:>10}  {r.kind}")
    tok = tk.load(out / "tokenizer")
    sample = "⟁ then 🜂: breathe 🫁 — дыши."
    pieces = tk.tokenize(sample, tok)
    echo(f"  {sample!r} → {len(pieces)} tokens: " + " ".join(f"{p}[{i}]" for i, p in pieces))
    if not train:
        return out

    echo("== 3. embedded base: tiny Qwen3ForCausalLM warmed up on the glyph-free corpus")
    from . import model

    corpus = scenes.load_corpus(reg)
    base_dir = model.default_base_dir(corpus, log=lambda m: echo(f"  {m}"))
    echo(f"  base: {base_dir}")

    echo("== 4. train glyph rows + one LoRA adapter per trigger")
    from .train import TrainConfig, train as run_train

    cfg = TrainConfig(out=str(out / "run"), steps=steps)
    res = run_train(cfg, overwrite=True, log=lambda m: echo(f"  {m}"))
    m = res.metrics
    echo(f"  {res.steps} steps in {m['seconds']}s; held-out loss {m['heldout_loss']:.3f} on "
         f"{m['heldout_examples']} unseen scenes → {res.out}")
    echo(f"done in {time.time() - t0:.0f}s")
    return out
