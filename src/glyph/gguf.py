"""GGUF bases: one ``.gguf`` file (llama.cpp / Ollama world) becomes a cached Hugging Face directory.

``--base model.gguf`` is checked first — the magic bytes, a header the ``gguf`` package can
read, every tensor inside the file, an architecture transformers can load from GGUF — and
only then converted, once: transformers dequantizes the weights to float32 and the
directory (``config.json``, ``model.safetensors``, the tokenizer GGUF carries) is published
atomically under ``$GLYPH_HOME/models/gguf-<sha256 prefix>/``, keyed by the file's content.
A bad file is one line naming it and what is wrong; nothing is cached.

The tokenizer keeps what GGUF gives it, including the ``[PAD151665]``… filler tokens that pad
the vocabulary to the embedding's rows: :mod:`glyph.vocab.tokenizer` treats them as free ids.

Example::

    >>> converted("~/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")     # doctest: +SKIP
    PosixPath('/home/me/.cache/glyph/models/gguf-1d9614638d18024d')
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

from . import paths
from .errors import ModelError
from .files import cached

MAGIC = b"GGUF"
MARKER = "glyph_gguf.json"
CONVERTER_VERSION = 1


def is_gguf(base: str | Path | None) -> bool:
    """Whether ``base`` names a ``.gguf`` file (by its suffix; the content is checked later)."""
    return base is not None and str(base).lower().endswith(".gguf")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def inspect(path: Path) -> dict:
    """The architecture and tensor count of a GGUF file, after checking it is whole.

    Raises :class:`ModelError` for a file that is missing, not GGUF, truncated, or of an
    architecture transformers cannot load from GGUF.
    """
    if not path.is_file():
        raise ModelError(f"base {path}: no such file; pass an existing .gguf file")
    with path.open("rb") as f:
        head = f.read(4)
    if head != MAGIC:
        raise ModelError(f"base {path}: not a GGUF file (it starts with {head!r}, not "
                         f"{MAGIC!r}); pass a .gguf model file or a model directory")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ModelError("reading a .gguf base needs the gguf package: pip install gguf") from None
    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        arch = field.parts[field.data[0]].tobytes().decode("utf-8")
    except (ValueError, IndexError, KeyError, UnicodeDecodeError, OSError) as e:
        raise ModelError(f"base {path}: the GGUF header cannot be read ({type(e).__name__}: "
                         f"{str(e)[:120]}); the file is damaged or truncated — download it "
                         "again") from None
    size = path.stat().st_size
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > size:
        raise ModelError(f"base {path}: truncated ({size:,} bytes, its tensors need {end:,}); "
                         "download it again")
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if arch not in GGUF_SUPPORTED_ARCHITECTURES:
        raise ModelError(f"base {path}: architecture {arch!r} cannot be loaded from GGUF by "
                         f"transformers (it loads {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})"
                         "; pass a Qwen-family model")
    return {"architecture": arch, "tensors": len(reader.tensors), "bytes": size}


def _convert_into(target: Path, path: Path, info: dict, sha: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    kw = dict(gguf_file=path.name)
    tok = AutoTokenizer.from_pretrained(str(path.parent), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32, **kw)
    # the weights are dequantized float32 now; transformers still marks the model as GGUF-
    # quantized and refuses to save it, so drop that mark
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target, safe_serialization=True)
    tok.save_pretrained(target)
    (target / MARKER).write_text(json.dumps({
        "version": CONVERTER_VERSION, "source": str(path), "sha256": sha, **info,
        "seconds": round(time.time() - t0, 1)}, indent=2))


def converted(path: str | Path, *, log: Callable[[str], None] | None = None) -> Path:
    """The Hugging Face directory of a GGUF file, converted on first use (about a minute)."""
    path = Path(path).expanduser().resolve()
    info = inspect(path)
    sha = _sha256(path)
    d = paths.home() / "models" / f"gguf-{sha[:16]}"
    return cached(d, lambda tmp: _convert_into(tmp, path, info, sha), done=MARKER, log=log,
                  what=f"converting {path.name} ({info['architecture']}, {info['bytes'] / 1e6:.0f} "
                       f"MB, {info['tensors']} tensors) to float32 once → {d} (about a minute)")
