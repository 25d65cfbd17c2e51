"""The glyph trainer: glyph embedding rows trained jointly with one LoRA adapter per trigger.

A linear recipe, readable top to bottom: **setup** (registry, corpus, tokenizer, base, peft
adapters, optimizer) → **loop** (batches grouped by trigger: each batch activates the adapter
its glyphs trigger; loss on the scene text only) → **save** (standard peft adapters, manifest).

Adapters are plain peft: ``LoraConfig(trainable_token_indices=<the trigger's glyph ids>)``,
saved with ``save_embedding_layers=False`` so an adapter holds its glyph rows + LoRA, never a
full embedding matrix. The *forward pass used for training* is ours, because the step is
dominated by the 151,936-wide output logits: we compute logits only at positions that carry
a label, and we read the glyph rows straight from peft's ``trainable_tokens_delta``
parameters instead of letting peft ``index_copy`` the whole embedding matrix on every
forward (twice when tied). Same maths, same parameters, same saved files (a test checks the
loss equals peft's own forward).

Training goes through accelerate, so ``accelerate launch -m glyph.cli train …`` runs the same
recipe on several GPUs (every process takes its slice of each batch; all processes train
the same adapter at each step).
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from . import model as mdl
from . import paths, registry, scenes
from . import tokenizer as tk
from .errors import ConfigError, TrainingError
from .forward import EOS, IGNORE, GlyphLM, collate
from .runs import CHECKPOINTS, load_checkpoint, prepare_out_dir, save_checkpoint, write_manifest

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    """Everything that defines a run (saved as ``train_config.json``; checked on --resume)."""

    out: str
    base: str | None = None
    tiers: tuple[str, ...] = scenes.TIERS
    registers: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    max_len: int = 192
    lr: float = 2e-3
    embedding_lr: float = 2e-2
    lora_r: int = 8
    lora_alpha: int = 16
    init: str = mdl.DEFAULT_INIT
    seed: int = 0
    eval_every: int = 25
    eval_examples: int = 32
    save_every: int = 25
    strict: bool = False
    fraction: float = 1.0       # deterministic share of the selected training scenes

    def check(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("pass either --steps or --epochs, not both")
        for k in ("batch_size", "max_len", "lora_r", "lora_alpha", "save_every", "eval_every"):
            if getattr(self, k) < 1:
                raise ConfigError(f"--{k.replace('_', '-')} must be >= 1")
        if self.steps is not None and self.steps < 1 or self.epochs is not None and self.epochs <= 0:
            raise ConfigError("--steps / --epochs must be positive")
        for k in ("lr", "embedding_lr"):
            v = getattr(self, k)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"--{k.replace('_', '-')} must be a positive number")
        bad = [t for t in self.tiers if t not in scenes.TIERS]
        if bad or not self.tiers:
            raise ConfigError(f"unknown tier(s) {bad}; use {','.join(scenes.TIERS)}")
        bad = [lv for lv in self.levels if lv not in scenes.LEVELS]
        if bad:
            raise ConfigError(f"unknown level(s) {bad}; use {','.join(scenes.LEVELS)}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"--fraction {self.fraction} must be in (0, 1]")
        if self.init not in mdl.INIT_STRATEGIES:
            raise ConfigError(f"unknown --init {self.init!r}; use {', '.join(mdl.INIT_STRATEGIES)}")

    @property
    def total_epochs(self) -> float:
        return self.epochs if self.epochs is not None else 3.0


@dataclass
class Example:
    scene_id: str
    trigger: str
    ids: list[int]
    labels: list[int]


@dataclass
class RunResult:
    out: Path
    steps: int
    metrics: dict = field(default_factory=dict)


def encode_example(tok, scene, glyph_str: str, trigger: str, max_len: int) -> Example:
    """prompt (glyphs + register/level) → scene text + EOS; labels only on the text."""
    p = tok.encode(scene.prompt(glyph_str), add_special_tokens=False).ids
    t = tok.encode(scene.text, add_special_tokens=False).ids + [EOS]
    ids = (p + t)[:max_len]
    labels = ([IGNORE] * len(p) + t)[:max_len]
    return Example(scene.id, trigger, ids, labels)


def build_examples(reg, selected, tok, max_len: int) -> list[Example]:
    by_symbol = {g.symbol: g for g in reg.active()}
    return [encode_example(tok, s, "".join(s.glyphs), by_symbol[s.glyph].trigger, max_len)
            for s in selected]


def schedule(examples: list[Example], batch_size: int, seed: int, *, steps: int | None,
             epochs: float) -> list[tuple[str, list[int]]]:
    """Deterministic list of (trigger, example indices): batches never mix triggers."""
    rng = random.Random(seed)
    by_trigger: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_trigger.setdefault(e.trigger, []).append(i)
    per_epoch = sum(math.ceil(len(v) / batch_size) for v in by_trigger.values())
    total = steps if steps is not None else max(1, round(per_epoch * epochs))
    out: list[tuple[str, list[int]]] = []
    while len(out) < total:
        epoch = []
        for t in sorted(by_trigger):
            idx = by_trigger[t][:]
            rng.shuffle(idx)
            epoch += [(t, idx[i: i + batch_size]) for i in range(0, len(idx), batch_size)]
        rng.shuffle(epoch)
        out += epoch
    return out[:total]


def attach_adapters(base_model, reg, triggers: list[str], cfg: TrainConfig, init_rows: dict):
    """One LoRA adapter per trigger, each training only its own glyphs' rows."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    peft_model = None
    for t in triggers:
        ids = [g.id for g in reg.active() if g.trigger == t]
        lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                        target_modules=list(LORA_TARGETS), trainable_token_indices=ids,
                        task_type="CAUSAL_LM")
        if peft_model is None:
            peft_model = get_peft_model(base_model, lc, adapter_name=t)
        else:
            peft_model.add_adapter(t, lc)
    emb = next(m for m in peft_model.modules() if isinstance(m, TrainableTokensLayer)
               and isinstance(m.base_layer, torch.nn.Embedding))
    with torch.no_grad():  # our init goes into the adapter, the base stays bit-identical
        for t in triggers:
            for j, gid in enumerate(emb.token_indices[t]):
                emb.trainable_tokens_delta[t][j].copy_(init_rows[gid])
    return peft_model


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          log: Callable[[str], None] = print, progress: bool = True,
          _stop_after: int | None = None) -> RunResult:
    """Train glyph rows + LoRA triggers; write a run directory. See module docstring."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # ------------------------------------------------------------ setup: data (fails fast)
    cfg.check()
    reg = registry.load()
    corpus = scenes.load_corpus(reg)
    out = Path(cfg.out)
    start_cfg = prepare_out_dir(out, cfg, resume=resume, overwrite=overwrite)
    if start_cfg is not None:
        cfg = TrainConfig(**{**start_cfg, "out": str(out)})
    active = {g.symbol: g for g in reg.active()}
    selected = [s for s in corpus.select(split="train", tiers=cfg.tiers,
                                         registers=cfg.registers or None,
                                         levels=cfg.levels or None) if s.glyph in active]
    if cfg.fraction < 1:
        selected = [s for s in selected if scenes.in_fraction(s.id, cfg.fraction)]
    untrained = [g for g in reg.active() if not any(s.glyph == g.symbol for s in selected)]
    if untrained:
        names = ", ".join(f"{g.symbol} {g.name}" for g in untrained)
        if cfg.strict:
            raise TrainingError(f"no training scenes for {names}; add scenes or drop --strict")
        log(f"warning: no training scenes for {names}: their rows stay at init")
    if not selected:
        raise TrainingError("no training scenes match --tiers/--registers/--levels")
    triggers = sorted({active[s.glyph].trigger for s in selected})
    if cfg.base is not None:
        mdl.check_base(mdl.resolve_base(cfg.base)[1])

    # ------------------------------------------------------------ setup: model and adapters
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[
        DistributedDataParallelKwargs(find_unused_parameters=True)])
    torch.manual_seed(cfg.seed)
    tok_report = tk.build_glyph_tokenizer(reg.active(), out / "tokenizer",
                                          base=None if cfg.base is None
                                          else str(mdl.resolve_base(cfg.base)[1]))
    tok = tk.load(out / "tokenizer")
    max_id = max(g.id for g in reg.glyphs)
    base_model, info = mdl.load_base(cfg.base, min_rows=max_id + 1, corpus=corpus, log=log)
    glyph_list = [g for g in reg.active() if g.trigger in triggers]
    hf_tok = _HFEncode(tok)
    rows = mdl.init_rows(base_model, glyph_list, cfg.init, hf_tok, seed=cfg.seed)
    init_rows = {g.id: rows[i] for i, g in enumerate(glyph_list)}
    peft_model = attach_adapters(base_model, reg, triggers, cfg, init_rows)
    glm = GlyphLM(peft_model, info.tied)
    examples = build_examples(reg, selected, tok, cfg.max_len)
    held = build_examples(reg, [s for s in corpus.select(split="heldout", tiers=cfg.tiers)
                                if s.glyph in active and active[s.glyph].trigger in triggers],
                          tok, cfg.max_len)
    plan = schedule(examples, cfg.batch_size, cfg.seed, steps=cfg.steps, epochs=cfg.total_epochs)
    lora = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    rows_p = [p for n, p in peft_model.named_parameters() if "trainable_tokens_delta" in n]
    opt = torch.optim.AdamW([{"params": lora, "lr": cfg.lr, "weight_decay": 0.0},
                             {"params": rows_p, "lr": cfg.embedding_lr, "weight_decay": 0.0}])
    lr_at = lambda s: min(1.0, (s + 1) / 10) * (0.1 + 0.9 * 0.5 * (1 + math.cos(  # noqa: E731
        math.pi * s / max(1, len(plan)))))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    glm, opt = accelerator.prepare(glm, opt)
    step, loss_log = 0, []
    if resume:
        step, loss_log = load_checkpoint(out, peft_model, opt, sched)
        log(f"resuming from step {step}/{len(plan)}")
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    # ------------------------------------------------------------ loop
    from tqdm import tqdm

    bar = tqdm(total=len(plan), initial=step, disable=not progress or not accelerator.is_main_process,
               desc="train", unit="step", mininterval=1.0, dynamic_ncols=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    t0, tokens = time.time(), 0
    glm.train()
    while step < len(plan):
        trigger, idx = plan[step]
        peft_model.set_adapter(trigger)
        ids, mask, labels = collate([examples[i] for i in idx[rank::world] or idx[:1]])
        loss, n_tok = glm(ids.to(accelerator.device), mask.to(accelerator.device),
                          labels.to(accelerator.device), trigger)
        if not torch.isfinite(loss):
            last = (out / CHECKPOINTS / "latest").read_text().strip() if (
                out / CHECKPOINTS / "latest").exists() else "none"
            raise TrainingError(f"loss became {loss.item()} at step {step + 1} (trigger {trigger}); "
                                f"the last good checkpoint ({last}) is kept: lower --lr / "
                                "--embedding-lr and run again with --resume")
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]
                                     if p.grad is not None], 1.0)
        opt.step()
        sched.step()
        step += 1
        tokens += n_tok
        rec = {"step": step, "trigger": trigger, "loss": round(loss.item(), 5),
               "lr": sched.get_last_lr()[0]}
        if step % cfg.eval_every == 0 or step == len(plan):
            rec["heldout_loss"] = round(evaluate_loss(glm, peft_model, held[: cfg.eval_examples],
                                                      cfg.batch_size), 5)
        loss_log.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{tokens / (time.time() - t0):.0f}",
                        **({"heldout": f"{rec['heldout_loss']:.3f}"} if "heldout_loss" in rec else {}))
        bar.update(1)
        if step % cfg.save_every == 0 and step < len(plan) and accelerator.is_main_process:
            save_checkpoint(out, step, peft_model, opt, sched, loss_log)
        if _stop_after is not None and step >= _stop_after:  # tests: simulate a crash
            raise KeyboardInterrupt
    bar.close()

    # ------------------------------------------------------------ save
    metrics = {"train_loss_last": loss_log[-1]["loss"],
               "heldout_loss": evaluate_loss(glm, peft_model, held, cfg.batch_size),
               "heldout_examples": len(held), "train_examples": len(examples),
               "steps": len(plan), "seconds": round(time.time() - t0, 1)}
    if accelerator.is_main_process:
        write_manifest(out, cfg=asdict(cfg), reg=reg, info=info, triggers=triggers,
                       peft_model=peft_model, loss_log=loss_log, metrics=metrics,
                       corpus=corpus, selected=selected, tok_report=tok_report)
    return RunResult(out=out, steps=len(plan), metrics=metrics)


def evaluate_loss(glm, peft_model, examples: list[Example], batch_size: int) -> float:
    """Mean per-token loss over ``examples``, each with its own trigger's adapter."""
    import torch

    if not examples:
        return float("nan")
    total, count = 0.0, 0
    glm.eval()
    with torch.no_grad():
        by_t: dict[str, list[Example]] = {}
        for e in examples:
            by_t.setdefault(e.trigger, []).append(e)
        for t, exs in sorted(by_t.items()):
            peft_model.set_adapter(t)
            for i in range(0, len(exs), batch_size):
                ids, mask, labels = collate(exs[i: i + batch_size])
                loss, n = glm(ids, mask, labels, t)
                total += loss.item() * n
                count += n
    glm.train()
    return total / max(1, count)


class _HFEncode:
    """Adapter so ``model.init_rows`` can encode a meaning with a ``tokenizers.Tokenizer``."""

    def __init__(self, tok):
        self.tok = tok

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids


def default_out() -> Path:
    return paths.home() / "runs" / "default"

