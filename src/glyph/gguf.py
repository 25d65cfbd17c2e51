"""GGUF bases: one ``.gguf`` file (llama.cpp / Ollama world) becomes a cached Hugging Face directory.

``--base model.gguf`` is checked first — the magic bytes, a header that reads to its end,
every tensor inside the file, an architecture transformers can load from GGUF — and
only then converted, once: transformers dequantizes the weights to float32 and the
directory (``config.json``, ``model.safetensors``, the tokenizer GGUF carries) is published
atomically under ``$GLYPH_HOME/models/gguf-<sha256 prefix>-v<converter version>/``, keyed by
the file's content.
A bad file is one line naming it and what is wrong; nothing is cached.

The tokenizer keeps what GGUF gives it, including the ``[PAD151665]``… filler tokens that pad
the vocabulary to the embedding's rows (:mod:`glyph.vocab.tokenizer` treats them as free ids),
plus the normaliser transformers applies when it loads the directory (NFC for Qwen), so
``tokenizers`` and transformers read it alike.

Example::

    >>> converted("~/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")     # doctest: +SKIP
    PosixPath('/home/me/.cache/glyph/models/gguf-1d9614638d18024d-v2')
"""
from __future__ import annotations

import hashlib
import json
import mmap
import struct
import time
from pathlib import Path
from typing import Callable

from . import paths
from .errors import ModelError
from .files import cached

MAGIC = b"GGUF"
MARKER = "glyph_gguf.json"
# Bump when the converted directory changes: it is part of the cache key of converted().
CONVERTER_VERSION = 2


def is_gguf(base: str | Path | None) -> bool:
    """Whether ``base`` names a ``.gguf`` file (by its suffix; the content is checked later)."""
    return base is not None and str(base).lower().endswith(".gguf")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# GGUF metadata value types (gguf.GGUFValueType) and the byte width of the fixed-size ones
_STRING, _ARRAY = 8, 9
_WIDTH = {0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8}
_MAX_DIMS = 4  # ggml tensors have at most 4 dimensions


class _Damaged(Exception):
    """The header is not what GGUF says it must be (the reason is the message)."""


class _CutShort(Exception):
    """The file ends inside its header."""


class _Cursor:
    """Reads a GGUF header front to back, raising :class:`_CutShort` at the file's end."""

    def __init__(self, buf, size: int):
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, n: int) -> int:
        """Skip ``n`` bytes; return where they start."""
        if n < 0 or self.pos + n > self.size:
            raise _CutShort
        at, self.pos = self.pos, self.pos + n
        return at

    def num(self, fmt: str) -> int:
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> bytes:
        n = self.num("<Q")
        at = self.take(n)
        return bytes(self.buf[at: at + n])

    def skip_value(self, vtype: int) -> None:
        if vtype in _WIDTH:
            self.take(_WIDTH[vtype])
        elif vtype == _STRING:
            self.take(self.num("<Q"))
        elif vtype == _ARRAY:
            etype, count = self.num("<I"), self.num("<Q")
            if etype in _WIDTH:
                self.take(count * _WIDTH[etype])
            else:  # strings or nested arrays: walk them (a vocabulary: ~0.1 s per 100k)
                for _ in range(count):
                    self.skip_value(etype)
        else:
            raise _Damaged(f"unknown value type {vtype} at byte {self.pos:,}")


def _read_header(buf, size: int) -> tuple[str, list[tuple[str, int, int, int]], int]:
    """``(architecture, [(tensor name, ggml type, elements, offset)], start of tensor data)``.

    Only the header is read (the string arrays of a vocabulary are skipped by their lengths),
    so a truncated file is told apart from a damaged header, and in a fraction of a second
    where ``GGUFReader`` parses every token.
    """
    c = _Cursor(buf, size)
    c.take(4)  # the magic, checked by the caller
    version = c.num("<I")
    if version not in (2, 3):  # v1 counted in 32 bits; big-endian files read as huge versions
        raise _Damaged(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = c.num("<Q"), c.num("<Q")
    arch, alignment = None, 32
    for _ in range(n_kv):
        key, vtype = c.string(), c.num("<I")
        if key == b"general.architecture" and vtype == _STRING:
            arch = c.string().decode("utf-8", "replace")
        elif key == b"general.alignment" and vtype == 4:
            alignment = c.num("<I")
        else:
            c.skip_value(vtype)
    if arch is None:
        raise _Damaged("it has no general.architecture")
    if alignment < 1 or alignment & (alignment - 1):
        raise _Damaged(f"general.alignment {alignment} is not a power of two")
    tensors = []
    for _ in range(n_tensors):
        name = c.string().decode("utf-8", "replace")
        n_dims = c.num("<I")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise _Damaged(f"tensor {name!r} has {n_dims} dimensions")
        elements = 1
        for _ in range(n_dims):
            elements *= c.num("<Q")
        tensors.append((name, c.num("<I"), elements, c.num("<Q")))
    return arch, tensors, -(-c.pos // alignment) * alignment


def _tensor_bytes(name: str, ggml_type: int, elements: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise _Damaged(f"tensor {name!r} has type {ggml_type}, unknown to the installed gguf "
                       "package (upgrade it if the file is newer)") from None
    if elements % block:
        raise _Damaged(f"tensor {name!r} has {elements} elements, not whole blocks of {block}")
    return elements // block * size


def inspect(path: Path) -> dict:
    """The architecture and tensor count of a GGUF file, after checking it is whole.

    Raises :class:`ModelError` for a file that is missing, not GGUF, truncated (in its header
    or its tensor data), damaged, or of an architecture transformers cannot load from GGUF.
    """
    if not path.is_file():
        raise ModelError(f"base {path}: no such file; pass an existing .gguf file")
    with path.open("rb") as f:
        head = f.read(4)
    if head != MAGIC:
        raise ModelError(f"base {path}: not a GGUF file (it starts with {head!r}, not "
                         f"{MAGIC!r}); pass a .gguf model file or a model directory")
    try:
        import gguf  # noqa: F401 - transformers needs it to load the file
    except ImportError:
        raise ModelError("reading a .gguf base needs the gguf package: pip install gguf") from None
    size = path.stat().st_size
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            arch, tensors, data_start = _read_header(buf, size)
        end = max((data_start + offset + _tensor_bytes(name, ggml_type, n)
                   for name, ggml_type, n, offset in tensors), default=0)
    except _CutShort:
        raise ModelError(f"base {path}: its GGUF header runs past the end of the file "
                         f"({size:,} bytes): truncated or damaged — download it again") from None
    except _Damaged as e:
        raise ModelError(f"base {path}: the GGUF header is damaged ({e}); download it "
                         "again") from None
    if not tensors:
        raise ModelError(f"base {path}: a GGUF file without tensors, not a model; pass a model "
                         "file")
    if end > size:
        raise ModelError(f"base {path}: truncated ({size:,} bytes, its tensors need {end:,}); "
                         "download it again")
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if arch not in GGUF_SUPPORTED_ARCHITECTURES:
        raise ModelError(f"base {path}: architecture {arch!r} cannot be loaded from GGUF by "
                         f"transformers (it loads {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})"
                         "; pass a Qwen-family model")
    return {"architecture": arch, "tensors": len(tensors), "bytes": size}


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
    _normalize_as_transformers_loads(target)
    (target / MARKER).write_text(json.dumps({
        "version": CONVERTER_VERSION, "source": str(path), "sha256": sha, **info,
        "seconds": round(time.time() - t0, 1)}, indent=2))


def _normalize_as_transformers_loads(target: Path) -> None:
    """Give ``tokenizer.json`` the normaliser transformers applies when it loads ``target``.

    GGUF records no normaliser, so transformers builds the tokenizer without one, yet saves it
    under the architecture's tokenizer class, and Qwen2Tokenizer applies NFC when loaded back
    (as Qwen's own tokenizer.json does). glyph reads tokenizer.json with ``tokenizers`` to train
    and serves through transformers: without this, text that is not NFC would be encoded one
    way in training and another in serving.
    """
    from transformers import AutoTokenizer

    loaded = json.loads(AutoTokenizer.from_pretrained(str(target)).backend_tokenizer.to_str())
    f = target / "tokenizer.json"
    saved = json.loads(f.read_text(encoding="utf-8"))
    if saved.get("normalizer") != loaded.get("normalizer"):
        saved["normalizer"] = loaded.get("normalizer")
        f.write_text(json.dumps(saved, ensure_ascii=False, indent=2), encoding="utf-8")


def converted(path: str | Path, *, log: Callable[[str], None] | None = None) -> Path:
    """The Hugging Face directory of a GGUF file, converted on first use (about a minute)."""
    path = Path(path).expanduser().resolve()
    info = inspect(path)
    sha = _sha256(path)
    d = paths.home() / "models" / f"gguf-{sha[:16]}-v{CONVERTER_VERSION}"
    return cached(d, lambda tmp: _convert_into(tmp, path, info, sha), done=MARKER, log=log,
                  what=f"converting {path.name} ({info['architecture']}, {info['bytes'] / 1e6:.0f} "
                       f"MB, {info['tensors']} tensors) to float32 once → {d} (about a minute)")
