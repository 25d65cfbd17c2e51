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

    python tools/bench_train.py --steps 10 --skip-init --out benchmarks/train.md
    python tools/bench_train.py --model qwen3-0.6b-shape --batch 2 --steps 3 --skip-init
    python tools/bench_train.py --skip-variants --init-steps 60 --eval-every 5
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


# Qwen3-0.6B's published architecture (config.json of Qwen/Qwen3-0.6B), random weights: the
# hub is out of reach here, and step time and memory depend on shapes, not on weight values.
QWEN3_06B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                 num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                 head_dim=128, max_position_embeddings=40960, rope_theta=1_000_000,
                 tie_word_embeddings=True)


def _base(model: str, default_dir):
    from glyph.model import base as mdl

    if model == "default":
        return mdl.load_base(str(default_dir))
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    m = Qwen3ForCausalLM(Qwen3Config(**QWEN3_06B)).eval()
    return m, mdl.BaseInfo(name="qwen3-0.6b-shape", path="", fingerprint="", tied=True,
                           rows=151936, original_rows=151936, hidden=1024)


def _setup(variant: str, model: str = "default", batch: int = 8):
    import torch
    from peft import LoraConfig, get_peft_model

    from glyph.corpus import scenes
    from glyph.model.tiny import default_base_dir
    from glyph.training.data import build_examples, collate, schedule
    from glyph.training.loss import GlyphLM
    from glyph.vocab import registry
    from glyph.vocab import tokenizer as tk

    torch.manual_seed(0)
    reg = registry.load()
    corpus = scenes.load_corpus(reg)
    base_dir = default_base_dir(corpus)
    LORA_TARGETS = reg.family.lora_targets
    tok = tk.load(tk.project_tokenizer())
    examples = build_examples(reg, corpus.select(split="train"), tok, 192)
    # one trigger for all variants so the comparison is like for like
    trig = examples[0].trigger
    exs = [e for e in examples if e.trigger == trig]
    plan = schedule(exs, batch, 0, steps=50, epochs=1)
    base, info = _base(model, base_dir)
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
        x, mask, labels = collate([exs[i] for i in idx], reg.family.endoftext_id)
        if glm is not None:
            loss, _ = glm(x, mask, labels, trig)
        else:
            loss = pm(input_ids=x, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return pm, step, trig


def run_variant(variant: str, steps: int, model: str = "default", batch: int = 8) -> dict:
    """Runs inside a subprocess: time `steps` steps after one warm-up step; checkpoint size."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    pm, step, trig = _setup(variant, model, batch)
    step(0)  # warm-up (allocations, first-call overheads)
    times = []
    for k in range(1, steps + 1):
        t = time.perf_counter()
        step(k)
        times.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as d:
        kw = {} if variant == "modules-to-save" else {"save_embedding_layers": False}
        pm.save_pretrained(d, **kw)
        files = list(Path(d).rglob("*.safetensors"))
        size = sum(f.stat().st_size for f in files)
        from safetensors import safe_open

        emb = 0  # bytes of the embedding part (glyph rows, or the saved matrices); LoRA aside
        for f in files:
            with safe_open(str(f), "pt") as st:
                for k in st.keys():
                    if "lora_" not in k:
                        t = st.get_tensor(k)
                        emb += t.numel() * t.element_size()
    times.sort()
    return {"variant": variant, "step_s": times[len(times) // 2], "steps": steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "checkpoint_bytes": size, "embedding_bytes": emb}


REAL_VARIANTS = ("peft", "glyph-fast", "glyph-auto", "glyph-checkpoint")


def run_real_variant(variant: str, base: str, steps: int, batch: int, max_len: int) -> dict:
    """Runs in a subprocess: ``steps`` optimizer steps (after one warm-up) on a real base.

    ``peft``: plain peft LoRA (same target modules, the glyph rows as trainable tokens) fed the
    examples in unbucketed batches, ``model(**batch, labels=…)``. ``glyph-*``: the recipe's own
    step (``Recipe.step``: bucketed, balanced, label-only head) in the given memory mode
    (``auto``: what ``glyph train`` picks with its default budget).
    Throughput = label tokens / seconds over all timed steps.
    """
    import torch

    from glyph.training.config import TrainConfig
    from glyph.training.data import collate, padding_share, schedule
    from glyph.training.recipe import Recipe

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    mode = variant.split("-", 1)[1] if variant.startswith("glyph") else "fast"
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(out=Path(d) / "run", base=base, batch_size=batch, max_len=max_len,
                          steps=steps + 1, memory=mode)
        recipe = Recipe(cfg, log=lambda m: print(m, file=sys.stderr), progress=False).setup()
        recipe.glm.train()
        if variant == "peft":
            plan = schedule(recipe.examples, batch, 0, steps=steps + 1, epochs=1)
            pm, pad = recipe.peft_model, recipe.pad_id

            def step(k: int) -> tuple[int, float]:
                trig, idx = plan[k]
                t = time.perf_counter()
                x, mask, labels = collate([recipe.examples[i] for i in idx], pad)
                pm.set_adapter(trig)
                loss = pm(input_ids=x, attention_mask=mask, labels=labels).loss
                recipe.opt.zero_grad(set_to_none=True)
                loss.backward()
                recipe.opt.step()
                return int((labels[:, 1:] != -100).sum()), time.perf_counter() - t
        else:
            plan = recipe.plan

            def step(k: int) -> tuple[int, float]:
                st = recipe.step(*plan[k])
                return st.tokens, st.seconds
        step(0)  # warm-up
        tokens = seconds = 0.0
        for k in range(1, steps + 1):
            n, s = step(k)
            tokens, seconds = tokens + n, seconds + s
            print(f"{variant} step {k}: {n} label tokens in {s:.1f}s", file=sys.stderr)
        return {"variant": variant, "label_tokens": tokens, "seconds": seconds,
                "tok_s": tokens / seconds, "mode": recipe.memory.mode,
                "parts": recipe.memory.parts, "estimate_gb": recipe.memory.estimate_gb,
                "padding": padding_share(recipe.examples, plan[1: steps + 1]),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def init_comparison(steps: int, eval_every: int) -> dict:
    """Train the default corpus with each init; held-out loss curve; steps to a target."""
    from glyph.training.config import TrainConfig
    from glyph.training.recipe import train

    curves = {}
    for init in ("mean", "meaning", "random"):
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(out=Path(d) / "run", steps=steps, init=init,
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
    ap.add_argument("--skip-variants", action="store_true")
    ap.add_argument("--model", choices=("default", "qwen3-0.6b-shape"), default="default",
                    help="the embedded default, or Qwen3-0.6B's architecture with random weights")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--base", default=None, help="a real base (directory or .gguf): measure the "
                    "recipe's memory modes against plain peft on it")
    ap.add_argument("--max-len", type=int, default=192)
    a = ap.parse_args()
    if a.variant:
        result = (run_real_variant(a.variant, a.base, a.steps, a.batch, a.max_len) if a.base
                  else run_variant(a.variant, a.steps, a.model, a.batch))
        print(json.dumps(result))
        return
    if a.base:
        return real_base(a)
    rows = {}
    for v in () if a.skip_variants else VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--steps", str(a.steps),
                              "--model", a.model, "--batch", str(a.batch)],
                             capture_output=True, text=True, check=True)
        rows[v] = json.loads(out.stdout.strip().splitlines()[-1])
        print(rows[v], file=sys.stderr)
    init = None if a.skip_init else init_comparison(a.init_steps, a.eval_every)
    write_report(Path(a.out), rows, init, a)


def real_base(a) -> None:
    """Each real-base variant in its own process, one after another; then the report section."""
    a.load = os.getloadavg()[0]  # another process on the cores would slow every figure
    rows = {}
    for v in REAL_VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--base", a.base,
                              "--steps", str(a.steps), "--batch", str(a.batch), "--max-len",
                              str(a.max_len)], capture_output=True, text=True, check=True)
        rows[v] = json.loads(out.stdout.strip().splitlines()[-1])
        print(rows[v], file=sys.stderr, flush=True)
    write_real_report(Path(a.out), rows, a)


def write_real_report(path: Path, rows: dict, a) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    title = f"Real base: {Path(a.base).name}"
    peft = rows["peft"]
    lines = [f"## {title}", "",
             f"Command: `python tools/bench_train.py --base \"$GGUF\" --batch {a.batch} "
             f"--max-len {a.max_len} --steps {a.steps} --out {a.out}` with `$GGUF` the file "
             f"`{Path(a.base).name}`; load average before the first variant "
             f"{a.load:.2f} on {os.cpu_count()} cores.", "",
             f"Batch {a.batch} scenes of the starter corpus (all tiers), ≤ {a.max_len} tokens, "
             f"LoRA r=8 on the 7 projections + the glyph rows; {a.steps} timed steps after a "
             "warm-up, each variant in its own process (peak RSS is its own). `peft` is "
             "plain peft fed unbucketed batches; `glyph-*` is `Recipe.step` (bucketed, one "
             "trigger per batch, label-only fused head) in each memory mode.", "",
             "| variant | memory plan | padding | label tokens/s | vs peft | peak RSS (GB) | "
             "estimated (GB) |", "|---|---|---:|---:|---:|---:|---:|"]
    for v, r in rows.items():
        plan = r["mode"] + (f" × {r['parts']}" if r["parts"] > 1 else "")
        lines.append(f"| {v} | {plan} | {r['padding']:.0%} | {r['tok_s']:.1f} | "
                     f"{r['tok_s'] / peft['tok_s']:.2f}× | {r['peak_rss_mb'] / 1024:.1f} | "
                     f"{r['estimate_gb']:.1f} |")
    section = "\n".join(lines) + "\n"
    parts = [c for c in old.split("\n## ") if not c.startswith(title)]
    path.write_text(("\n## ".join(parts)).rstrip() + "\n\n" + section, encoding="utf-8")
    print(section)


MODEL_TEXT = {
    "default": "embedded tiny Qwen3 (hidden 128, 2 layers, tied, 151,936 rows; ~140k of its head "
               "rows are exactly zero, which `glyph` skips exactly)",
    "qwen3-0.6b-shape": "Qwen3-0.6B's architecture (hidden 1024, 28 layers, tied, 151,936 rows) "
                        "with random weights — no zero rows: `glyph` takes its dense path",
}


def write_report(path: Path, rows: dict | None, init: dict | None, a) -> None:
    """Write (or update) ``path``: one section per model measured, plus the init comparison."""
    import importlib.metadata as md

    old = path.read_text(encoding="utf-8") if path.exists() else ""
    sections = {}
    for chunk in old.split("\n## ")[1:]:  # keep the sections not re-measured
        sections[chunk.split("\n", 1)[0]] = "## " + chunk.rstrip() + "\n"
    head = ["# Trainer benchmark", "",
            f"Machine: {os.cpu_count()} CPU cores, Python {platform.python_version()}, torch "
            f"{md.version('torch')}, transformers {md.version('transformers')}, peft "
            f"{md.version('peft')}; 2 torch threads. Variants:", "",
            "- `glyph`: our trainer's step (label-only logits, glyph rows read from peft's "
            "delta, exact softmax that skips all-zero head rows);",
            "- `glyph-dense`: the same step on a head without zero rows (what a real checkpoint "
            "gets): the fused chunked head that never materialises the full logits;",
            "- `peft-naive`: peft LoRA + `trainable_token_indices`, `model(**batch, labels=…)`;",
            "- `modules-to-save`: peft LoRA + `modules_to_save=[\"embed_tokens\", \"lm_head\"]`.",
            "", "Each variant runs in its own process (peak RSS is its own); median step time "
            "after one warm-up step; LoRA r=8 on all linear layers; batches of scenes of one "
            "trigger from the starter corpus.", ""]
    if rows:
        g, gd = rows["glyph"], rows["glyph-dense"]
        naive, mts = rows["peft-naive"], rows["modules-to-save"]
        title = f"Step, memory, checkpoint: {a.model}"
        lines = [f"## {title}", "",
                 f"Command: `python tools/bench_train.py --model {a.model} --batch {a.batch} "
                 f"--steps {a.steps} --skip-init --out {a.out}`", "",
                 f"Model: {MODEL_TEXT[a.model]}; batch {a.batch}; median of {a.steps} steps.", "",
                 "| variant | step (s) | peak RSS (MB) | checkpoint | of which embedding |",
                 "|---|---:|---:|---:|---:|"]
        for v in VARIANTS:
            r = rows[v]
            lines.append(f"| {v} | {r['step_s']:.3f} | {r['peak_rss_mb']:.0f} | "
                         f"{r['checkpoint_bytes'] / 1024:.1f} KiB | "
                         f"{r['embedding_bytes'] / 1024:.1f} KiB |")
        best = g if a.model == "default" else gd
        lines += ["", "| ratio (our step as used on this model) | measured | target |",
                  "|---|---:|---:|",
                  f"| step speed vs modules_to_save | {mts['step_s'] / best['step_s']:.2f}× | ≥ 2× |",
                  f"| checkpoint: modules_to_save / ours | "
                  f"{mts['checkpoint_bytes'] / best['checkpoint_bytes']:.0f}× | ≥ 1000× |",
                  f"| … its embedding part alone (LoRA, identical in both, set aside) | "
                  f"{mts['embedding_bytes'] / best['embedding_bytes']:.0f}× | |",
                  f"| peak RSS: ours / modules_to_save | "
                  f"{best['peak_rss_mb'] / mts['peak_rss_mb']:.2f} | < 1 |",
                  f"| step speed vs naive peft trainable tokens | "
                  f"{naive['step_s'] / best['step_s']:.2f}× | ≥ 1.3× |"]
        if a.model == "default":
            lines += ["", f"Without the zero-row shortcut (`glyph-dense`) on this model: "
                      f"{mts['step_s'] / gd['step_s']:.2f}× modules_to_save, "
                      f"{naive['step_s'] / gd['step_s']:.2f}× naive peft."]
        sections[title] = "\n".join(lines) + "\n"
    if init:
        lines = [
            "## Glyph row initialisation", "",
            f"Command: `python tools/bench_train.py --init-steps {a.init_steps} --eval-every "
            f"{a.eval_every} --out {a.out}` (the init part)", "",
            f"Held-out loss on the starter corpus's held-out scenes, training all triggers for "
            f"{a.init_steps} steps with each init (same seed). Target = the worst final held-out "
            f"loss ({init['target']:.3f}), i.e. a level every strategy reaches.", "",
            "| init | steps to target | final held-out loss | curve (step: loss) |",
            "|---|---:|---:|---|"]
        for k, curve in init["curves"].items():
            c = ", ".join(f"{s}: {loss:.3f}" for s, loss in curve)
            lines.append(f"| {k} | {init['steps_to_target'][k]} | {init['final'][k]:.3f} | {c} |")
        sections["Glyph row initialisation"] = "\n".join(lines) + "\n"
    path.write_text("\n".join(head) + "\n" + "\n".join(sections.values()), encoding="utf-8")
    print(path.read_text())


if __name__ == "__main__":
    main()
