"""Base models: resolving ``--base``, loading it, and growing its embedding for glyph ids.

``--base`` is the embedded tiny default (:mod:`glyph.model.tiny`) when omitted, else a local
model directory or a hub id of a causal LM whose tokenizer belongs to the registry's base
family. Loading checks the config and the tokenizer *before* the weights, so a wrong base
fails in a second, not after a minute.

Glyph rows: the matrix is never shrunk; it grows only when a glyph id lies past the
existing rows (Qwen3 has 267 spare rows above its 151,669 tokens), to a multiple of 64.

Example::

    >>> model, info = load_base(None)            # doctest: +SKIP
    >>> info.tied, info.rows  # doctest: +SKIP
    (True, 151936)
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..gguf import converted, is_gguf
from ..vocab.family import DEFAULT_FAMILY
from .tiny import DEFAULT_NAME, default_base_dir


@dataclass(frozen=True)
class BaseInfo:
    """What a run needs to know about its base model."""

    name: str           # "tiny-qwen3 (embedded default)" or the --base given
    path: str           # local directory the weights were loaded from
    fingerprint: str    # sha256 of config + weight file names/sizes
    tied: bool
    rows: int           # embedding rows after growing for glyphs
    original_rows: int  # rows before
    hidden: int
    family: str = DEFAULT_FAMILY


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
        return DEFAULT_NAME, default_base_dir(corpus, log=log)
    if is_gguf(base):
        return base, converted(base, log=log)
    p = Path(base).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ModelError(f"base {base}: not a model directory (no config.json); pass a "
                             "directory saved with save_pretrained or a hub id")
        return base, p.resolve()
    if base.startswith((".", "/", "~")) or base.count("/") > 1:
        raise ModelError(f"base {base}: no such directory; pass an existing model directory "
                         "or a hub id such as Qwen/Qwen3-0.6B")
    return base, base


def check_base(where: Path | str, family: str = DEFAULT_FAMILY) -> None:
    """Fail fast (before loading weights) on a base that is not a causal LM or not of the family."""
    from transformers import AutoConfig

    from ..vocab import sources
    from ..vocab.family import family as get_family

    try:
        cfg = AutoConfig.from_pretrained(str(where))
    except Exception as e:  # noqa: BLE001 — any loader failure becomes one clear line
        raise ModelError(f"cannot read the config of base {where}: {str(e).splitlines()[0]}; "
                         "pass a local model directory (offline) or a reachable hub id") from None
    archs = getattr(cfg, "architectures", None) or []
    if getattr(cfg, "is_encoder_decoder", False) or (archs and not any(
            a.endswith("ForCausalLM") for a in archs)):
        raise ModelError(f"base {where} is a {', '.join(archs) or cfg.model_type}, not a causal "
                         "LM; pass a *ForCausalLM checkpoint such as a Qwen3 model")
    fam = get_family(family)
    try:
        sources.load_base(str(where))
    except Exception as e:  # noqa: BLE001
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"base {where}: its tokenizer is not {fam.name.capitalize()}-family "
                         f"({msg}); glyph needs a tokenizer of the {fam.description}") from None


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def fingerprint_dir(path: Path | str) -> str:
    """Cheap, stable fingerprint of a model directory: config + weight file names and sizes."""
    p = Path(path)
    if not p.is_dir():
        return _digest({"hub": str(path)})[:16]
    items = {"config": json.loads((p / "config.json").read_text())}
    for f in sorted(p.glob("*.safetensors")):
        items[f.name] = f.stat().st_size
    return _digest(items)[:16]


def load_pretrained(where: Path | str, *, rows: int = 0, dtype=None, name: str | None = None):
    """``from_pretrained`` quietly, in float32 unless ``dtype``, grown to ``rows`` rows, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(where), dtype=dtype or torch.float32)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load base {name or where}: {str(e).splitlines()[0]}") from None
    grow_rows(model, rows)
    return model.eval()


def load_base(base: str | None, *, min_rows: int = 0, corpus=None, log=None, dtype=None):
    """Load a base causal LM (default: the embedded tiny Qwen3) and grow it for glyph ids.

    Returns ``(model, BaseInfo)``. The model is in eval mode, float32 unless ``dtype``.
    """
    name, where = resolve_base(base, corpus, log)
    if base is not None:
        check_base(where)
    model = load_pretrained(where, dtype=dtype, name=name)
    original = model.get_input_embeddings().weight.shape[0]
    rows = grow_rows(model, min_rows)
    return model, BaseInfo(name=name, path=str(where), fingerprint=fingerprint_dir(where),
                           tied=is_tied(model), rows=rows, original_rows=original,
                           hidden=model.get_input_embeddings().weight.shape[1])


def is_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def grow_rows(model, min_rows: int) -> int:
    """Grow (never shrink) the embedding to hold ``min_rows`` rows, to a multiple of 64.

    The new rows are drawn from a fixed seed inside a forked RNG: deterministic, and the
    caller's random state is left as it was.
    """
    import copy

    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    if min_rows <= rows:
        return rows
    target = ((min_rows + 63) // 64) * 64
    model.config = copy.deepcopy(model.config)  # resize edits the config object in place
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.resize_token_embeddings(target, mean_resizing=False)
    return model.get_input_embeddings().weight.shape[0]
