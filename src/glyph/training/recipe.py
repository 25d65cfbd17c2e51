"""Training as a recipe: setup → step → loop → save, readable top to bottom.

What trains: the embedding rows of the glyphs (peft ``trainable_token_indices``) and one LoRA
adapter per trigger on the family's linear layers — every glyph its own trigger when
``TrainConfig.adapter_per_glyph`` — nothing else. Batches never mix triggers, so each step
trains the adapter its glyphs activate plus their rows (with a separate learning rate). The
forward pass is :class:`glyph.training.loss.GlyphLM` (logits only where labels exist; same
maths as peft's own forward, which a test checks).

peft adapters are saved with ``save_embedding_layers=False`` so an adapter holds its glyph
rows + LoRA, never a full embedding matrix.

Training goes through accelerate: ``accelerate launch -m glyph.cli train …`` runs the same
recipe in several processes (each takes its slice of every batch; the loss is weighted by
label tokens across processes, so the gradient equals the one-process gradient; only the
main process writes the run directory). A test checks two CPU processes against one.

Example::

    >>> recipe = Recipe(TrainConfig(out=Path("runs/x"), steps=10))   # doctest: +SKIP
    >>> recipe.setup()                                                # doctest: +SKIP
    >>> stats = recipe.step(*recipe.plan[0])                          # doctest: +SKIP
    >>> recipe.loop(); result = recipe.save()                         # doctest: +SKIP
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..corpus import scenes
from ..errors import TrainingError
from ..model import base as base_mod
from ..model import rows as rows_mod
from ..model.adapters import active
from ..run import Run
from ..run.manifest import Manifest
from ..vocab import registry, sources
from ..vocab import tokenizer as tk
from . import checkpoint
from .adapters import attach_adapters, checkpointing
from .config import TrainConfig
from .data import Example, build_examples, collate, padding_share, schedule
from .memory import dims_of, plan_memory
from .objectives import PartBuilder, Stats, StepLoss


TIME_PROBE_STEPS = 4  # steps measured before a time budget cuts the schedule


@dataclass
class RunResult:
    out: Path
    steps: int
    metrics: dict = field(default_factory=dict)
    main: bool = True  # False in the other processes of a distributed run


@dataclass
class StepStats:
    """One optimizer step: the trigger, the mean loss over the batch's label tokens, their count
    (``extra``: the NLL when the objective is another, the contrast gap)."""

    step: int
    trigger: str
    loss: float
    tokens: int
    seconds: float
    extra: dict = field(default_factory=dict)


class Recipe:
    """One training run. ``setup`` → ``step`` (one optimizer step) → ``loop`` → ``save``."""

    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None] = print,
                 progress: bool = True):
        self.cfg, self.log, self.progress = cfg, log, progress
        self.run = Run(cfg.out)
        self.step_no, self.loss_log = 0, []
        self.tokens, self.seconds = 0, 0.0

    # ------------------------------------------------------------ setup
    def setup(self, *, resume: bool = False, overwrite: bool = False) -> "Recipe":
        """Data first (fails fast, before any model loads), then model, adapters, optimizer."""
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.accelerator = Accelerator(cpu=not _cuda(), kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=True)])
        self.main = self.accelerator.is_main_process
        if not self.main:  # one voice: the other processes of a distributed run stay quiet
            self.log = lambda message: None
        saved = None
        if self.main:  # only the main process touches the directory; the others read it after
            saved = self.run.prepare(self.cfg.to_dict(), resume=resume, overwrite=overwrite)
        self.accelerator.wait_for_everyone()
        if not self.main and resume:
            saved = self.run.prepare(self.cfg.to_dict(), resume=True, overwrite=False)
        if saved is not None:
            self.cfg = TrainConfig.from_dict(saved, out=self.cfg.out)
        try:
            self._setup_data()
            self._setup_examples()
            self._setup_model()
            if resume:
                self.step_no, self.loss_log = checkpoint.restore(
                    self.run, self.peft_model, self.opt, self.sched)
                self.log(f"resuming from step {self.step_no}/{len(self.plan)}")
        except BaseException:
            if self.main and not resume:  # nothing half-written; a replaced run comes back
                self.run.abandon()
            raise
        if self.main:
            self.run.settle()
            self.run.write_train_config(self.cfg.to_dict())
        return self

    def _setup_data(self) -> None:
        cfg = self.cfg
        self.reg = registry.load()
        if cfg.adapter_per_glyph:
            self.reg = self.reg.one_trigger_per_glyph()
        self.corpus = scenes.load_corpus(self.reg)
        act = {g.symbol: g for g in self.reg.active()}
        selected = [s for s in self.corpus.select(split="train", tiers=cfg.tiers,
                                                  registers=cfg.registers or None,
                                                  levels=cfg.levels or None) if s.glyph in act]
        if cfg.fraction < 1:
            selected = [s for s in selected if scenes.in_fraction(s.id, cfg.fraction)]
        untrained = [g for g in self.reg.active() if not any(s.glyph == g.symbol for s in selected)]
        if untrained:
            names = ", ".join(f"{g.symbol} {g.name}" for g in untrained)
            if cfg.strict:
                raise TrainingError(f"no training scenes for {names}; add scenes or drop --strict")
            self.log(f"warning: no training scenes for {names}: their rows stay at init")
        if not selected:
            raise TrainingError("no training scenes match --tiers/--registers/--levels")
        self.selected = selected
        self.triggers = sorted({act[s.glyph].trigger for s in selected})
        self.held_scenes = [s for s in self.corpus.select(split="heldout", tiers=cfg.tiers)
                            if s.glyph in act and act[s.glyph].trigger in self.triggers]
        self.base_where = base_mod.resolve_base(cfg.base, self.corpus, log=self.log)[1]
        if cfg.base is not None:
            base_mod.check_base(self.base_where)

    def _setup_examples(self) -> None:
        """The glyph tokenizer, examples and schedule, then — before any weight loads — how a
        step fits in memory (refusing what cannot fit), from the longest batch there is."""
        cfg, reg = self.cfg, self.reg
        base_where = None if cfg.base is None else str(self.base_where)
        if self.main:
            self.tok_report = tk.build_glyph_tokenizer(reg.active(), self.run.tokenizer_dir,
                                                       base=base_where, fam=reg.family)
        self.accelerator.wait_for_everyone()
        self.tok = tok = sources.load(self.run.tokenizer_dir)
        teacher = cfg.objective != "lm"
        self.examples = build_examples(reg, self.selected, tok, cfg.max_len, teacher=teacher,
                                       lead=cfg.prompt_lead)
        self.held = build_examples(reg, self.held_scenes, tok, cfg.max_len, lead=cfg.prompt_lead)
        self.plan = schedule(self.examples, cfg.batch_size, cfg.seed, steps=cfg.steps,
                             epochs=cfg.total_epochs, bucket=cfg.bucket, balance=cfg.balance)
        self.pad_id = reg.family.endoftext_id
        longest = max(len(e.ids) for e in self.examples)
        self.memory = plan_memory(cfg.memory, budget_gb=cfg.memory_budget,
                                  batch_size=-(-cfg.batch_size // self.accelerator.num_processes),
                                  max_len=longest, dims=dims_of(self.base_where),
                                  passes=2 if cfg.contrast > 0 else 1)
        self.log(f"{len(self.examples)} training scenes, {len(self.plan)} steps of "
                 f"{cfg.batch_size} ({padding_share(self.examples, self.plan):.0%} padding), "
                 f"objective {cfg.objective}" + (f" + contrast {cfg.contrast:g} "
                                                 f"({cfg.contrast_to})" if cfg.contrast else ""))
        self.log(self.memory.describe())

    def _setup_model(self) -> None:
        import torch

        cfg, reg, tok = self.cfg, self.reg, self.tok
        with torch.random.fork_rng(devices=[]):  # seeded adapter init; the caller's RNG untouched
            torch.manual_seed(cfg.seed)
            base_model, self.info = base_mod.load_base(cfg.base, min_rows=max(
                g.id for g in reg.glyphs) + 1, corpus=self.corpus, log=self.log)
            if self.memory.mode == "checkpoint":
                checkpointing(base_model)
            glyphs = [g for g in reg.active() if g.trigger in self.triggers]
            init = rows_mod.init_rows(
                base_model, glyphs, cfg.init,
                lambda text: tok.encode(text, add_special_tokens=False).ids,
                first_glyph_id=reg.family.first_glyph_id, seed=cfg.seed)
            self.peft_model = attach_adapters(base_model, reg, self.triggers, cfg,
                                              {g.id: init[i] for i, g in enumerate(glyphs)})
        self._setup_objective()
        params = checkpoint.trainable(self.peft_model)
        for p in params.values():  # every adapter takes part in (distributed) training
            p.requires_grad_(True)
        lora = [p for n, p in params.items() if "lora_" in n]
        rows = [p for n, p in params.items() if "trainable_tokens_delta" in n]
        self.opt = torch.optim.AdamW([{"params": lora, "lr": cfg.lr, "weight_decay": 0.0},
                                      {"params": rows, "lr": cfg.embedding_lr,
                                       "weight_decay": 0.0}])
        # warm-up, then cosine to 10 %; over ``len(self.plan)``, which a time budget may cut
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / 10)
                                                       * (0.1 + 0.45 * (1 + math.cos(
                                                           math.pi * s / max(1, len(self.plan))))))
        self.model, self.opt = self.accelerator.prepare(self.loss_fn, self.opt)

    def _setup_objective(self) -> None:
        """The forward pass and the objective's module (what DDP wraps), its batch builder."""
        from .loss import GlyphLM

        cfg = self.cfg
        self.glm = GlyphLM(self.peft_model, self.info.tied)
        self.loss_fn = StepLoss(self.glm, cfg.objective, contrast=cfg.contrast,
                                margin=cfg.contrast_margin,
                                world=self.accelerator.num_processes)
        self.parts = PartBuilder(self.glm, self.examples, self.tok, self.reg, pad_id=self.pad_id,
                                 seed=cfg.seed, teacher=self.loss_fn.needs_teacher,
                                 contrast=cfg.contrast > 0,
                                 contrast_to=cfg.contrast_to)

    # ------------------------------------------------------------ step
    def step(self, trigger: str, idx: list[int]) -> StepStats:
        """One optimizer step on examples ``idx`` of ``trigger`` (this process's slice of them,
        in the memory plan's micro-batches)."""
        import torch

        t0 = time.time()
        acc = self.accelerator
        rank, world = acc.process_index, acc.num_processes
        mine = idx[rank::world]
        parts = self.parts.parts(self.step_no, trigger, mine or idx[:1], self.memory.parts,
                                 weight=1.0 if mine else 0.0)
        local = [sum(int((p.labels[:, 1:] != -100).sum()) for p in parts) if mine else 0,
                 len(mine)]
        tokens, seqs = (local if world == 1 else
                        acc.reduce(torch.tensor(local, device=acc.device), "sum").tolist())
        stats = Stats()
        self.opt.zero_grad(set_to_none=True)
        with active(self.peft_model, trigger), torch.random.fork_rng(devices=[]):
            # LoRA dropout draws its masks here, seeded by (seed, step, process): a resumed run
            # draws the same ones, and the caller's RNG stays untouched
            torch.manual_seed((self.cfg.seed * 1_000_003 + self.step_no) * 1024 + rank)
            for j, part in enumerate(parts):
                last = j == len(parts) - 1  # gradients are averaged across processes once
                with (nullcontext() if last or world == 1 else acc.no_sync(self.model)):
                    loss, st = self.model(part, tokens, seqs)
                    acc.backward(loss)
                if part.weight:
                    stats.add(st)
            totals = torch.tensor([stats.main, stats.nll, stats.gap], dtype=torch.float64)
            if world > 1:
                totals = acc.reduce(totals.to(acc.device), "sum").cpu()
            mean = totals[0].item() / max(1, tokens)
            if not math.isfinite(mean):
                raise TrainingError(
                    f"loss became {mean} at step {self.step_no + 1} (trigger {trigger}); "
                    f"the last good checkpoint ({checkpoint.latest(self.run)}) is kept: lower "
                    "--lr / --embedding-lr and run again with --resume")
            acc.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]
                                 if p.grad is not None], 1.0)
            self.opt.step()
        self.sched.step()
        self.step_no += 1
        has_nll = self.cfg.objective == "lm+distill" or (self.cfg.objective == "distill"
                                                          and self.cfg.contrast > 0)
        extra = {"nll": totals[1].item() / max(1, tokens)} if has_nll else {}
        if self.cfg.contrast:
            extra["gap"] = totals[2].item() / max(1, seqs)
        return StepStats(self.step_no, trigger, mean, tokens, time.time() - t0, extra)

    # ------------------------------------------------------------ loop
    def fit_time_budget(self, step_seconds: list[float]) -> None:
        """Cut the schedule to what fits the time budget, from the steps measured so far.

        The first step (allocations) is left out; held-out checks are counted. The decision is
        the same in every process and is written to ``train_config.json``, so a resumed run
        follows the same schedule.
        """
        import torch

        budget = self.cfg.time_budget
        if budget is None or len(step_seconds) < 2:
            return
        per_step = sum(step_seconds[1:]) / (len(step_seconds) - 1)
        if self.accelerator.num_processes > 1:  # every process must cut at the same step
            per_step = self.accelerator.reduce(torch.tensor(per_step), "mean").item()
        per_step *= 1 + 1 / self.cfg.eval_every
        fits = max(self.step_no, int(budget * 60 / per_step))
        if fits >= len(self.plan):
            return
        self.plan = self.plan[:fits]
        self.cfg.steps, self.cfg.epochs = fits, None
        if self.main:
            self.run.write_train_config(self.cfg.to_dict())
        self.log(f"time budget {budget:g} min at {per_step:.1f} s/step: the schedule ends at "
                 f"step {fits} ({fits * self.cfg.batch_size / len(self.examples):.2f} epochs)")

    def loop(self, on_step: Callable[[StepStats], None] | None = None) -> None:
        """Run the remaining steps: log, evaluate, checkpoint; ``on_step`` sees every step."""
        from tqdm import tqdm

        cfg = self.cfg
        measured: list[float] = []  # this session's step times, for the time budget
        bar = tqdm(total=len(self.plan), initial=self.step_no, desc="train", unit="step",
                   disable=not self.progress or not self.main, mininterval=1.0,
                   dynamic_ncols=True)
        self.glm.train()
        while self.step_no < len(self.plan):
            stats = self.step(*self.plan[self.step_no])
            self.tokens += stats.tokens
            self.seconds += stats.seconds
            measured.append(stats.seconds)
            if len(measured) == TIME_PROBE_STEPS:
                self.fit_time_budget(measured)
                bar.total = len(self.plan)
            last = stats.step == len(self.plan)
            rec = {"step": stats.step, "trigger": stats.trigger, "loss": round(stats.loss, 5),
                   "lr": self.sched.get_last_lr()[0], "tokens": stats.tokens,
                   "seconds": round(stats.seconds, 2),
                   **{k: round(v, 5) for k, v in stats.extra.items()}}
            if stats.step % cfg.eval_every == 0 or last:
                rec["heldout_loss"] = round(self.heldout_loss(self.held[: cfg.eval_examples]), 5)
            self.loss_log.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}",
                            tok_s=f"{self.tokens / max(self.seconds, 1e-9):.0f}",
                            **({"heldout": f"{rec['heldout_loss']:.3f}"}
                               if "heldout_loss" in rec else {}))
            bar.update(1)
            if stats.step % cfg.save_every == 0 and not last and self.main:
                checkpoint.save(self.run, stats.step, self.peft_model, self.opt, self.loss_log)
            if on_step is not None:
                on_step(stats)
        bar.close()

    def heldout_loss(self, examples: list[Example]) -> float:
        """Mean per-token loss over ``examples``, each with its own trigger's adapter."""
        import torch

        if not examples:
            return float("nan")
        total, count = 0.0, 0
        self.glm.eval()
        by_t: dict[str, list[Example]] = {}
        for e in examples:
            by_t.setdefault(e.trigger, []).append(e)
        with torch.no_grad():
            for t, exs in sorted(by_t.items()):
                with active(self.peft_model, t):
                    for i in range(0, len(exs), self.cfg.batch_size):
                        ids, mask, labels = collate(exs[i: i + self.cfg.batch_size], self.pad_id)
                        loss, n = self.glm(ids, mask, labels, t)
                        total += loss.item() * n
                        count += n
        self.glm.train()
        return total / max(1, count)

    # ------------------------------------------------------------ save
    def save(self) -> RunResult:
        """Final held-out loss, then (main process only) adapters, loss log and manifest."""
        metrics = {"train_loss_last": self.loss_log[-1]["loss"],
                   "heldout_loss": self.heldout_loss(self.held),
                   "heldout_examples": len(self.held), "train_examples": len(self.examples),
                   "steps": len(self.plan), "seconds": round(self.seconds, 1),
                   "processes": self.accelerator.num_processes,
                   "label_tokens_per_s": round(self.tokens / max(self.seconds, 1e-9), 1)}
        if self.main:
            manifest = Manifest.of_training(
                reg=self.reg, triggers=self.triggers, base=self.info, corpus=self.corpus,
                train_scenes=len(self.selected), config=self.cfg.to_dict(), metrics=metrics,
                prompt_lead=self.cfg.prompt_lead)
            self.run.publish(manifest, peft_model=self.peft_model,
                             loss_log=self.loss_log)
        self.accelerator.wait_for_everyone()
        return RunResult(out=self.run.path, steps=len(self.plan), metrics=metrics, main=self.main)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          log: Callable[[str], None] = print, progress: bool = True,
          on_step: Callable[[StepStats], None] | None = None) -> RunResult:
    """Train glyph rows + LoRA triggers into the run directory ``cfg.out``; return the result.

    ``on_step`` is called after every optimizer step (progress reporting, early stopping by
    raising). Example::

        >>> res = train(TrainConfig(out=Path("runs/mine"), steps=100))   # doctest: +SKIP
        >>> res.metrics["heldout_loss"]                                   # doctest: +SKIP
    """
    recipe = Recipe(cfg, log=log, progress=progress).setup(resume=resume, overwrite=overwrite)
    recipe.loop(on_step)
    return recipe.save()
