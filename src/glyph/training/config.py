"""What defines a training run: :class:`TrainConfig`, validated data with its defaults in one place.

Every field carries its help text; ``glyph train``'s options are generated from these fields
(:func:`glyph.cli.options.config_options`), so defaults and help exist once. The config is
saved as ``train_config.json`` in the run and checked on resume.

Example::

    >>> cfg = TrainConfig(out=Path("runs/x"), steps=10, lora_r=4)
    >>> cfg.lora_alpha, cfg.total_epochs
    (8, 3.0)
    >>> TrainConfig(out=Path("runs/x"), lr=-1)
    Traceback (most recent call last):
    ...
    glyph.errors.ConfigError: --lr must be a positive number
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..corpus.scenes import LEAD, LEVELS, TIERS
from ..errors import ConfigError
from ..model.rows import DEFAULT_INIT, STRATEGIES
from .memory import MODES

DEFAULT_EPOCHS = 3.0        # the embedded default: small and fast
REAL_BASE_EPOCHS = 1.0      # a --base: one pass over the data …
# … or this long of training steps, whichever is shorter: with loading (~2 min) and the
# held-out losses (~5 min on 262 scenes) the whole run stays within 45 min (benchmarks/train.md)
REAL_BASE_MINUTES = 35.0

# the names StepLoss knows (training/objectives.py); here so the CLI never imports torch
OBJECTIVES = ("lm", "distill", "lm+distill")
# the contrast term's wrong glyph: on another trigger (its own adapter), or a sibling on the
# same trigger (the same adapter: only the embedding rows differ)
CONTRAST_TO = ("trigger", "sibling")
# what gets its own LoRA adapter: each trigger of the registry (glyphs that share a trigger
# share one), or each glyph (its trigger becomes its name; the registry file is untouched).
# auto: per glyph on a --base — on the real base it raised held-out specificity from 0.23 to
# 0.57 at the default budget (docs/real-run) — and per trigger on the embedded default, where
# it was not measured
ADAPTERS = ("auto", "trigger", "glyph")


def opt(default: Any = None, help: str = "", *, cli: bool = True, choices: tuple | None = None,
        csv: bool = False, **kw) -> Any:
    """A config field with the metadata the CLI needs (help, choices, comma-list)."""
    meta = {"help": help, "cli": cli, "choices": choices, "csv": csv}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainConfig:
    """Everything that defines a run (saved as ``train_config.json``; checked on resume)."""

    out: Path = opt(None, "the run directory to write")
    base: str | None = opt(None, "local model dir, .gguf file or hub id (default: the embedded "
                           "tiny Qwen3)")
    tiers: tuple[str, ...] = opt(TIERS, "corpus tiers to train on", csv=True, choices=TIERS)
    registers: tuple[str, ...] = opt((), "registers to train on (default: all)", csv=True)
    levels: tuple[str, ...] = opt((), "levels to train on (default: all)", csv=True,
                                  choices=LEVELS)
    steps: int | None = opt(None, "optimizer steps (default: --epochs)")
    epochs: float | None = opt(None, f"passes over the data (default: {DEFAULT_EPOCHS:g} on the "
                               f"embedded base; {REAL_BASE_EPOCHS:g} on a --base, within "
                               f"{REAL_BASE_MINUTES:g} minutes)")
    max_minutes: float | None = opt(None, "cut the schedule to what fits in this many minutes, "
                                    "measured on the first steps")
    batch_size: int = opt(8, "scenes per step")
    max_len: int = opt(192, "tokens per example (prompt + scene), longer ones are cut")
    lr: float = opt(2e-3, "LoRA learning rate")
    embedding_lr: float = opt(2e-2, "learning rate of the glyph rows")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int | None = opt(None, "LoRA alpha (default: 2 × rank)")
    lora_dropout: float = opt(0.0, "share of each LoRA layer's inputs dropped while training "
                              "(a regulariser against memorising the scenes; 0: off)")
    init: str = opt(DEFAULT_INIT, "glyph row initialisation (default: the measured best)",
                    choices=tuple(STRATEGIES))
    seed: int = opt(0, "seed of adapter init and data order")
    eval_every: int = opt(25, "steps between held-out loss checks")
    eval_examples: int = opt(32, "held-out examples scored at each check", cli=False)
    save_every: int = opt(25, "steps between checkpoints")
    strict: bool = opt(False, "error (not warn) on glyphs without scenes")
    fraction: float = opt(1.0, "train on this deterministic share of the scenes")
    objective: str = opt("lm", "what a step minimises: the scene's NLL after the glyph (lm), "
                         "KL to the base prompted with the written meaning (distill), or both",
                         choices=OBJECTIVES)
    contrast: float = opt(0.0, "weight of the contrast term: a wrong glyph with its adapter "
                          "must make the scene less likely than its own (0: off)")
    contrast_margin: float = opt(1.0, "the margin, in nats per token, of the contrast term")
    contrast_to: str = opt("trigger", "the contrast term's wrong glyph: one of another trigger "
                           "(its adapter), or a sibling on the same trigger (same adapter, "
                           "another row; a trigger with one glyph uses another trigger's)",
                           choices=CONTRAST_TO)
    adapters: str = opt("auto", "one LoRA adapter per registry trigger (glyphs that share a "
                        "trigger share it), per glyph (each its own, named after it), or auto: "
                        "per glyph on a --base, per trigger on the embedded default",
                        choices=ADAPTERS)
    lead: bool = opt(False, "start every prompt with a newline so the glyph is never the first "
                     "token, which a real Qwen turns into an attention sink")
    bucket: bool = opt(True, "batch scenes of similar length together (less padding)")
    balance: bool = opt(True, "give every trigger the same number of steps")
    memory: str = opt("auto", "fast (one pass), split (micro-batches), checkpoint (gradient "
                      "checkpointing), or auto: the fastest that fits --memory-budget",
                      choices=MODES)
    memory_budget: float | None = opt(None, "GB a step may use (default: the smaller of 8 and "
                                      "80% of the memory available)")

    def __post_init__(self) -> None:
        if self.out is None:
            raise ConfigError("a run needs an output directory (out)")
        self.out = Path(self.out)
        for k in ("tiers", "registers", "levels"):
            setattr(self, k, tuple(getattr(self, k) or ()))
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_r
        self._check()

    def _check(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("pass either --steps or --epochs, not both")
        for k in ("batch_size", "max_len", "lora_r", "lora_alpha", "save_every", "eval_every",
                  "eval_examples"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"--{k.replace('_', '-')} must be an integer >= 1")
        if self.steps is not None and self.steps < 1 or self.epochs is not None and self.epochs <= 0:
            raise ConfigError("--steps / --epochs must be positive")
        for k in ("lr", "embedding_lr"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ConfigError(f"--{k.replace('_', '-')} must be a positive number")
        bad = [t for t in self.tiers if t not in TIERS]
        if bad or not self.tiers:
            raise ConfigError(f"unknown tier(s) {bad}; use {','.join(TIERS)}")
        bad = [lv for lv in self.levels if lv not in LEVELS]
        if bad:
            raise ConfigError(f"unknown level(s) {bad}; use {','.join(LEVELS)}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"--fraction {self.fraction} must be in (0, 1]")
        for f in fields(self):  # one-of options (--init, --objective, …): their own choices
            choices = f.metadata.get("choices")
            if choices and not f.metadata.get("csv") and getattr(self, f.name) not in choices:
                raise ConfigError(f"unknown --{f.name.replace('_', '-')} "
                                  f"{getattr(self, f.name)!r}; use {', '.join(choices)}")
        for k in ("contrast", "contrast_margin"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ConfigError(f"--{k.replace('_', '-')} must be a number >= 0")
        if not (isinstance(self.lora_dropout, (int, float)) and 0 <= self.lora_dropout < 1):
            raise ConfigError("--lora-dropout must be a number in [0, 1)")
        if self.max_minutes is not None and not (self.max_minutes > 0
                                                 and math.isfinite(self.max_minutes)):
            raise ConfigError("--max-minutes must be a positive number")
        if self.memory_budget is not None and not (self.memory_budget > 0
                                                   and math.isfinite(self.memory_budget)):
            raise ConfigError("--memory-budget must be a positive number of GB")

    @property
    def total_epochs(self) -> float:
        if self.epochs is not None:
            return self.epochs
        return DEFAULT_EPOCHS if self.base is None else REAL_BASE_EPOCHS

    @property
    def adapter_per_glyph(self) -> bool:
        """Whether every glyph gets its own adapter (``adapters``, with ``auto`` resolved)."""
        return self.adapters == "glyph" or self.adapters == "auto" and self.base is not None

    @property
    def prompt_lead(self) -> str:
        """What every prompt of the run starts with."""
        return LEAD if self.lead else ""

    @property
    def time_budget(self) -> float | None:
        """Minutes the schedule must fit in: ``max_minutes``, or on a ``--base`` without
        ``--steps``/``--epochs`` the measured default (a 0.5B model on 2 CPU cores trains about
        0.7 epochs of the starter corpus in it)."""
        if self.max_minutes is not None:
            return self.max_minutes
        if self.base is not None and self.steps is None and self.epochs is None:
            return REAL_BASE_MINUTES
        return None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        for k in ("tiers", "registers", "levels"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, data: dict, **override) -> "TrainConfig":
        """A config from ``train_config.json`` (unknown keys refused), with ``override`` applied."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"train_config.json has unknown key(s) {sorted(unknown)}; it was "
                              "written by another glyph version: start the run again")
        # saved before --adapters existed: it trained one adapter per trigger, and a resume
        # must rebuild the same adapters
        return cls(**{"adapters": "trigger", **data, **override})
