"""Unicode rules for what may become a glyph, checked with ``unicodedata2``'s current tables.

A glyph must be something a person perceives as *one symbol* and that cannot be confused
with ordinary text. The rules, in the order they are checked (the first failure is reported,
on one line, naming the code points):

1. not empty, at most ``MAX_SYMBOL_CODEPOINTS`` code points, no surrogate code points;
2. variation selectors: a single trailing VS15/VS16 (text/emoji presentation, e.g. ``🜂`` +
   U+FE0F) is *not part of the glyph's identity*: it is dropped and the user is told; inside
   an emoji ZWJ sequence they are kept right after a pictograph, as that sequence needs
   them. A second selector, and other variation selectors (VS1–VS14, VS17–VS256), are
   rejected;
3. NFC: the symbol must already be in NFC (Qwen's tokenizer normalises text to NFC, so a
   non-NFC glyph could never match); the error names the NFC form to use instead;
4. exactly one extended grapheme cluster (UAX #29, via ``regex``'s ``\\X``);
5. no control, format, whitespace, unassigned, surrogate, noncharacter or bidi-control code
   point (a ZWJ is allowed only *between* two pictographs: an emoji ZWJ sequence, which
   then matches only as the whole sequence); private-use only with ``allow_private_use``;
   nothing invisible: no default-ignorable code point (U+034F COMBINING GRAPHEME JOINER,
   U+180B, U+17B4, U+3164 …: ``⟁`` + U+034F would look exactly like ``⟁``) and no symbol
   that renders as blank space (U+2800 BRAILLE PATTERN BLANK);
6. the first code point must not be a combining mark (a lone mark has no base), and must be
   a symbol (category Sm or So) at U+0100 or above. ASCII is always refused (it would break
   ordinary text, markup and code); letters, digits, punctuation, currency and modifier
   symbols, and the Latin-1 symbols (× ± © °), are refused unless ``allow_nonsymbol``,
   because registering them changes how ordinary text reads.

Example::

    >>> validate_symbol("⟁").symbol
    '⟁'
    >>> validate_symbol("🜂\\ufe0f").notes[0][:40]
    'dropped U+FE0F VARIATION SELECTOR-16: a '
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import unicodedata2 as ud

from ..display import BIDI_FORMATTING, shown
from ..errors import GlyphError, UnicodeRejected
from ..limits import (MAX_LINE_CHARS, MAX_SCENE_CHARS, MAX_SCENE_ID_CHARS,
                      MAX_SYMBOL_CODEPOINTS)

ZWJ = "\u200d"
VS15, VS16 = "\ufe0e", "\ufe0f"
BIDI_CONTROLS = {"LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI"}
BIDI_MARKS = {0x200E, 0x200F, 0x061C}  # LRM, RLM, ALM: format characters with bidi effect
EMOJI_MODIFIERS = range(0x1F3FB, 0x1F400)
SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
BLANK_SYMBOLS = {0x2800: "renders as blank space"}  # So, yet nothing visible


def _default_ignorable(ch: str) -> bool:
    """Unicode's Default_Ignorable_Code_Point: drawn as nothing when not supported."""
    import regex

    return regex.match(r"\p{Default_Ignorable_Code_Point}", ch) is not None


def _is_variation_selector(cp: int) -> bool:
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


def _is_noncharacter(cp: int) -> bool:
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def _label(cp: int) -> str:
    cat = ud.category(chr(cp))
    name = ud.name(chr(cp), "")
    if not name:
        name = {
            "Cc": "<control>",
            "Cs": "<surrogate>",
            "Co": "<private use>",
            "Cn": "<noncharacter>" if _is_noncharacter(cp) else "<unassigned>",
        }.get(cat, "<unnamed>")
    return f"U+{cp:04X} {name}"


def describe(text: str) -> str:
    """Name every code point of ``text``: ``describe('⟁')`` → ``'U+27C1 WHITE TRIANGLE ...'``."""
    return ", ".join(_label(ord(c)) for c in text)


@dataclass(frozen=True)
class ValidatedSymbol:
    """A symbol that passed every rule, in canonical form, plus notes for the user."""

    symbol: str
    codepoints: str
    notes: list[str] = field(default_factory=list)


def _reject(symbol: str, reason: str) -> UnicodeRejected:
    head = symbol if len(symbol) <= MAX_SYMBOL_CODEPOINTS + 1 else symbol[:3]
    quoted = head if head.isprintable() and head.strip() else shown(head)
    names = describe(head)
    if len(symbol) > len(head):
        quoted += "…"
        names += f", … ({len(symbol) - len(head):,} more)"
    return UnicodeRejected(f"cannot register {quoted} ({names}): {reason}")


def _is_pictograph(ch: str) -> bool:
    cp = ord(ch)
    return ud.category(ch) == "So" or 0x1F000 <= cp <= 0x1FAFF


def _check_code_point(symbol: str, i: int, allow_private_use: bool) -> None:
    """Rule 5 for the code point at ``i``: no control, format, whitespace, bidi, unassigned."""
    ch = symbol[i]
    cp, cat = ord(ch), ud.category(ch)
    if ud.bidirectional(ch) in BIDI_CONTROLS or cp in BIDI_MARKS:
        raise _reject(symbol, f"{_label(cp)} is a bidi control: it reorders the text "
                      "around it; choose a visible symbol")
    if _is_noncharacter(cp):
        raise _reject(symbol, f"{_label(cp)} is a noncharacter; choose an assigned symbol")
    if cat == "Cn":
        raise _reject(symbol, f"{_label(cp)} is unassigned in Unicode {ud.unidata_version}; "
                      "choose an assigned symbol")
    if cat == "Cc":
        raise _reject(symbol, f"{_label(cp)} is a control character; choose a visible symbol")
    if cat in ("Zs", "Zl", "Zp") or ch.isspace():
        raise _reject(symbol, f"{_label(cp)} is whitespace; choose a visible symbol")
    if cat == "Co" and not allow_private_use:
        raise _reject(symbol, f"{_label(cp)} is private use (no standard meaning or font); "
                      "pass --allow-private-use if your fonts define it")
    if cat == "Cf":
        between_pictographs = (
            ch == ZWJ and 0 < i < len(symbol) - 1
            and (_is_pictograph(symbol[i - 1]) or symbol[i - 1] in (VS15, VS16))
            and _is_pictograph(symbol[i + 1])
        )
        if not between_pictographs:
            raise _reject(symbol, f"{_label(cp)} is an invisible format character; "
                          "choose a visible symbol")
        return
    if ch in (VS15, VS16):
        return  # placement checked in _check_selectors
    if _default_ignorable(ch) or cp in BLANK_SYMBOLS:
        why = BLANK_SYMBOLS.get(cp, "is invisible (default-ignorable)")
        raise _reject(symbol, f"{_label(cp)} {why}: it would look exactly like "
                      f"{'nothing' if len(symbol) == 1 else 'the symbol without it'}; "
                      "choose a visible symbol")


def _check_base(symbol: str, allow_nonsymbol: bool) -> None:
    """Rule 6: the first code point is a non-ASCII symbol with no mark before it."""
    first = symbol[0]
    cp, cat = ord(first), ud.category(first)
    if cat.startswith("M"):
        raise _reject(symbol, f"{_label(cp)} is a lone combining mark with no base; "
                      "register a symbol (a mark may follow it)")
    if cp < 0x80:
        raise _reject(symbol, "ASCII characters would break ordinary text, markup and code; "
                      "choose a non-ASCII symbol such as ⟁")
    if cat == "Co" or allow_nonsymbol:
        return  # private use was allowed by its explicit flag above
    kinds = {"L": "a letter", "N": "a digit or number", "P": "punctuation",
             "Sc": "a currency sign", "Sk": "a modifier symbol"}
    kind = kinds.get(cat) or kinds.get(cat[0])
    if kind is None and cp < 0x100:
        kind = "a Latin-1 symbol common in ordinary text"
    if kind is not None:
        raise _reject(symbol, f"is {kind} (category {cat}): registering it changes how "
                      "ordinary text reads; choose a symbol (category Sm/So) or pass "
                      "--allow-nonsymbol")


def _check_selectors(symbol: str) -> None:
    """Rule 2 after the trailing selector is gone: VS15/VS16 only right after a pictograph of
    a ZWJ sequence; every other variation selector refused, naming its code point."""
    for i, ch in enumerate(symbol):
        cp = ord(ch)
        if not _is_variation_selector(cp):
            continue
        if ch not in (VS15, VS16):
            raise _reject(symbol, f"{_label(cp)} selects a standardized variant, which glyph "
                          "does not support; register the base symbol alone")
        if ZWJ not in symbol or i == 0 or not _is_pictograph(symbol[i - 1]):
            raise _reject(symbol, f"{_label(cp)} at position {i + 1} is a second or misplaced "
                          "presentation selector; write at most one, right after the symbol")
    if len(symbol) > MAX_SYMBOL_CODEPOINTS:
        raise _reject(symbol, f"is {len(symbol)} code points; a glyph has at most "
                      f"{MAX_SYMBOL_CODEPOINTS}")


def validate_symbol(
    symbol: str, *, allow_private_use: bool = False, allow_nonsymbol: bool = False
) -> ValidatedSymbol:
    """Check ``symbol`` against the glyph rules; return its canonical form or raise.

    Raises :class:`UnicodeRejected` with a one-line reason naming the code points.
    """
    import regex  # light; only \\X grapheme segmentation is used

    if not isinstance(symbol, str) or symbol == "":
        raise UnicodeRejected("empty symbol: pass one Unicode symbol such as ⟁")
    if len(symbol) > MAX_SYMBOL_CODEPOINTS + 1:  # + 1: a presentation selector is dropped
        raise _reject(symbol, f"is {len(symbol):,} code points; a glyph has at most "
                      f"{MAX_SYMBOL_CODEPOINTS} (one symbol, or one emoji ZWJ sequence)")
    notes: list[str] = []
    for ch in symbol:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise _reject(symbol, f"{_label(ord(ch))} is a surrogate, not a character; "
                          "check the terminal's encoding (UTF-8)")
    # (2) presentation selectors are not identity; other variation selectors are refused
    if len(symbol) >= 2 and symbol[-1] in (VS15, VS16) and ZWJ not in symbol:
        notes.append(
            f"dropped {_label(ord(symbol[-1]))}: a presentation hint, not part of the glyph; "
            f"text that writes it after the glyph is canonicalised by glyph"
        )
        symbol = symbol[:-1]
    _check_selectors(symbol)
    # (3) NFC
    nfc = ud.normalize("NFC", symbol)
    if nfc != symbol:
        raise _reject(symbol, f"not in NFC form (Qwen's tokenizer normalises text to NFC); "
                      f"register {nfc} ({describe(nfc)}) instead")
    # (4) one extended grapheme cluster
    clusters = regex.findall(r"\X", symbol)
    if len(clusters) != 1:
        raise _reject(symbol, f"is {len(clusters)} symbols (grapheme clusters), not one; "
                      "register one symbol at a time")
    for i in range(len(symbol)):  # (5) code point classes
        _check_code_point(symbol, i, allow_private_use)
    _check_base(symbol, allow_nonsymbol)  # (6)
    if ZWJ in symbol:
        notes.append(f"emoji ZWJ sequence of {len(symbol)} code points: it becomes one token "
                     "only when written whole")
    return ValidatedSymbol(symbol=symbol, codepoints=describe(symbol), notes=notes)


def validate_slug(kind: str, value: str) -> str:
    """Check a name/trigger/register slug (they become file names: no path tricks).

    >>> validate_slug("name", "ascent")
    'ascent'
    """
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        raise GlyphError(
            f"{kind} {shown(value)} is not a slug: use 1–32 lowercase ASCII letters, digits or "
            "'-', starting with a letter (e.g. 'ascent')"
        )
    return value


LINE_BREAKS = {"\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"}
BIDI_OVERRIDES = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])  # reorder text


def _bad_in_text(ch: str, *, marks: bool) -> str | None:
    """Why ``ch`` may not be stored in a meaning or a scene text, or None."""
    cp = ord(ch)
    if 0xD800 <= cp <= 0xDFFF:
        return "a lone surrogate (bytes that were not UTF-8?)"
    if ud.category(ch) == "Cc":
        return "a control character (a terminal would act on it)"
    if cp in BIDI_OVERRIDES or (marks and cp in BIDI_FORMATTING):
        return "a bidi control (it reorders the text around it)"
    if _is_noncharacter(cp) or cp == 0xFEFF:
        return "a noncharacter"
    return None


def validate_line(kind: str, text: str) -> str:
    """Check one line of free text (a meaning): no line breaks, no control or bidi characters
    (marks included), at most ``MAX_LINE_CHARS`` characters.

    YAML and terminals treat U+0085, U+2028 and U+2029 as line breaks, so they are refused
    like ``\\n``. Returns the stripped NFC text. Example::

        >>> validate_line("meaning", " heat → a step up ")
        'heat → a step up'
    """
    if not isinstance(text, str):
        raise GlyphError(f"{kind} must be text, not {shown(text)}; quote it")
    if not text.strip():
        hint = ("describe what the glyph carries, e.g. --meaning '(heat + fear + emptiness) → "
                "a step up'" if kind == "meaning" else "write one line")
        raise GlyphError(f"{kind} is empty; {hint}")
    text = text.strip()
    if len(text) > MAX_LINE_CHARS:
        raise GlyphError(f"{kind} is {len(text):,} characters; keep it to one line of at most "
                         f"{MAX_LINE_CHARS} (put longer text into scenes)")
    for ch in text:
        if ch in LINE_BREAKS:
            raise GlyphError(f"{kind} must be one line but contains {_label(ord(ch))}; put "
                             "longer text into scenes")
        why = _bad_in_text(ch, marks=True)
        if why:
            raise GlyphError(f"{kind} contains {_label(ord(ch))}, {why}; remove it")
    return ud.normalize("NFC", text)


def validate_text(kind: str, text: str, limit: int = MAX_SCENE_CHARS) -> str:
    """Check a multi-line text (a scene): at most ``limit`` characters; no control character
    but newline and tab, no lone surrogate, no noncharacter, no bidi override or isolate
    (bidi *marks* are fine: right-to-left languages need them). Line ends become ``\\n``;
    returns the stripped text. Example::

        >>> validate_text("text", "a\\r\\nb ")
        'a\\nb'
    """
    if not isinstance(text, str):
        raise GlyphError(f"{kind} must be text, not {shown(text)}")
    if len(text) > limit:
        raise GlyphError(f"{kind} is {len(text):,} characters, over the limit of {limit:,}; "
                         "split it into several scenes")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise GlyphError(f"{kind} is empty")
    for i, ch in enumerate(text):
        if ch in "\n\t":
            continue
        why = _bad_in_text(ch, marks=False)
        if why:
            line = text.count("\n", 0, i) + 1
            raise GlyphError(f"{kind} contains {_label(ord(ch))} on its line {line}, {why}; "
                             "remove it")
    return text


def check_unicode(kind: str, text: str) -> str:
    """``text`` if it is valid Unicode (no lone surrogate: what bytes that are not UTF-8
    become on a command line), else one clear error. Example::

        >>> check_unicode("TEXT", "⟁ x")
        '⟁ x'
    """
    if not isinstance(text, str):
        raise GlyphError(f"{kind} must be text, not {type(text).__name__}")
    bad = next((i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        raise GlyphError(f"{kind} is not valid Unicode at character {bad + 1} (U+"
                         f"{ord(text[bad]):04X}, a lone surrogate: bytes that were not UTF-8?); "
                         "pass UTF-8 text")
    return text


def validate_scene_id(value) -> str:
    """A scene id: text of 1–``MAX_SCENE_ID_CHARS`` visible characters, no space or slash.

    >>> validate_scene_id("Δ41")
    'Δ41'
    """
    if not isinstance(value, str):
        raise GlyphError(f"scene id {shown(value)} must be text such as Δ41 (quote it in YAML)")
    if (not 1 <= len(value) <= MAX_SCENE_ID_CHARS or not value.isprintable()
            or any(c.isspace() or c in "/\\" for c in value)):
        raise GlyphError(f"scene id {shown(value)} must be 1–{MAX_SCENE_ID_CHARS} visible "
                         "characters without spaces, slashes or control characters")
    return value


def canonical_text(text: str, glyph_symbols: "set[str] | frozenset[str]") -> str:
    """NFC ``text`` and drop a VS15/VS16 written right after a registered glyph.

    glyph's own prompts and training data go through this, so ``🜂\\ufe0f`` and ``🜂`` are the
    same glyph token. Example::

        >>> canonical_text("fire 🜂\\ufe0f!", {"🜂"})
        'fire 🜂!'
    """
    text = ud.normalize("NFC", text)
    if VS15 not in text and VS16 not in text:
        return text
    out: list[str] = []
    for ch in text:
        if ch in (VS15, VS16) and out and out[-1] in glyph_symbols:
            continue
        out.append(ch)
    return "".join(out)
