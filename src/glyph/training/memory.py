"""How a training step fits in memory: one pass, micro-batches, or gradient checkpointing.

A real base trained on a CPU keeps its float32 weights (0.5B parameters: 2.5 GB) and, per
token of the batch, the activations of every layer for the backward pass (about 6 MB per
token on Qwen2.5-0.5B: 8 scenes × 192 tokens ≈ 9 GB). The modes, fastest first:

- ``fast`` — the whole batch in one pass;
- ``split`` — the batch in N micro-batches whose gradients add up to the same step (exact;
  activations ÷ N, nearly the same speed);
- ``checkpoint`` — gradient checkpointing: each layer's activations are recomputed in the
  backward pass (activations ÷ ~20, about a third more compute), split too if needed.

``auto`` takes the fastest that fits the budget (default: the smaller of 8 GiB and 80 % of
the memory available now), estimated *before* the model loads from its config and weight
files; when nothing fits the memory available, training refuses with the flags that would.
The per-token coefficients were measured on the real Qwen2.5-0.5B (benchmarks/train.md).

Example::

    >>> p = plan_memory("auto", budget_gb=None, batch_size=8, max_len=192, dims=dims)  # doctest: +SKIP
    >>> p.mode, p.parts, round(p.estimate_gb, 1)                                       # doctest: +SKIP
    ('split', 2, 7.1)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

MODES = ("auto", "fast", "split", "checkpoint")
DEFAULT_CAP_GB = 8.0
# floats kept per token per layer for the backward pass, as a · hidden + b · intermediate
# (measured on Qwen2.5-0.5B, hidden 896 / intermediate 4864, see benchmarks/train.md)
ACT_HIDDEN, ACT_INTERMEDIATE = 12, 10
HEAD_BYTES = 1 << 30       # the fused head's chunks (two [chunk, vocabulary] float tensors) + slack
OVERHEAD_BYTES = 600 << 20  # python, torch, tokenizer, optimizer state of LoRA


@dataclass(frozen=True)
class ModelDims:
    """What the estimate needs to know about a base, read without loading it."""

    layers: int
    hidden: int
    intermediate: int
    weight_bytes: int   # as loaded (float32)


@dataclass(frozen=True)
class MemoryPlan:
    mode: str           # fast | split | checkpoint
    parts: int          # micro-batches per step
    estimate_gb: float
    budget_gb: float
    available_gb: float | None

    def describe(self) -> str:
        split = f" in {self.parts} micro-batches" if self.parts > 1 else ""
        return (f"memory: {self.mode}{split}, estimated peak {self.estimate_gb:.1f} GB "
                f"(budget {self.budget_gb:.1f} GB)")


def available_gb() -> float | None:
    """MemAvailable from /proc/meminfo (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def dims_of(model_dir: Path | str) -> ModelDims | None:
    """Layers, widths and float32 weight bytes of a local model directory (None if unknown)."""
    d = Path(model_dir)
    try:
        cfg = json.loads((d / "config.json").read_text())
        layers, hidden = int(cfg["num_hidden_layers"]), int(cfg["hidden_size"])
        inter = int(cfg.get("intermediate_size") or 4 * hidden)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    elements = 0
    try:
        for f in d.glob("*.safetensors"):
            with f.open("rb") as fh:  # the header says every tensor's shape: no weight is read
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(min(n, 100 << 20)))
            elements += sum(math.prod(v["shape"]) for k, v in header.items()
                            if k != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # damaged weights: loading them says what is wrong, in one line
    return ModelDims(layers, hidden, inter, 4 * elements)


def estimate_bytes(dims: ModelDims, tokens: int, *, checkpoint: bool, passes: int = 1) -> int:
    """Peak bytes of one training step over ``tokens`` positions (``passes``: forward passes
    held at once, 2 with the contrast term)."""
    per_layer = (ACT_HIDDEN * dims.hidden + ACT_INTERMEDIATE * dims.intermediate) * 4
    if checkpoint:  # each layer's input is kept; one layer at a time is recomputed
        acts = tokens * (dims.layers * dims.hidden * 4 + per_layer)
    else:
        acts = tokens * dims.layers * per_layer
    return dims.weight_bytes + passes * acts + HEAD_BYTES + OVERHEAD_BYTES


def plan_memory(mode: str, *, budget_gb: float | None, batch_size: int, max_len: int,
                dims: ModelDims | None, passes: int = 1) -> MemoryPlan:
    """The fastest way to run a step within the budget (see the module docstring)."""
    if mode not in MODES:
        raise ConfigError(f"unknown memory mode {mode!r}; use one of {', '.join(MODES)}")
    avail = available_gb()
    budget = budget_gb if budget_gb is not None else min(
        DEFAULT_CAP_GB, 0.8 * avail if avail else DEFAULT_CAP_GB)
    if dims is None:  # nothing to estimate from (a hub id): one pass, as asked
        return MemoryPlan("checkpoint" if mode == "checkpoint" else "fast", 1, 0.0, budget, avail)
    options = {"fast": [(False, 1)],
               "split": [(False, p) for p in _splits(batch_size)],
               "checkpoint": [(True, p) for p in _splits(batch_size)]}
    candidates = options["fast"] + options["split"][1:] + options["checkpoint"] \
        if mode == "auto" else options[mode]
    plans = []
    for ckpt, parts in candidates:
        tokens = math.ceil(batch_size / parts) * max_len
        gb = estimate_bytes(dims, tokens, checkpoint=ckpt, passes=passes) / 2**30
        plans.append(MemoryPlan("checkpoint" if ckpt else ("split" if parts > 1 else "fast"),
                                parts, gb, budget, avail))
    fits = [p for p in plans if p.estimate_gb <= budget]
    if fits:
        return fits[0]
    smallest = min(plans, key=lambda p: p.estimate_gb)
    if avail is None or smallest.estimate_gb <= 0.9 * avail:
        return smallest  # over the budget, but the machine has room: the leanest plan
    raise ConfigError(
        f"a training step needs about {smallest.estimate_gb:.1f} GB even in its leanest mode "
        f"({smallest.mode}, {smallest.parts} micro-batches) but {avail:.1f} GB are free; "
        f"lower --batch-size or --max-len, or pass --memory checkpoint")


def _splits(batch_size: int) -> list[int]:
    """1, 2, 4, … micro-batches, up to one example each."""
    out, p = [], 1
    while p < batch_size:
        out.append(p)
        p *= 2
    return out + [batch_size]
