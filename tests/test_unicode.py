"""The glyph Unicode rules: every hostile class is refused with a reason naming code points."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glyph.errors import GlyphError, UnicodeRejected
from glyph.vocab.unicode import canonical_text, describe, validate_slug, validate_symbol

# (input, substring the one-line reason must contain)
HOSTILE = [
    ("", "empty symbol"),
    ("\x07", "control character"),
    ("\u200b", "invisible format character"),           # ZERO WIDTH SPACE
    ("\u2060", "invisible format character"),           # WORD JOINER
    ("\u00a0", "whitespace"),                           # NO-BREAK SPACE
    ("\u3000", "whitespace"),                           # IDEOGRAPHIC SPACE
    ("\u2028", "whitespace"),                           # LINE SEPARATOR
    (" ", "whitespace"),
    ("\U000e0001", "invisible format character"),       # LANGUAGE TAG
    ("\u0378", "unassigned"),
    ("\U0003fffd", "unassigned"),
    ("\ufdd0", "noncharacter"),
    ("\U0001fffe", "noncharacter"),
    ("\ud800", "surrogate"),
    ("\ue000", "private use"),
    ("\U000f0000", "private use"),
    ("\u202e", "bidi control"),                         # RIGHT-TO-LEFT OVERRIDE
    ("\u2066", "bidi control"),                         # LEFT-TO-RIGHT ISOLATE
    ("\u200f", "bidi control"),                         # RIGHT-TO-LEFT MARK
    ("\u061c", "bidi control"),                         # ARABIC LETTER MARK
    ("\u0301", "lone combining mark"),
    ("\u20dd", "lone combining mark"),                  # COMBINING ENCLOSING CIRCLE
    ("a", "ASCII"),
    ("Z", "ASCII"),
    ("7", "ASCII"),
    ("#", "ASCII"),
    ("<", "ASCII"),
    ("Ж", "a letter"),
    ("Δ", "a letter"),
    ("中", "a letter"),
    ("٣", "a digit or number"),                         # ARABIC-INDIC DIGIT THREE
    ("Ⅻ", "a digit or number"),
    ("«", "punctuation"),
    ("…", "punctuation"),
    ("€", "a currency sign"),
    ("˘", "a modifier symbol"),
    ("🏽", "a modifier symbol"),                        # skin tone alone
    ("×", "Latin-1 symbol"),
    ("±", "Latin-1 symbol"),
    ("⟁⟁", "is 2 symbols"),
    ("⟁ ", "is 2 symbols"),
    ("🜂🫁", "is 2 symbols"),
    ("\u212b", "not in NFC"),                           # ANGSTROM SIGN → Å
    ("\u2126", "not in NFC"),                           # OHM SIGN → Ω
    ("⟁\ufe00", "standardized variant"),                # VS1
    ("\u200d🜂", "is 2 symbols"),                       # leading ZWJ
    ("🜂\u200d", "invisible format character"),         # trailing ZWJ
]


@pytest.mark.parametrize("text,reason", HOSTILE, ids=[repr(t) for t, _ in HOSTILE])
def test_hostile_symbols_are_rejected_with_named_codepoints(text, reason):
    with pytest.raises(UnicodeRejected) as e:
        validate_symbol(text)
    msg = str(e.value)
    assert reason in msg
    assert "\n" not in msg
    if text:
        assert f"U+{ord(text[0]):04X}" in msg


@pytest.mark.parametrize("text", ["⟁", "🜂", "🫁", "☿", "⬡", "∮", "⟐", "🜔", "△", "🔥", "∴"])
def test_symbols_are_accepted_unchanged(text):
    v = validate_symbol(text)
    assert v.symbol == text and v.notes == []


def test_rejection_names_code_point_and_unicode_name():
    with pytest.raises(UnicodeRejected, match=r"U\+202E RIGHT-TO-LEFT OVERRIDE"):
        validate_symbol("\u202e")


def test_presentation_selector_is_dropped_with_a_note():
    v = validate_symbol("🜂\ufe0f")
    assert v.symbol == "🜂"
    assert "U+FE0F VARIATION SELECTOR-16" in v.notes[0]
    assert validate_symbol("⟁\ufe0e").symbol == "⟁"


def test_zwj_sequence_is_one_glyph_with_a_note():
    v = validate_symbol("👁\u200d🗨")
    assert v.symbol == "👁\u200d🗨"
    assert "ZWJ sequence" in v.notes[0]


def test_symbol_with_enclosing_mark_is_one_grapheme():
    assert validate_symbol("⟁\u20dd").symbol == "⟁\u20dd"


def test_flags_allow_private_use_and_nonsymbols():
    assert validate_symbol("\ue000", allow_private_use=True).symbol == "\ue000"
    assert validate_symbol("Ж", allow_nonsymbol=True).symbol == "Ж"
    with pytest.raises(UnicodeRejected, match="ASCII"):
        validate_symbol("a", allow_nonsymbol=True)  # ASCII is never a glyph


def test_describe():
    assert describe("⟁") == "U+27C1 WHITE TRIANGLE CONTAINING SMALL WHITE TRIANGLE"
    assert describe("\x07") == "U+0007 <control>"


@pytest.mark.parametrize("bad", ["", "A", "../etc", "a/b", "a b", "1abc", "x" * 33, "имя", "a.b"])
def test_slugs_reject_path_tricks(bad):
    with pytest.raises(GlyphError, match="not a slug"):
        validate_slug("name", bad)


def test_canonical_text_strips_selectors_only_after_glyphs():
    assert canonical_text("🜂\ufe0f and ☺\ufe0f", {"🜂"}) == "🜂 and ☺\ufe0f"


@given(st.text())
def test_canonical_text_is_idempotent_and_nfc(t):
    import unicodedata2

    once = canonical_text(t, {"🜂", "⟁"})
    assert canonical_text(once, {"🜂", "⟁"}) == once
    assert unicodedata2.normalize("NFC", once) == once
