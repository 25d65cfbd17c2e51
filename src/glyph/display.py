"""What glyph prints: text made safe for a terminal, values quoted at a bounded size.

Everything the CLI writes goes through :func:`escape` (or :func:`escape_json`), so a scene
text, a generated continuation or a hand-edited file can never send a terminal escape
sequence, reorder a line with a bidi control or crash the output with a lone surrogate.
Messages quote offending values with :func:`shown`, whose cost is bounded whatever the value
(a list of a million items, a YAML alias bomb) — so no error line is ever megabytes long.

Example::

    >>> escape("red \\x1b[31m alert\\u202e")
    'red \\\\x1b[31m alert\\\\u202e'
    >>> shown("x" * 100)[-12:]
    "… (40 more)'"
"""
from __future__ import annotations

import reprlib
import warnings
from contextlib import contextmanager
from typing import Iterator

from .limits import MAX_ERROR_CHARS, MAX_SHOWN_CHARS

#: bidi controls and marks: they reorder or re-direct the text around them
BIDI_FORMATTING = frozenset(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def unsafe_char(ch: str, *, newline_ok: bool = True) -> bool:
    """A character a terminal would act on or a reader could not see: controls (but tab and,
    when ``newline_ok``, newline), bidi controls, lone surrogates, line/paragraph separators."""
    cp = ord(ch)
    if ch == "\t" or (ch == "\n" and newline_ok):
        return False
    if cp < 0x20 or 0x7F <= cp <= 0x9F or cp in (0x2028, 0x2029) or cp in BIDI_FORMATTING:
        return True
    return 0xD800 <= cp <= 0xDFFF


def _escaped(ch: str) -> str:
    cp = ord(ch)
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


def escape(text: str, *, newline_ok: bool = True) -> str:
    """``text`` with every :func:`unsafe_char` written as a visible ``\\x1b``-style escape."""
    if not any(unsafe_char(c, newline_ok=newline_ok) for c in text):
        return text
    return "".join(_escaped(c) if unsafe_char(c, newline_ok=newline_ok) else c for c in text)


def escape_json(dumped: str) -> str:
    """JSON text (``ensure_ascii=False``) with unsafe characters as ``\\uXXXX`` (still valid
    JSON: ``json.dumps`` already escapes C0 controls; this adds C1, bidi and surrogates)."""
    def esc(ch: str) -> str:
        return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else ch

    if not any(unsafe_char(c) for c in dumped):
        return dumped
    return "".join(esc(c) if unsafe_char(c) else c for c in dumped)


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict = 2, 4, 4, 4
_repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 4
_repr.maxstring = _repr.maxother = _repr.maxlong = MAX_SHOWN_CHARS


def shown(value, limit: int = MAX_SHOWN_CHARS) -> str:
    """A short, printable ``repr`` of ``value`` for a message: bounded in size and in cost.

    >>> shown([[1, 2]] * 1000)
    '[[1, 2], [1, 2], [1, 2], [1, 2], ...]'
    """
    if isinstance(value, str):
        if len(value) > limit:
            cut = repr(value[:limit])
            return escape(f"{cut[:-1]}… ({len(value) - limit} more){cut[-1]}")
        return escape(repr(value))
    try:
        text = _repr.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is shown by its type
        text = f"<{type(value).__name__}>"
    return clip(escape(text), 2 * limit)


def size(n: int) -> str:
    """A byte count for a message: ``16 MiB`` or ``50,000 bytes``."""
    return f"{n // 2**20} MiB" if n >= 2**20 and n % 2**20 == 0 else f"{n:,} bytes"


def clip(line: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``line`` cut to ``limit`` characters, saying how much was cut."""
    if len(line) <= limit:
        return line
    return line[:limit] + f"… ({len(line) - limit} more characters)"


@contextmanager
def held_warnings() -> Iterator[None]:
    """Hold back the warnings a block issues: shown after it succeeds, dropped if it fails —
    so a failure is one error line, not a library's warning about the file it refused."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    for w in caught:  # the block succeeded
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
