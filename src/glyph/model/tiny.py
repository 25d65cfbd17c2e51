"""The embedded default base: a tiny model of the family's architecture, built offline.

For the Qwen family: a ``Qwen3ForCausalLM`` (hidden 128, 2 layers, tied embeddings, Qwen3's
real 151,936-row vocabulary) built deterministically and warmed up on the glyph-free
*training* text of the scene corpus, so it writes readable text. It is cached in
``$GLYPH_HOME/models/`` under a key of its config, corpus and recipe.

Warm-up trick (why it fits in minutes on 2 cores): rows of tokens that never occur in the
warm-up text are set to exactly zero and kept there, so their logits are exactly 0; the
full 151,936-way softmax is then computed *exactly* from the logits of the few thousand
occurring tokens plus ``log(#zero rows)`` — a ~10× cheaper step with the same loss.

Example::

    >>> default_base_dir(corpus)                  # doctest: +SKIP
    PosixPath('/home/me/.cache/glyph/models/tiny-qwen3-3f2a…')
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

from .. import paths
from ..corpus.scenes import header
from ..files import cached, publishing
from ..vocab.family import BaseFamily, family as get_family

BUILDER_VERSION = 2  # part of the cache key: bump when the built model changes
WARMUP = dict(steps=500, batch=16, seq_len=128, lr=3e-3, weight_decay=0.0, seed=0)  # benchmarks/base.md
DEFAULT_NAME = "tiny-qwen3 (embedded default)"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def warmup_texts(corpus) -> list[str]:
    """Glyph-free warm-up documents: header + text of every *training* scene, id order."""
    scenes = sorted(corpus.select(split="train"), key=lambda s: s.id)
    return [header(s.register, s.level, s.lang) + s.text for s in scenes]


def _config(fam: BaseFamily, **overrides):
    import transformers

    cls = getattr(transformers, fam.tiny_architecture)
    cfg_cls = getattr(transformers, fam.tiny_architecture.replace("ForCausalLM", "Config"))
    return cls, cfg_cls(**{**fam.tiny_config, **overrides})


def _compact_nll(small, log_zero):
    """The full model's loss computed on the compact one: zero rows contribute exp(0) each."""
    import torch

    def nll(x, y):
        logits = small(input_ids=x).logits.float()
        lse = torch.logaddexp(torch.logsumexp(logits, -1), log_zero)
        picked = logits.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return lse - torch.where(y >= 0, picked, torch.zeros_like(picked))
    return nll


def _warm_up(small, nll, data, steps: int, eval_docs, log) -> list[dict]:
    """AdamW on random windows of ``data``; the held-out loss every 50 steps."""
    import torch

    seq = WARMUP["seq_len"]
    n_chunks = max(1, (len(data) - 1) // seq)

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
    history, t0 = [], time.time()
    small.train()
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
    return history


def _expand_rows(small, model, used: list[int], tied: bool) -> None:
    """Write the compact model into the full-vocabulary one: unseen rows exactly zero."""
    import torch

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


def build_tiny_base(out: Path, texts: Sequence[str], *, steps: int = WARMUP["steps"],
                    tied: bool = True, config_overrides: dict | None = None,
                    eval_texts: Sequence[str] = (), log: Callable[[str], None] | None = None,
                    fam: BaseFamily | None = None) -> Path:
    """Build the tiny base deterministically and warm it up on ``texts``; save to ``out``.

    The warm-up trains a *compact* model whose vocabulary is only the tokens that occur in
    ``texts`` (a few thousand), with the loss of the full-vocabulary model whose other rows
    are exactly zero (their logits are exactly 0: ``logaddexp(lse, log #zero rows)``). The
    result is then written into a full-vocabulary model with those rows at zero — the same
    model as training the full one with the zero rows frozen, many times cheaper.
    ``steps=0`` gives the untrained (random) model; ``tied=False`` an untied variant (tests);
    ``eval_texts`` are scored at intervals (recorded in ``glyph_base.json``).
    """
    import torch

    from ..vocab import sources

    fam = fam or get_family()
    model_cls, full_cfg = _config(fam, tie_word_embeddings=tied, **(config_overrides or {}))
    rows = full_cfg.vocab_size
    base_tok = sources.load(sources.base_tokenizer_dir(fam))
    eos = fam.endoftext_id  # separates documents, as in pre-training
    docs = [base_tok.encode(t).ids + [eos] for t in texts]
    stream = [i for d in docs for i in d]
    used = sorted(set(stream) | {eos})
    remap = torch.full((rows,), -1, dtype=torch.long)
    remap[torch.tensor(used)] = torch.arange(len(used))
    log_zero = torch.tensor(math.log(rows - len(used)))
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):  # weight init is seeded; the caller's RNG is not
        torch.manual_seed(WARMUP["seed"])
        _, small_cfg = _config(fam, **{**full_cfg.to_dict(), "vocab_size": len(used),
                                       "pad_token_id": None, "bos_token_id": None,
                                       "eos_token_id": None})
        small = model_cls(small_cfg)
        eval_docs = [remap[torch.tensor(base_tok.encode(t).ids + [eos])] for t in eval_texts]
        history = _warm_up(small, _compact_nll(small, log_zero), remap[torch.tensor(stream)],
                           steps, eval_docs, log)
        torch.manual_seed(WARMUP["seed"])
        model = model_cls(full_cfg)
    _expand_rows(small, model, used, tied)
    import shutil

    with publishing(Path(out)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copytree(sources.base_tokenizer_dir(fam), tmp, dirs_exist_ok=True)
        (tmp / "glyph_base.json").write_text(json.dumps({
            "version": 1, "builder": BUILDER_VERSION, "family": fam.name,
            "warmup": {**WARMUP, "steps": steps}, "documents": len(texts),
            "tokens": len(stream), "vocab_used": len(used), "tied": tied,
            "seconds": round(time.time() - t0, 1), "history": history}, indent=2))
    return Path(out)


def default_base_dir(corpus=None, *, steps: int = WARMUP["steps"],
                     log: Callable[[str], None] | None = None,
                     fam: BaseFamily | None = None) -> Path:
    """The cached embedded default, built on first use (≈ 2–4 min on 2 cores)."""
    fam = fam or get_family()
    if corpus is None:
        from ..corpus import scenes
        from ..vocab import registry

        corpus = scenes.load_corpus(registry.load())
    texts = warmup_texts(corpus)
    key = _digest({"b": BUILDER_VERSION, "cfg": fam.tiny_config,
                   "w": {**WARMUP, "steps": steps}, "texts": _digest(texts)})[:12]
    d = paths.home() / "models" / f"tiny-qwen3-{key}"
    return cached(d, lambda tmp: build_tiny_base(tmp, texts, steps=steps, log=log, fam=fam),
                  done="glyph_base.json", log=log,
                  what=f"building the embedded tiny Qwen3 base once ({len(texts)} documents, "
                       f"{steps} warm-up steps) → {d}")
