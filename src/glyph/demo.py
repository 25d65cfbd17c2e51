"""The main job on the embedded default, end to end, on a fresh machine.

registry → tokenizer → tiny Qwen3 base → train glyph rows + LoRA triggers → FAISS index →
``expand ⟁`` in two registers and one free-text prompt → evaluation report.
``glyph demo`` runs it; the README's first command calls it. Everything lands in the default
run (``$GLYPH_RUN`` or ``$GLYPH_HOME/runs/default``), so ``glyph expand ⟁`` works after it.

Example::

    >>> run()     # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from . import paths

FREE_TEXT = "🜂 and 🫁 at dawn:"


def _tokenizer(reg, echo) -> None:
    from .vocab import sources
    from .vocab import tokenizer as tk

    tok_dir = paths.home() / "demo-tokenizer"
    rows = tk.build_glyph_tokenizer(reg.glyphs, tok_dir, fam=reg.family).rows
    echo(f"  {'glyph':<6}{'name':<12}{'tokens before':>14}{'id after':>10}  kind")
    for r in rows:
        echo(f"  {r.symbol:<6}{r.name:<12}{r.cost_before:>14}{r.id:>10}  {r.kind}")
    sample = "⟁ then 🜂: breathe 🫁 — дыши."
    pieces = tk.tokenize(sample, sources.load(tok_dir))
    echo(f"  {sample!r} → {len(pieces)} tokens (␣ = space):")
    echo("    " + " ".join(f"{p.replace(' ', '␣')}[{i}]" for i, p in pieces))


def _expand(svc, echo) -> None:
    for register in ("poetry", "logic"):
        e = svc.expand("⟁", register=register, k=3, seed=0)
        echo(f"\n  $ glyph expand ⟁ --register {register}")
        echo(f"  ── ⟁ → {e.register} · {e.level} · {e.lang}  (adapter {e.adapter}; nearest "
             f"scenes {', '.join(f'{h.scene_id} ({h.score:.2f})' for h in e.scenes)})")
        for line in e.text.splitlines():
            echo(f"  {line}")
    g = svc.generate([FREE_TEXT], seed=0)[0]
    echo(f"\n  $ glyph expand {FREE_TEXT!r}")
    echo(f"  ── adapters {' + '.join(g.triggers)}")
    for line in (g.prompt + g.text).splitlines():
        echo(f"  {line}")


def _evaluate(svc, reg, corpus, out: Path, eval_scenes: int, echo) -> None:
    from .evaluation.metrics import evaluate, write_metrics
    from .evaluation.report import table, write_report

    metrics = evaluate(out, registry=reg, corpus=corpus, svc=svc, max_scenes=eval_scenes)
    write_metrics(metrics, out / "eval")
    report = write_report(metrics, out / "eval",
                          command=f"glyph eval {out} --max-scenes {eval_scenes}")
    for line in table(metrics).splitlines():
        echo(f"  {line}")
    echo(f"  report with plots: {report}")


def run(out: Path | None = None, *, echo: Callable[[str], None] = print, steps: int | None = None,
        eval_scenes: int | None = 112, progress: bool = True) -> Path:
    """Run the default pipeline into the run directory ``out``; return it."""
    from .corpus import scenes
    from .corpus.project import validate_project
    from .model.tiny import default_base_dir
    from .serving.service import GlyphService
    from .training.config import TrainConfig
    from .training.recipe import train
    from .vocab import registry

    t0 = time.time()
    out = Path(out) if out else paths.default_run()

    def stage(title: str) -> None:
        echo(f"\n== {title}  [{time.time() - t0:.0f}s]")

    stage("1. registry and scene corpus")
    for line in validate_project():
        echo(f"  {line}")
    reg = registry.load()
    corpus = scenes.load_corpus(reg)
    stage("2. Qwen3's tokenizer, rebuilt offline, + one token per glyph")
    _tokenizer(reg, echo)
    stage("3. embedded base: a tiny Qwen3ForCausalLM warmed up on the glyph-free corpus")
    echo(f"  base: {default_base_dir(corpus, log=lambda m: echo(f'  {m}'))}")
    stage("4. train glyph rows + one LoRA adapter per trigger")
    res = train(TrainConfig(out=out, steps=steps), overwrite=True,
                log=lambda m: echo(f"  {m}"), progress=progress)
    m = res.metrics
    echo(f"  {res.steps} steps in {m['seconds']}s; held-out loss {m['heldout_loss']:.3f} on "
         f"{m['heldout_examples']} unseen scenes → {res.out}")
    stage("5. scene index (FAISS)")
    svc = GlyphService.load(out, registry=reg, with_index=False)
    idx = svc.build_index(corpus)
    echo(f"  {idx.info['scenes']} scenes, {idx.info['kind']} index, glyph vectors "
         f"{idx.info['glyph_vectors']}")
    stage("6. decompression: glyph expand")
    _expand(svc, echo)
    if eval_scenes:
        stage("7. does it work? glyph eval on held-out scenes")
        _evaluate(svc, reg, corpus, out, eval_scenes, echo)
    echo(f"\ndone in {time.time() - t0:.0f}s; try `glyph expand 🫁 --register body` or "
         f"`glyph neighbors ☿`")
    return out
