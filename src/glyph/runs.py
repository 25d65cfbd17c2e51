"""Run directories: what a training run writes, checkpoints for --resume, and loading checks.

Layout of a complete run::

    RUN/
      tokenizer/                 HF tokenizer with the glyph tokens
      adapters/<trigger>/        standard peft: adapter_config.json + adapter_model.safetensors
      manifest.json              written LAST: a run without it is not complete
      loss.jsonl                 one line per step (loss, lr, held-out loss at intervals)
      train_config.json
      checkpoints/               only while training (removed when the run completes)

Checkpoints are safetensors (trainable parameters, AdamW moments, RNG state) + JSON; no pickle.

Example::

    >>> manifest = load_manifest("runs/demo")      # doctest: +SKIP
    >>> manifest["glyphs"][0]["symbol"]
    '⟁'
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

from .errors import ModelError, TrainingError
from .files import atomic_write

MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
RUN_FORMAT = 1
KEEP_CHECKPOINTS = 2


def is_run_dir(path: Path) -> bool:
    return (path / "train_config.json").exists() or (path / MANIFEST).exists()


def prepare_out_dir(out: Path, cfg, *, resume: bool, overwrite: bool) -> dict | None:
    """Check/prepare ``out``; on resume return the saved config. Refuse to clobber other runs."""
    if resume and overwrite:
        raise TrainingError("pass --resume or --overwrite, not both")
    exists = out.exists() and any(out.iterdir())
    if resume:
        if not (out / "train_config.json").exists():
            raise TrainingError(f"{out} holds no run to resume; drop --resume to start one")
        if (out / MANIFEST).exists():
            raise TrainingError(f"{out} is a complete run; nothing to resume (use --overwrite to "
                                "train it again)")
        saved = json.loads((out / "train_config.json").read_text())
        saved.pop("out", None)
        for k in ("tiers", "registers", "levels"):
            saved[k] = tuple(saved.get(k) or ())
        return saved
    if exists:
        if not is_run_dir(out):
            raise TrainingError(f"{out} is not empty and is not a glyph run; choose another --out")
        if not overwrite:
            raise TrainingError(f"{out} holds another run; pass --resume to continue it or "
                                "--overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return None


# ---------------------------------------------------------------- checkpoints
def _trainable(peft_model) -> dict:
    return {n: p for n, p in peft_model.named_parameters()
            if "lora_" in n or "trainable_tokens_delta" in n}


def save_checkpoint(out: Path, step: int, peft_model, opt, sched, loss_log: list) -> Path:
    """Atomically write checkpoints/step-N (params, optimizer moments, RNG) and point latest."""
    import torch
    from safetensors.torch import save_file

    root = out / CHECKPOINTS
    root.mkdir(exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    params = _trainable(peft_model)
    save_file({n: p.detach().contiguous().clone() for n, p in params.items()},
              str(tmp / "params.safetensors"))
    by_id = {id(p): n for n, p in params.items()}
    moments = {"__torch_rng__": torch.get_rng_state()}
    for p, st in opt.state.items():
        name = by_id.get(id(p))
        if name is None:
            continue
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            moments[f"{name}::{k}"] = t.detach().contiguous().clone()
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "loss_log": loss_log}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write(root / "latest", final.name + "\n")
    for old in sorted(root.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(out: Path, peft_model, opt, sched) -> tuple[int, list]:
    """Restore the latest checkpoint; (0, []) if the run crashed before its first one."""
    import torch
    from safetensors.torch import load_file

    latest = out / CHECKPOINTS / "latest"
    if not latest.exists():
        return 0, []
    d = out / CHECKPOINTS / latest.read_text().strip()
    params = _trainable(peft_model)
    saved = load_file(str(d / "params.safetensors"))
    missing = set(params) ^ set(saved)
    if missing:
        raise TrainingError(f"checkpoint {d} does not match this model ({sorted(missing)[:3]} …); "
                            "start again with --overwrite")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n])
    moments = load_file(str(d / "optimizer.safetensors"))
    torch.set_rng_state(moments.pop("__torch_rng__"))
    for n, p in params.items():
        st = {k.split("::", 1)[1]: v for k, v in moments.items() if k.split("::", 1)[0] == n}
        if st:
            opt.state[p] = st
    state = json.loads((d / "state.json").read_text())
    step = state["step"]
    sched.last_epoch = step
    lrs = [base * lam(step) for base, lam in zip(sched.base_lrs, sched.lr_lambdas)]
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr
    sched._last_lr = lrs
    return step, state["loss_log"]


# ---------------------------------------------------------------- the finished run
def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("glyph", "torch", "transformers", "peft", "accelerate", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def adapter_card(reg, triggers, info) -> str:
    """``adapters/README.md``: which glyphs trigger which adapter, and how to load one."""
    lines = ["# glyph LoRA triggers", "",
             f"Base model: `{info.name}` (`{info.path}`, {'tied' if info.tied else 'untied'} "
             f"embeddings, {info.rows} rows). Each directory is a standard peft adapter: LoRA on "
             "the linear layers plus the trained embedding rows of its glyphs "
             "(`trainable_token_indices`). The tokenizer with the glyphs is `../tokenizer`.", "",
             "| adapter | glyphs (token id) |", "|---|---|"]
    for t in triggers:
        gl = ", ".join(f"{g.symbol} {g.name} ({g.id})" for g in reg.active() if g.trigger == t)
        lines.append(f"| `{t}` | {gl} |")
    t0 = triggers[0]
    sym = next(g.symbol for g in reg.active() if g.trigger == t0)
    lines += ["", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'tok = AutoTokenizer.from_pretrained("../tokenizer")',
              f'base = AutoModelForCausalLM.from_pretrained("{info.path}")']
    if info.rows != info.original_rows:
        lines += ["import torch", "torch.manual_seed(0)  # the glyphs outgrew the spare rows: "
                  "grow exactly as glyph.model.grow_rows does",
                  f"base.resize_token_embeddings({info.rows}, mean_resizing=False)"]
    lines += [f'model = PeftModel.from_pretrained(base, "{t0}")',
              f'ids = tok("{sym}\\n⟨poetry · micro · en⟩\\n", return_tensors="pt").input_ids',
              "print(tok.decode(model.generate(ids, max_new_tokens=60, do_sample=True)[0]))",
              "```", ""]
    return "\n".join(lines)


def write_manifest(out: Path, *, cfg: dict, reg, info, triggers, peft_model, loss_log, metrics,
                   corpus, selected, tok_report) -> Path:
    """Save adapters, loss log and (last, atomically) the manifest; drop checkpoints."""
    tmp = out / ".adapters.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for t in triggers:
        # peft writes a non-"default" adapter into <dir>/<name>/
        peft_model.save_pretrained(str(tmp / t if t == "default" else tmp), selected_adapters=[t],
                                   save_embedding_layers=False)
    # peft writes a model-card template full of "[More Information Needed]": say what is here
    (tmp / "README.md").write_text(adapter_card(reg, triggers, info), encoding="utf-8")
    shutil.rmtree(out / "adapters", ignore_errors=True)
    os.replace(tmp, out / "adapters")
    (out / "loss.jsonl").write_text("".join(json.dumps(r) + "\n" for r in loss_log))
    from dataclasses import asdict

    manifest = {
        "version": RUN_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "registry": {"path": str(reg.path), "fingerprint": reg.fingerprint()},
        "glyphs": [{"symbol": g.symbol, "id": g.id, "name": g.name, "trigger": g.trigger,
                    "kind": g.kind, "meaning": g.meaning}
                   for g in reg.active() if g.trigger in triggers],
        "triggers": {t: f"adapters/{t}" for t in triggers},
        "base": asdict(info),
        "tokenizer": "tokenizer",
        "corpus": {"fingerprint": corpus.fingerprint(), "train_scenes": len(selected),
                   "heldout_scenes": len(corpus.select(split="heldout"))},
        "config": cfg,
        "metrics": metrics,
        "versions": _versions(),
    }
    atomic_write(out / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2))
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return out / MANIFEST


def load_manifest(run: Path | str, reg=None) -> dict:
    """Read a complete run's manifest; refuse incomplete runs and registries whose ids differ."""
    run = Path(run)
    if not (run / MANIFEST).exists():
        if is_run_dir(run):
            raise ModelError(f"{run} is not a complete run (training did not finish); "
                             f"finish it with `glyph train --out {run} --resume`")
        raise ModelError(f"{run} is not a glyph run directory (no {MANIFEST})")
    m = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    if reg is not None:
        for g in m["glyphs"]:
            have = reg.find(g["symbol"])
            if have is None or have.id != g["id"]:
                now = f"id {have.id}" if have else "not registered"
                raise ModelError(
                    f"run {run} was trained with {g['symbol']} at id {g['id']} but the registry "
                    f"has it {now}; use the registry the run was trained with "
                    f"(fingerprint {m['registry']['fingerprint']}) or retrain")
    return m
