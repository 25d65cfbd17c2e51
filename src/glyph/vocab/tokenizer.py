"""The glyph tokenizer: a base tokenizer plus exactly one token per glyph.

:func:`build_glyph_tokenizer` adds the registry's glyphs as normal (non-special) added tokens
at their registry ids, so ``decode(..., skip_special_tokens=True)`` keeps them and plain
``transformers.AutoTokenizer`` loads the result without glyph installed. Where the base
comes from (the family's tokenizer rebuilt offline, a directory, the hub) is
:mod:`glyph.vocab.sources`; :func:`tokenize` shows what a text becomes.

Only the standard library is imported at module level (``tokenizers`` is imported inside the
functions that need it), so registry commands start fast and nothing here pulls in torch.

Example::

    >>> report = build_glyph_tokenizer(registry.load().active(), "build/tok")  # doctest: +SKIP
    >>> tokenize("⟁ x", load(project_tokenizer()))                            # doctest: +SKIP
    [(151669, '⟁'), (856, ' x')]
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from .. import paths
from ..errors import GlyphError, TokenizerError
from ..files import cached, publishing
from .family import BaseFamily, family as get_family
from .qwen import from_byte_level
from .sources import (added_token, append_at, base_tokenizer_dir, filler_ids, load, load_base,
                      write_tokenizer_dir)
from .unicode import check_unicode

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

__all__ = ["BuildReport", "BuildRow", "build_glyph_tokenizer", "project_tokenizer", "tokenize",
           "load", "load_base", "base_tokenizer_dir", "RESERVED_FORMAT"]

RESERVED_FORMAT = "<|glyph_reserved_{}|>"


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


# what build_glyph_tokenizer writes (older builds did not list their files in glyph_tokens.json)
_OWN_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                        "glyph_tokens.json"})


def _refuse_foreign_out(out: Path) -> None:
    """Refuse an ``--out`` glyph would clobber: a file, or a directory with files glyph did
    not write (a rebuild replaces the whole directory)."""
    try:
        if out.is_file():
            raise TokenizerError(f"{out} is a file; choose an empty --out directory")
        if not out.is_dir():
            return
        names = {p.name for p in out.iterdir()}
    except OSError as e:
        raise TokenizerError(f"cannot use --out {out}: {e.strerror or e}") from None
    if not names:
        return
    if "glyph_tokens.json" not in names:
        raise TokenizerError(f"{out} holds other files; choose an empty --out (glyph only "
                             "replaces directories it wrote itself)")
    try:
        meta = json.loads((out / "glyph_tokens.json").read_text(encoding="utf-8"))
        own = set(meta["files"]) if isinstance(meta.get("files"), list) else set(_OWN_FILES)
    except (OSError, ValueError, TypeError, AttributeError):
        own = set(_OWN_FILES)
    extra = sorted(names - own)
    if extra:
        listed = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise TokenizerError(f"{out} holds files glyph did not write ({listed}); a rebuild "
                             "replaces the whole directory: move them out or choose another --out")


def _check_ids(active: list, fam: BaseFamily) -> None:
    """Every active glyph has its own symbol and id, and no id is one of the family's own."""
    seen_ids: dict[int, Any] = {}
    seen_symbols: dict[str, Any] = {}
    for g in active:
        for seen, key in ((seen_ids, g.id), (seen_symbols, g.symbol)):
            if key in seen:
                raise TokenizerError(f"{g.symbol} '{g.name}' and {seen[key].symbol} "
                                     f"'{seen[key].name}' share {key!r}; every active glyph "
                                     "needs its own symbol and id (check the registry)")
            seen[key] = g
        if g.id in fam.reserved_ids:
            r = fam.reserved_ids
            raise TokenizerError(f"{g.symbol} '{g.name}' has id {g.id}, one of {fam.added_label} "
                                 f"({r.start}..{r.stop - 1}); glyph ids start at "
                                 f"{fam.first_glyph_id}: fix its id in the registry")


def _cost_row(g, tok, size: int, fam: BaseFamily, free: dict[int, str]) -> BuildRow:
    """How ``g`` encodes under the base, checked against how it gets its id (``free``: ids
    of filler tokens a glyph may take)."""
    before = tok.encode(g.symbol, add_special_tokens=False).ids
    if g.id < fam.base_vocab_size:
        if before != [g.id]:
            raise TokenizerError(
                f"{g.symbol} '{g.name}' claims {fam.display} token {g.id}, but the base encodes it as "
                f"{before}; give it the id {before[0] if len(before) == 1 else 'next_id'} in "
                "the registry")
        return BuildRow(g.symbol, g.name, g.id, 1, "claimed")
    if g.id < size and g.id not in free:
        raise TokenizerError(
            f"{g.symbol} '{g.name}' has id {g.id}, but the base tokenizer already has {size} "
            f"tokens (ids up to {size - 1}), so that id is taken; use a base with at most "
            f"{fam.first_glyph_id} tokens ({fam.description})")
    if len(before) == 1 and before[0] < fam.base_vocab_size:
        raise TokenizerError(
            f"{g.symbol} '{g.name}' is already {fam.display} token {before[0]}; a second token "
            f"would change how ordinary text reads it: set its id to {before[0]} (claimed) in "
            "the registry")
    return BuildRow(g.symbol, g.name, g.id, len(before), "added")


def _take_fillers(tok, glyph_at: dict[int, str], free: dict[int, str]):
    """The base with the filler token at each of ``glyph_at``'s ids renamed to its glyph, then
    added (normal, not normalized) at that id; every other token exactly as it was."""
    import json

    from tokenizers import Tokenizer

    if not glyph_at:
        return tok
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for tid, symbol in glyph_at.items():
        if symbol in vocab:  # not possible for a byte-level vocabulary; refuse rather than guess
            raise TokenizerError(f"{symbol} is already a vocabulary entry of the base; it cannot "
                                 f"take the free id {tid}")
        del vocab[free[tid]]
        vocab[symbol] = tid
    tok = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    tok.add_tokens([added_token(symbol, False) for _, symbol in sorted(glyph_at.items())])
    return tok


def build_glyph_tokenizer(glyphs: Iterable[Any], out: Path | str, base: str | None = None,
                          fam: BaseFamily | None = None, log=None) -> BuildReport:
    """Write a HF tokenizer dir at ``out``: the base plus every active glyph as one token.

    ``glyphs`` are objects with ``symbol``, ``id``, ``name`` and ``active``. A glyph whose id
    is below the family's vocabulary size *claims* that existing token (checked, nothing
    added); a glyph with an id from the family's first glyph id up becomes a normal added
    token at exactly that id, and every unused id in between gets a special
    ``<|glyph_reserved_N|>`` placeholder so ids never move. A base whose vocabulary pads its
    ids with filler tokens nothing can produce (GGUF's ``[PAD151669]``) gives those ids to
    the glyphs; everything else about it stays as it was. ``out`` is replaced atomically; a
    non-empty directory glyph did not write is refused. Example::

        >>> report = build_glyph_tokenizer(registry.load().active(), "build/tok")  # doctest: +SKIP
        >>> [(r.symbol, r.cost_before, r.id, r.kind) for r in report.rows][:1]     # doctest: +SKIP
        [('⟁', 2, 151669, 'added')]
    """
    fam = fam or get_family()
    out = Path(out)
    _refuse_foreign_out(out)
    glyphs = list(glyphs)
    active = [g for g in glyphs if g.active]
    _check_ids(active, fam)
    tok, _, config = load_base(base, log=log)
    size = tok.get_vocab_size(with_added_tokens=True)
    free = filler_ids(tok, fam)
    report = BuildReport(out=out, rows=[_cost_row(g, tok, size, fam, free) for g in active])
    added = {r.id: r for r in report.rows if r.kind == "added"}
    tok = _take_fillers(tok, {i: r.symbol for i, r in added.items() if i < size}, free)

    # every id from the base's end to the highest glyph id is filled, so ids never move
    top = max([g.id for g in glyphs if g.id >= fam.first_glyph_id], default=size - 1)
    items = []
    for tid in range(size, top + 1):
        if tid in added:
            items.append((tid, added[tid].symbol, False))
        else:
            items.append((tid, RESERVED_FORMAT.format(tid), True))
            report.reserved.append(tid)
    try:
        append_at(tok, items)
    except TokenizerError as e:
        raise TokenizerError(f"{e}; the base cannot host these glyph ids") from None
    for g in active:
        got = tok.encode(g.symbol, add_special_tokens=False).ids
        if got != [g.id]:
            raise TokenizerError(f"{g.symbol} '{g.name}' encodes to {got}, not [{g.id}], after "
                                 "adding it; report this as a glyph bug")

    meta = {"version": 1, "base": base if base is not None else "qwen3-rebuilt",
            "family": fam.name, "took_fillers": sorted(i for i in added if i < size),
            "glyphs": [{"symbol": r.symbol, "name": r.name, "id": r.id, "kind": r.kind}
                       for r in report.rows],
            "reserved": report.reserved}
    _refuse_foreign_out(out)  # again: it may have changed while the base was loading
    with publishing(out) as tmp:
        write_tokenizer_dir(tmp, tok, config)
        meta["files"] = sorted([p.name for p in tmp.iterdir()] + ["glyph_tokens.json"])
        (tmp / "glyph_tokens.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2)
                                               + "\n", encoding="utf-8")
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
    return cached(d, lambda tmp: build_glyph_tokenizer(reg.glyphs, tmp, fam=reg.family),
                  done="glyph_tokens.json")


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
    try:
        check_unicode("the text", text)
    except GlyphError as e:
        raise TokenizerError(str(e)) from None
    added = {tid: at.content for tid, at in tok.get_added_tokens_decoder().items()}
    pieces = []
    for tid in tok.encode(text, add_special_tokens=False).ids:
        if tid in added:
            pieces.append((tid, added[tid]))
            continue
        raw = from_byte_level(tok.id_to_token(tid) or "")
        pieces.append((tid, _readable(raw) if raw is not None
                       else tok.decode([tid], skip_special_tokens=False)))
    return pieces
