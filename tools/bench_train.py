"""Benchmark the glyph trainer against plain peft setups on the embedded default base.

Variants, same model (the embedded tiny Qwen3), same batches (starter corpus, batch 8):

- ``glyph``: our trainer's step (LoRA + trainable glyph rows, logits only where labels exist,
  glyph rows read straight from peft's delta parameters, exact softmax that skips the head's
  all-zero rows — the embedded default has 140k of them);
- ``glyph-dense``: the same without skipping zero rows (a real checkpoint has none);
- ``peft-naive``: peft LoRA + ``trainable_token_indices`` used as documented: ``model(**batch,
  labels=…)`` (logits over every position; peft index_copies the embedding every forward);
- ``modules-to-save``: peft LoRA + ``modules_to_save=["embed_tokens", "lm_head"]``.

Each variant runs in its own subprocess so peak RSS is its own. Then the init comparison:
steps to reach a target held-out loss for ``mean`` / ``meaning`` / ``random``.

    python tools/bench_train.py --steps 6 --init-steps 60 --out benchmarks/train.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("glyph", "glyph-dense", "peft-naive", "modules-to-save")


def _setup(variant: str):
    import torch
    from peft import LoraConfig, get_peft_model

    from glyph import model as mdl
    from glyph import registry, scenes
    from glyph import tokenizer as tk
    from glyph.forward import GlyphLM, collate
    from glyph.train import LORA_TARGETS, build_examples, schedule

    torch.manual_seed(0)
    reg = registry.load()
    corpus = scenes.load_corpus(reg)
    base_dir = mdl.default_base_dir(corpus)
    tok = tk.load(tk.project_tokenizer())
    examples = build_examples(reg, corpus.select(split="train"), tok, 192)
    # one trigger for all variants so the comparison is like for like
    trig = examples[0].trigger
    exs = [e for e in examples if e.trigger == trig]
    plan = schedule(exs, 8, 0, steps=50, epochs=1)
    base, info = mdl.load_base(str(base_dir))
    ids = sorted({g.id for g in reg.active() if g.trigger == trig})
    if variant == "modules-to-save":
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules=list(LORA_TARGETS),
                         modules_to_save=["embed_tokens", "lm_head"], ensure_weight_tying=True)
    else:
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules=list(LORA_TARGETS),
                         trainable_token_indices=ids)
    pm = get_peft_model(base, cfg, adapter_name=trig)
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    glm = None
    if variant == "glyph":
        glm = GlyphLM(pm, info.tied)
    elif variant == "glyph-dense":  # what a real checkpoint gets: no all-zero head rows to skip
        glm = GlyphLM(pm, info.tied, compact=False)

    def step(k: int) -> float:
        _, idx = plan[k % len(plan)]
        x, mask, labels = collate([exs[i] for i in idx])
        if glm is not None:
            loss, _ = glm(x, mask, labels, trig)
        else:
            loss = pm(input_ids=x, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return pm, step, trig


def run_variant(variant: str, steps: int) -> dict:
    """Runs inside a subprocess: time `steps` steps after one warm-up step; checkpoint size."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    pm, step, trig = _setup(variant)
    step(0)  # warm-up (allocations, first-call overheads)
    times = []
    for k in range(1, steps + 1):
        t = time.perf_counter()
        step(k)
        times.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as d:
        kw = {} if variant == "modules-to-save" else {"save_embedding_layers": False}
        pm.save_pretrained(d, **kw)
        size = sum(f.stat().st_size for f in Path(d).rglob("*.safetensors"))
    times.sort()
    return {"variant": variant, "step_s": times[len(times) // 2], "steps": steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "checkpoint_bytes": size}


def init_comparison(steps: int, eval_every: int) -> dict:
    """Train the default corpus with each init; held-out loss curve; steps to a target."""
    from glyph.train import TrainConfig, train

    curves = {}
    for init in ("mean", "meaning", "random"):
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(out=str(Path(d) / "run"), steps=steps, init=init,
                              eval_every=eval_every, eval_examples=10_000, save_every=10_000)
            res = train(cfg, log=lambda m: None, progress=False)
            log = [json.loads(x) for x in (res.out / "loss.jsonl").read_text().splitlines()]
            curves[init] = [(r["step"], r["heldout_loss"]) for r in log if "heldout_loss" in r]
    finals = {k: v[-1][1] for k, v in curves.items()}
    target = max(finals.values())  # the level every strategy reaches within the budget
    reach = {k: next((s for s, loss in v if loss <= target), None) for k, v in curves.items()}
    return {"curves": curves, "target": target, "steps_to_target": reach, "final": finals}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--init-steps", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/train.md")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--skip-init", action="store_true")
    a = ap.parse_args()
    if a.variant:
        print(json.dumps(run_variant(a.variant, a.steps)))
        return
    rows = {}
    for v in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--steps", str(a.steps)],
                             capture_output=True, text=True, check=True)
        rows[v] = json.loads(out.stdout.strip().splitlines()[-1])
        print(rows[v], file=sys.stderr)
    init = None if a.skip_init else init_comparison(a.init_steps, a.eval_every)
    write_report(Path(a.out), rows, init, a)


def write_report(path: Path, rows: dict, init: dict | None, a) -> None:
    import importlib.metadata as md

    g, naive, mts = rows["glyph"], rows["peft-naive"], rows["modules-to-save"]
    gd = rows["glyph-dense"]
    lines = [
        "# Trainer benchmark",
        "",
        f"Command: `python tools/bench_train.py --steps {a.steps} --init-steps {a.init_steps} "
        f"--eval-every {a.eval_every} --out {a.out}`",
        "",
        f"Machine: {os.cpu_count()} CPU cores, Python {platform.python_version()}, torch "
        f"{md.version('torch')}, transformers {md.version('transformers')}, peft "
        f"{md.version('peft')}; 2 torch threads; embedded tiny Qwen3 (hidden 128, 2 layers, "
        "tied, 151,936 rows); batch 8 scenes of one trigger, LoRA r=8 on all linear layers; "
        f"median of {a.steps} steps after one warm-up step; each variant in its own process.",
        "",
        "| variant | step (s) | peak RSS (MB) | checkpoint |",
        "|---|---:|---:|---:|",
    ]
    for v in VARIANTS:
        r = rows[v]
        lines.append(f"| {v} | {r['step_s']:.3f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['checkpoint_bytes'] / 1024:.1f} KiB |")
    lines += [
        "",
        "| ratio | measured | target |",
        "|---|---:|---:|",
        f"| step speed: glyph vs modules_to_save | {mts['step_s'] / g['step_s']:.2f}× | ≥ 2× |",
        f"| checkpoint: modules_to_save / glyph | {mts['checkpoint_bytes'] / g['checkpoint_bytes']:.0f}× "
        "| ≥ 1000× |",
        f"| peak RSS: glyph / modules_to_save | {g['peak_rss_mb'] / mts['peak_rss_mb']:.2f} | < 1 |",
        f"| step speed: glyph vs naive peft trainable tokens | {naive['step_s'] / g['step_s']:.2f}× "
        "| ≥ 1.3× |",
        f"| step speed: glyph-dense vs modules_to_save | {mts['step_s'] / gd['step_s']:.2f}× | "
        "(real checkpoints) |",
        f"| step speed: glyph-dense vs naive peft trainable tokens | "
        f"{naive['step_s'] / gd['step_s']:.2f}× | (real checkpoints) |",
    ]
    if init:
        lines += [
            "",
            "## Glyph row initialisation",
            "",
            f"Held-out loss on the starter corpus's held-out scenes, training all triggers for "
            f"{a.init_steps} steps with each init (same seed). Target = the worst final held-out "
            f"loss ({init['target']:.3f}), i.e. a level every strategy reaches.",
            "",
            "| init | steps to target | final held-out loss | curve (step: loss) |",
            "|---|---:|---:|---|",
        ]
        for k, curve in init["curves"].items():
            c = ", ".join(f"{s}: {loss:.3f}" for s, loss in curve)
            lines.append(f"| {k} | {init['steps_to_target'][k]} | {init['final'][k]:.3f} | {c} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(path.read_text())


if __name__ == "__main__":
    main()
