"""Base models: the embedded tiny Qwen3 default, loading ``--base``, glyph rows and their init.

The **embedded default** is a tiny ``Qwen3ForCausalLM`` (hidden 128, 2 layers, tied
embeddings, Qwen3's real 151,936-row vocabulary) built deterministically offline and warmed
up on the glyph-free *training* text of the scene corpus, so it writes readable text. It is
cached in ``$GLYPH_HOME/models/`` under a key of its config, corpus and recipe.

Warm-up trick (why it fits in minutes on 2 cores): rows of tokens that never occur in the
warm-up text are set to exactly zero and kept there, so their logits are exactly 0; the
full 151,936-way softmax is then computed *exactly* from the logits of the few thousand
occurring tokens plus ``log(#zero rows)`` — a ~10× cheaper step with the same loss.

Glyph rows: the matrix is never shrunk; it grows only when a glyph id lies past the
existing rows (Qwen3 has 267 spare rows above its 151,669 tokens), to a multiple of 64.

Example::

    >>> model, info = load_base(None)            # doctest: +SKIP
    >>> info.tied, info.rows
    (True, 151936)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import paths
from .errors import ModelError
from .scenes import header

BUILDER_VERSION = 2  # part of the cache key: bump when the built model changes
TINY_CONFIG = dict(
    vocab_size=151936, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
    rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
)
WARMUP = dict(steps=500, batch=16, seq_len=128, lr=3e-3, weight_decay=0.0, seed=0)  # benchmarks/base.md
INIT_STRATEGIES = ("mean", "meaning", "random")
DEFAULT_INIT = "mean"  # chosen by measurement: benchmarks/train.md (init comparison)


@dataclass(frozen=True)
class BaseInfo:
    """What a run needs to know about its base model."""

    name: str           # "tiny-qwen3 (embedded default)" or the --base given
    path: str           # local directory the weights were loaded from
    fingerprint: str    # sha256 of config + weight file names/sizes (or tensor digest)
    tied: bool
    rows: int           # embedding rows after growing for glyphs
    original_rows: int  # rows before
    hidden: int


# ---------------------------------------------------------------- the embedded default
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def warmup_texts(corpus) -> list[str]:
    """Glyph-free warm-up documents: header + text of every *training* scene, id order."""
    scenes = sorted(corpus.select(split="train"), key=lambda s: s.id)
    return [header(s.register, s.level, s.lang) + s.text for s in scenes]


def build_tiny_base(out: Path, texts: Sequence[str], *, steps: int = WARMUP["steps"],
                    tied: bool = True, config_overrides: dict | None = None,
                    eval_texts: Sequence[str] = (), log: Callable[[str], None] | None = None) -> Path:
    """Build the tiny Qwen3 base deterministically and warm it up on ``texts``; save to ``out``.

    The warm-up trains a *compact* Qwen3 whose vocabulary is only the tokens that occur in
    ``texts`` (a few thousand), with the loss of the full 151,936-token model whose other rows
    are exactly zero (their logits are exactly 0: ``logaddexp(lse, log #zero rows)``). The
    result is then written into a full-vocabulary ``Qwen3ForCausalLM`` with those rows at zero
    — the same model as training the full one with the zero rows frozen, many times cheaper.
    ``steps=0`` gives the untrained (random) model; ``tied=False`` an untied variant (tests);
    ``eval_texts`` are scored at intervals (recorded in ``glyph_base.json``).
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from . import tokenizer as tk

    full_cfg = Qwen3Config(**{**TINY_CONFIG, "tie_word_embeddings": tied,
                              **(config_overrides or {})})
    rows = full_cfg.vocab_size
    base_tok = tk.load(tk.base_tokenizer_dir())
    eos = 151643  # <|endoftext|> separates documents, as in Qwen pre-training
    docs = [base_tok.encode(t).ids + [eos] for t in texts]
    stream = [i for d in docs for i in d]
    used = sorted(set(stream) | {eos})
    remap = torch.full((rows,), -1, dtype=torch.long)
    remap[torch.tensor(used)] = torch.arange(len(used))
    log_zero = torch.tensor(math.log(rows - len(used)))

    torch.manual_seed(WARMUP["seed"])
    small = Qwen3ForCausalLM(Qwen3Config(**{**full_cfg.to_dict(), "vocab_size": len(used),
                                            "pad_token_id": None, "bos_token_id": None,
                                            "eos_token_id": None}))
    small.train()

    def nll(x, y):  # the full model's loss: the zero rows contribute exp(0) each
        logits = small(input_ids=x).logits.float()
        lse = torch.logaddexp(torch.logsumexp(logits, -1), log_zero)
        picked = logits.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return lse - torch.where(y >= 0, picked, torch.zeros_like(picked))

    seq = WARMUP["seq_len"]
    data = remap[torch.tensor(stream)]
    n_chunks = max(1, (len(data) - 1) // seq)
    eval_docs = [remap[torch.tensor(base_tok.encode(t).ids + [eos])] for t in eval_texts]

    def eval_loss() -> float:
        small.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for d in eval_docs:
                x = d[:-1][:seq].clamp(min=0).unsqueeze(0)  # unseen input tokens read row 0
                y = d[1:][:seq].unsqueeze(0)
                total += nll(x, y).sum().item()
                count += y.numel()
        small.train()
        return total / max(1, count)

    params = list(small.parameters())
    opt = torch.optim.AdamW(params, lr=WARMUP["lr"], weight_decay=WARMUP["weight_decay"],
                            betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(1, steps)))
    g = torch.Generator().manual_seed(WARMUP["seed"])
    history = []
    t0 = time.time()
    for step in range(steps):
        starts = torch.randint(0, n_chunks, (WARMUP["batch"],), generator=g) * seq
        x = torch.stack([data[s: s + seq] for s in starts])
        y = torch.stack([data[s + 1: s + seq + 1] for s in starts])
        loss = nll(x, y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        last = step == steps - 1
        if eval_docs and ((step + 1) % 50 == 0 or last):
            history.append({"step": step + 1, "loss": round(loss.item(), 4),
                            "eval_loss": round(eval_loss(), 4)})
        if log and (step % 50 == 0 or last):
            log(f"  warm-up step {step + 1}/{steps}  loss {loss.item():.3f}  "
                f"{time.time() - t0:.0f}s")

    # write the compact model into a full-vocabulary Qwen3: unseen rows exactly zero
    torch.manual_seed(WARMUP["seed"])
    model = Qwen3ForCausalLM(full_cfg)
    state = small.state_dict()
    idx = torch.tensor(used)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.embed_tokens.weight" or (name == "lm_head.weight" and not tied):
                p.zero_()
                p[idx] = state[name]
            else:
                p.copy_(state[name])
    model.eval()
    out = Path(out)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    import shutil

    shutil.copytree(tk.base_tokenizer_dir(), tmp, dirs_exist_ok=True)
    (tmp / "glyph_base.json").write_text(json.dumps({
        "version": 1, "builder": BUILDER_VERSION, "warmup": {**WARMUP, "steps": steps},
        "documents": len(texts), "tokens": len(stream), "vocab_used": len(used),
        "tied": tied, "seconds": round(time.time() - t0, 1), "history": history}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def default_base_dir(corpus=None, *, steps: int = WARMUP["steps"],
                     log: Callable[[str], None] | None = None) -> Path:
    """The cached embedded default, built on first use (≈ 2–4 min on 2 cores)."""
    from filelock import FileLock

    if corpus is None:
        from . import registry, scenes

        corpus = scenes.load_corpus(registry.load())
    texts = warmup_texts(corpus)
    key = _digest({"b": BUILDER_VERSION, "cfg": TINY_CONFIG, "w": {**WARMUP, "steps": steps},
                   "texts": _digest(texts)})[:12]
    d = paths.home() / "models" / f"tiny-qwen3-{key}"
    d.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(d) + ".lock"):
        if not (d / "glyph_base.json").exists():
            if log:
                log(f"building the embedded tiny Qwen3 base once ({len(texts)} documents, "
                    f"{steps} warm-up steps) → {d}")
            build_tiny_base(d, texts, steps=steps, log=log)
    return d


# ---------------------------------------------------------------- loading any base
@contextmanager
def quiet_loading():
    """No progress bar or load report from transformers while glyph loads a checkpoint."""
    from transformers.utils import logging as hf_logging

    bar, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def resolve_base(base: str | None, corpus=None, log=None) -> tuple[str, Path | str]:
    """(display name, path-or-hub-id) of the base to load."""
    if base is None:
        return "tiny-qwen3 (embedded default)", default_base_dir(corpus, log=log)
    p = Path(base).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ModelError(f"--base {base}: not a model directory (no config.json); pass a "
                             "directory saved with save_pretrained or a hub id")
        return base, p.resolve()
    if base.startswith((".", "/", "~")) or base.count("/") > 1:
        raise ModelError(f"--base {base}: no such directory; pass an existing model directory "
                         "or a hub id such as Qwen/Qwen3-0.6B")
    return base, base


def check_base(where: Path | str) -> None:
    """Fail fast (before loading weights) on a base that is not a causal LM or not Qwen-family."""
    from transformers import AutoConfig

    from . import tokenizer as tk

    try:
        cfg = AutoConfig.from_pretrained(str(where))
    except Exception as e:  # noqa: BLE001 — any loader failure becomes one clear line
        raise ModelError(f"cannot read the config of --base {where}: {str(e).splitlines()[0]}; "
                         "pass a local model directory (offline) or a reachable hub id") from None
    archs = getattr(cfg, "architectures", None) or []
    if getattr(cfg, "is_encoder_decoder", False) or (archs and not any(
            a.endswith("ForCausalLM") for a in archs)):
        raise ModelError(f"--base {where} is a {', '.join(archs) or cfg.model_type}, not a causal "
                         "LM; pass a *ForCausalLM checkpoint such as a Qwen3 model")
    try:
        tok, _, _ = tk.load_base(str(where))
    except Exception as e:  # noqa: BLE001
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"--base {where}: its tokenizer is not Qwen-family ({msg}); glyph needs "
                         "a Qwen2/2.5/3 tokenizer") from None


def fingerprint_dir(path: Path | str) -> str:
    """Cheap, stable fingerprint of a model directory: config + weight file names and sizes."""
    p = Path(path)
    if not p.is_dir():
        return _digest({"hub": str(path)})[:16]
    items = {"config": json.loads((p / "config.json").read_text())}
    for f in sorted(p.glob("*.safetensors")):
        items[f.name] = f.stat().st_size
    return _digest(items)[:16]


def load_base(base: str | None, *, min_rows: int = 0, corpus=None, log=None, dtype=None):
    """Load a base causal LM (default: the embedded tiny Qwen3) and grow it for glyph ids.

    Returns ``(model, BaseInfo)``. The model is in eval mode, float32 unless ``dtype``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    name, where = resolve_base(base, corpus, log)
    if base is not None:
        check_base(where)
    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(where), dtype=dtype or torch.float32)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load --base {name}: {str(e).splitlines()[0]}") from None
    original = model.get_input_embeddings().weight.shape[0]
    rows = grow_rows(model, min_rows)
    model.eval()
    tied = is_tied(model)
    return model, BaseInfo(name=name, path=str(where), fingerprint=fingerprint_dir(where),
                           tied=tied, rows=rows, original_rows=original,
                           hidden=model.get_input_embeddings().weight.shape[1])


def is_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def grow_rows(model, min_rows: int) -> int:
    """Grow (never shrink) the embedding to hold ``min_rows`` rows, to a multiple of 64."""
    import copy

    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    if min_rows <= rows:
        return rows
    target = ((min_rows + 63) // 64) * 64
    model.config = copy.deepcopy(model.config)  # resize edits the config object in place
    torch.manual_seed(0)  # the new rows are initialised below anyway; keep it deterministic
    model.resize_token_embeddings(target, mean_resizing=False)
    return model.get_input_embeddings().weight.shape[0]


# ---------------------------------------------------------------- glyph row initialisation
def init_rows(model, glyphs, strategy: str, tokenizer, seed: int = 0):
    """Initial embedding rows for ``glyphs`` (list of registry Glyph), shape [n, hidden].

    - ``mean``: mean of all *trained* rows of the base vocabulary (non-zero rows below 151669)
      — bounds the change in the model's output distribution;
    - ``meaning``: mean of the rows of the tokens of the glyph's written meaning — a head start;
    - ``random``: normal with the trained rows' std.
    Claimed glyphs (already a Qwen token) keep their own row whatever the strategy.
    """
    import torch

    if strategy not in INIT_STRATEGIES:
        raise ModelError(f"unknown init strategy {strategy!r}; use one of {INIT_STRATEGIES}")
    W = model.get_input_embeddings().weight.detach()
    base = W[:151669]
    trained = base[base.abs().sum(-1) > 0]
    mean = trained.mean(0)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for gl in glyphs:
        if gl.kind == "claimed":
            rows.append(W[gl.id].clone())
        elif strategy == "mean":
            rows.append(mean.clone())
        elif strategy == "random":
            rows.append(torch.randn(W.shape[1], generator=g) * trained.std())
        else:
            ids = [i for i in tokenizer.encode(gl.meaning, add_special_tokens=False)
                   if i < 151669] if hasattr(tokenizer, "encode") else []
            ids = [i for i in ids if W[i].abs().sum() > 0]
            rows.append(W[ids].mean(0) if ids else mean.clone())
    return torch.stack(rows).to(W.dtype)


def info_dict(info: BaseInfo) -> dict:
    return asdict(info)
