"""Compression, the inverse of decompression: a text goes in, the glyphs that carry it come out.

The text is embedded exactly as a scene is for the index (its style header, the untouched
base, the index's layers), brought into the index's space by the index's own saved
:class:`~glyph.serving.projection.Projection` (centred on its style group, whitened, layers
joined) and compared with every glyph vector. For a corpus scene with its true style this
is the per-scene retrieval ``glyph eval`` measures (``evaluation.metrics.scene_retrieval``).

The style is part of the embedding. What is not given is taken from the index's own scenes:

- **lang**: the language whose scenes are written in the text's scripts (Latin, Cyrillic, …);
- **level**: the level whose median scene length (in words) is nearest the text's;
- **register**: every register of the run, each centred on its own group, the unit vectors
  averaged — a text's register is rarely known and guessing it wrong costs more.

Example::

    >>> svc = GlyphService.load("runs/default")                           # doctest: +SKIP
    >>> c = compress(svc, "the kettle shrieks; nobody is home; I climb")  # doctest: +SKIP
    >>> c.glyphs[0]                                                       # doctest: +SKIP
    GlyphScore(symbol='⟁', name='ascent', score=0.31)
"""
from __future__ import annotations

import math
import statistics
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

from ..corpus import scenes
from ..errors import ConfigError, ModelError, NotFound
from ..limits import MAX_SCENE_CHARS
from ..vocab.unicode import check_unicode
from .vectors import style_key, unit


@dataclass
class GlyphScore:
    symbol: str
    name: str
    score: float  # cosine in the index's space


@dataclass
class Compression:
    """The result of :func:`compress`: the glyphs best first and the style the text was read in."""

    text: str
    registers: list
    level: str
    lang: str
    guessed: list = field(default_factory=list)  # which of register/level/lang were guessed
    glyphs: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**self.__dict__, "glyphs": [g.__dict__ for g in self.glyphs]}


def _scripts(text: str) -> Counter:
    """Letters of ``text`` counted by script (the first word of their Unicode name)."""
    return Counter(unicodedata.name(c, "?").split()[0] for c in text if c.isalpha())


def guess_lang(text: str, meta: list[dict]) -> str:
    """The language of the indexed scenes whose letters share ``text``'s scripts the most."""
    by_lang: dict[str, Counter] = {}
    for m in meta:
        by_lang.setdefault(m["lang"], Counter()).update(_scripts(m["text"]))
    mine = _scripts(text)
    total = sum(mine.values()) or 1

    def share(lang: str) -> float:
        c = by_lang[lang]
        n = sum(c.values()) or 1
        return sum(mine[s] / total * c[s] / n for s in mine)

    return max(sorted(by_lang), key=share)


def guess_level(text: str, meta: list[dict]) -> str:
    """The level whose indexed scenes' median length (words) is nearest ``text``'s (log scale)."""
    lengths: dict[str, list[int]] = {}
    for m in meta:
        lengths.setdefault(m["level"], []).append(len(m["text"].split()))
    n = max(1, len(text.split()))
    return min(sorted(lengths), key=lambda lv: abs(math.log(n / statistics.median(lengths[lv]))))


def compress(svc, text: str, *, register: str | None = None, level: str | None = None,
             lang: str | None = None, k: int = 5) -> Compression:
    """The ``k`` glyphs of ``svc``'s run whose scenes ``text`` is nearest to, best first."""
    check_unicode("the text", text)
    if not text.strip():
        raise ConfigError("the text to compress is empty")
    if len(text) > MAX_SCENE_CHARS:
        raise ConfigError(f"the text is {len(text):,} characters; compress reads at most "
                          f"{MAX_SCENE_CHARS:,}, a scene's limit: pass a part of it")
    if register is not None:
        svc.model.check_register(register)
    scenes.check_style(level, lang)
    if k < 1:
        raise ConfigError("k must be >= 1")
    index = svc.index
    if index is None:
        raise NotFound(f"run {svc.run.path} has no scene index; build it with "
                       f"`glyph index build {svc.run.path}`")
    if index.projection is None:
        raise ModelError(f"the index of {svc.run.path} was built before glyph saved how text "
                         f"enters it; rebuild it with `glyph index build {svc.run.path}`")
    guessed = [name for name, v in (("register", register), ("level", level), ("lang", lang))
               if v is None]
    lang = lang or guess_lang(text, index.meta)
    level = level or guess_level(text, index.meta)
    registers = [register] if register else list(svc.model.registers)
    pairs = [(scenes.header(r, level, lang), text) for r in registers]
    raw, _ = svc.model.hidden(pairs, layers=index.info.get("layers"))
    styles = [style_key(SimpleNamespace(lang=lang, register=r, level=level)) for r in registers]
    vec = unit(sum(unit(index.projection(raw[i:i + 1], st))[0] for i, st in enumerate(styles)))
    ranked = index.rank_glyphs(vec)[:k]
    names = {g.symbol: g.name for g in svc.model.glyphs.values()}
    return Compression(text, registers, level, lang, guessed,
                       [GlyphScore(s, names.get(s, ""), score) for s, score in ranked])
