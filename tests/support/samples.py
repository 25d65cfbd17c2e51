"""Text samples for tokenizer tests and benchmarks, and a tiktoken reference encoder.

:func:`sample_corpus` makes deterministic, varied strings (English, Russian, Chinese, code,
emoji, mathematical and alchemical symbols, whitespace runs, random code points), optionally
sprinkled with glyphs; :func:`tiktoken_reference` encodes with the same Qwen ranks through
tiktoken, an independent implementation to compare the rebuilt tokenizer against.

Example::

    >>> len(sample_corpus(3, seed=1))
    3
"""
from __future__ import annotations

import random
from typing import Sequence

_EN = ("the of and to in is was that for it with as his on be at by had are but from or "
       "have an they which one you were her all she there would their we him been has when "
       "who will more no if out so said what up its about into than them can only other new "
       "some could time these two may then do first any my now such like our over man me even "
       "most made after also did many before must through back years where much your way well "
       "down should because each just those people how too little state good very make world "
       "still own see men work long get here between both life being under never day same "
       "another know while last might us great old year off come since against go came right "
       "used take three breath fire ascent glyph token merge rank vocabulary weights").split()
_RU = ("и в не на я быть он с что а по это она этот к но они мы как из у который то за свой "
       "весь год от так о для ты же все тот мочь вы человек такой его сказать только или ещё "
       "бы себя один как уже до время если сам когда другой вот говорить наш мой знать стать "
       "при чтобы дело жизнь кто первый очень два день её новый рука даже во со раз где там "
       "дыхание огонь восхождение тело сердце кость вода воздух земля соль сера").split()
_ZH = ("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会"
       "那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进"
       "种将还分此心前面又定见只主没公从呼吸火上升身体心脏骨头水空气土盐硫")
_CODE = (
    "def {w}(x, y=None):\n    return x + {n}\n",
    "for (int i = 0; i < {n}; ++i) {{\n\tsum += a[i] * {w};\n}}\r\n",
    "const {w} = async () => {{ await fetch('/api/{w}?n={n}'); }};\n",
    "if ({w} != nullptr && {w}->size() >= {n}) {{ return -1; }}\n",
    "SELECT {w}, COUNT(*) FROM t WHERE id > {n} GROUP BY {w};\n",
    "    {w}_list = [i ** 2 for i in range({n}) if i % 3 == 0]  # {w}\n",
    "<div class=\"{w}\">{n}&nbsp;&lt;/div&gt;</div>\n",
    "{{\"{w}\": [{n}, {n}.5e-3, null, true], \"k\": \"{w}'s\"}}\n",
)
_EMOJI = ("😀😂🥲🤖👍🏽👩‍💻🏳️‍🌈🇺🇦🔥💧🌍🫁🫀🦴✨🎉❤️‍🔥🧠🌀⭐👨‍👩‍👧‍👦🙏🏿")
_SYMBOLS = ("∀∃∅∈∉∑∏√∞≈≠≤≥⊂⊃⊕⊗∫∮∴∵→⇒⇔↦△▽◯⊙☉☽☿♀♁♂♃♄♅♆♇☯✶⬡⟁⟐⟡"
            "🜀🜁🜂🜃🜄🜅🜆🜍🜔🝆🝓αβγδεζηθλμπσφψωΔΣΩ±×÷°′″‰№℃ℵ")
_SPACES = (" ", "  ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n", "\t \n",
           " \u00a0", "\u3000", "\u2003", "\n   \n", "        ", "\r\n\r\n")
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "’s")
_PUNCT = ".,;:!?-—–()[]{}\"'«»…/\\|*&^%$#@~`_+="


def _random_code_point(rng: random.Random) -> str:
    plane = rng.random()
    if plane < 0.55:
        cp = rng.randrange(0x20, 0x3000)
    elif plane < 0.8:
        cp = rng.randrange(0x3000, 0x10000)
    elif plane < 0.97:
        cp = rng.randrange(0x10000, 0x20000)
    else:
        cp = rng.randrange(0x20000, 0x110000)
    if 0xD800 <= cp <= 0xDFFF:  # surrogates cannot be encoded
        cp -= 0x800
    return chr(cp)


def _word(rng: random.Random, kind: str) -> str:
    if kind == "en":
        w = rng.choice(_EN)
        r = rng.random()
        if r < 0.12:
            w = w.capitalize()
        elif r < 0.15:
            w = w.upper()
        if rng.random() < 0.05:
            w += rng.choice(_CONTRACTIONS)
        return w
    if kind == "ru":
        w = rng.choice(_RU)
        return w.capitalize() if rng.random() < 0.12 else w
    if kind == "zh":
        return "".join(rng.choice(_ZH) for _ in range(rng.randint(1, 6)))
    if kind == "num":
        return str(rng.choice([rng.randint(0, 9), rng.randint(0, 999), rng.randint(0, 10**9)]))
    if kind == "emoji":
        return rng.choice(_EMOJI)
    if kind == "sym":
        return "".join(rng.choice(_SYMBOLS) for _ in range(rng.randint(1, 3)))
    if kind == "punct":
        return "".join(rng.choice(_PUNCT) for _ in range(rng.randint(1, 4)))
    if kind == "space":
        return rng.choice(_SPACES)
    if kind == "code":
        return rng.choice(_CODE).format(w=rng.choice(_EN), n=rng.randint(0, 4096))
    return "".join(_random_code_point(rng) for _ in range(rng.randint(1, 5)))  # "random"


_STYLES = {  # kind weights per kind of string
    "en": {"en": 20, "punct": 2, "num": 1, "space": 1},
    "ru": {"ru": 20, "punct": 2, "num": 1, "en": 1, "space": 1},
    "zh": {"zh": 20, "punct": 3, "num": 1, "en": 1},
    "code": {"code": 6, "en": 2, "punct": 2, "space": 3, "num": 1},
    "emoji": {"emoji": 6, "en": 6, "ru": 2, "punct": 1},
    "symbols": {"sym": 8, "en": 4, "punct": 2, "num": 1, "space": 1},
    "whitespace": {"space": 10, "en": 3, "punct": 2, "num": 1},
    "random": {"random": 10, "space": 2, "en": 1},
    "mixed": {"en": 4, "ru": 3, "zh": 3, "code": 1, "emoji": 1, "sym": 1, "num": 1,
              "punct": 1, "space": 1, "random": 1},
}


def sample_corpus(n: int, seed: int = 0, glyphs: Sequence[str] = (),
                  glyph_rate: float = 0.0, avoid: Sequence[str] = ()) -> list[str]:
    """``n`` generated multilingual strings (deterministic for a seed), for tests and benchmarks.

    English, Russian, Chinese, code, emoji, math/alchemical symbols, whitespace runs (spaces,
    tabs, CR/LF) and random code points; with ``glyphs`` and ``glyph_rate`` > 0, about that
    fraction of the words is a glyph (glued to its neighbour or spaced). Every string in
    ``avoid`` is removed from the generated words (e.g. glyph symbols, for glyph-free text).
    Example::

        >>> len(sample_corpus(3, seed=1))
        3
    """
    rng = random.Random(seed)
    styles = list(_STYLES)
    out = []
    for i in range(n):
        style = styles[i % len(styles)]
        kinds, weights = zip(*_STYLES[style].items())
        parts = []
        for _ in range(rng.randint(1, 40)):
            if glyphs and rng.random() < glyph_rate:
                g = rng.choice(glyphs) * (2 if rng.random() < 0.1 else 1)
                parts.append(g if rng.random() < 0.5 else " " + g)
                continue
            kind = rng.choices(kinds, weights)[0]
            piece = _word(rng, kind)
            for a in avoid:
                piece = piece.replace(a, "")
            if kind in ("en", "ru", "num", "sym", "emoji") and rng.random() < 0.85:
                piece = " " + piece
            parts.append(piece)
        out.append("".join(parts))
    return out


def tiktoken_reference(extra_special: dict[str, int] | None = None):
    """A ``tiktoken.Encoding`` over the same ranks and split pattern (no NFC; for parity checks).

    Qwen3's added tokens (plus ``extra_special``, e.g. glyphs by id) are its special tokens.
    Imports tiktoken lazily. Example::

        >>> tiktoken_reference().encode("Hello world")       # doctest: +SKIP
        [9707, 1879]
    """
    import tiktoken

    from glyph.vocab.qwen import QWEN2_PATTERN, QWEN3_ADDED_TOKENS, _load_ranks

    specials = {content: tid for tid, content, _ in QWEN3_ADDED_TOKENS}
    specials.update(extra_special or {})
    return tiktoken.Encoding(
        "qwen3-glyph-reference", pat_str=QWEN2_PATTERN, mergeable_ranks=_load_ranks(),
        special_tokens=specials)
