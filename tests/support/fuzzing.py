"""Shared pieces of the fuzz tests: input strategies, the outcome rule, a hang bound, a tally.

The rule every fuzz test applies (:func:`outcome`): a reader or command either succeeds or
raises a :class:`glyph.errors.GlyphError` — anything else fails the test. :func:`bounded`
turns a hang into a failure (SIGALRM; it never fails a slow-but-finishing call below its
bound, so it is not a timing assertion). :data:`TALLY` counts inputs and outcome classes per
target; ``tools/fuzz_report.py`` runs the fuzz tests with more examples and writes those
figures to ``benchmarks/fuzz.md``.

Examples per test: ``GLYPH_FUZZ_EXAMPLES`` scales them (default 1 = the CI budget).
"""
from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from typing import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from glyph.errors import GlyphError

SCALE = float(os.environ.get("GLYPH_FUZZ_EXAMPLES", "1"))
HANG_SECONDS = 30


def fuzz_settings(examples: int):
    """Hypothesis settings of a fuzz test: ``examples`` × GLYPH_FUZZ_EXAMPLES inputs, no
    deadline (hangs are bounded by :func:`bounded`), derandomized by the suite's profile."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


class Hang(Exception):
    """A call ran past HANG_SECONDS."""


@contextmanager
def bounded(seconds: float = HANG_SECONDS):
    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- the tally
TALLY: dict[str, Counter] = defaultdict(Counter)
SECONDS: Counter = Counter()
_PREFIX = re.compile(r"^(?:error: )?(?:[^\s:]+:(?:\d+:)? )?")
_WORDS = re.compile(r"[A-Za-z][A-Za-z()-]*")
EXAMPLES: dict[str, dict[str, str]] = defaultdict(dict)


def message_class(message: str) -> str:
    """The first plain words of a message, before any quoted value, path or number:
    ``"f.yaml:3: key 'a' appears twice"`` → ``"key"``."""
    head = re.split(r"['\"/\\\d]|U\+", _PREFIX.sub("", message), maxsplit=1)[0]
    return " ".join(_WORDS.findall(head)[:6]) or "…"


def reason_class(err: GlyphError) -> str:
    """Where the refusal was raised (``module:line``): one class per distinct check in glyph,
    whatever values the input held."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(err).__name__
    return (f"{type(err).__name__} at "
            f"{os.path.basename(tb.tb_frame.f_code.co_filename)[:-3]}:{tb.tb_lineno}")


def count(target: str, cls: str, message: str = "") -> None:
    """Add one input of ``target`` with outcome class ``cls`` (and a sample of its message)."""
    TALLY[target][cls] += 1
    if message and cls not in EXAMPLES[target]:
        EXAMPLES[target][cls] = message_class(message)


def outcome(target: str, call: Callable[[], object]):
    """Run ``call`` under the rule; return ``("ok", value)`` or ``("error", err)``."""
    t0 = time.perf_counter()
    try:
        with bounded():
            value = call()
    except GlyphError as e:
        count(target, reason_class(e), str(e))
        return "error", e
    finally:
        SECONDS[target] += time.perf_counter() - t0
    count(target, "ok")
    return "ok", value


def write_tally(path: str) -> None:
    """Write the whole tally (every fuzz module of this process adds to it: the last writer
    has it all)."""
    data = {t: {"inputs": sum(c.values()), "seconds": round(SECONDS[t], 2), "outcomes": dict(c),
                "examples": EXAMPLES[t]} for t, c in sorted(TALLY.items())}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=True, indent=1)


# ---------------------------------------------------------------- strategies
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)

# characters that broke or nearly broke something once: controls, bidi, invisible, joiners,
# selectors, surrogates, line separators, marks, symbols, emoji, a BOM, quotes, YAML syntax
TRICKY = ("\x00\x07\x1b\x7f\x85\x9b\u00ad\u034f\u061c\u17b4\u180b\u200b\u200c\u200d\u200e"
          "\u200f\u2028\u2029\u202a\u202e\u2060\u2066\u2069\u2800\u3164\ufe00\ufe0e\ufe0f"
          "\ufeff\ufffd\ud800\udcff\U000e0001\U000e0100\U0001f3fb\u0301\u20dd⟁🜂🫁☿👁🗨Δж中"
          "\"'`:,-#&*!|>%@[]{}?\\\t\n\r ")
TRICKY_TEXT = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(), max_size=40)
# ordinary text: letters, digits, punctuation, symbols and spaces of any script
PLAIN_TEXT = st.text(alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"]),
                     min_size=1, max_size=60)

YAML_FRAGMENTS = [
    "glyphs: []", "version: 2", "version: [1]", "next_id: 1", "next_id: 99999999999999",
    "next_id: " + "9" * 40, "family: {a: 1}", "registers: [a]", "registers: {Bad Name: x}",
    "a: &a [x, x, x]", "b: &b [*a, *a, *a, *a]", "c: *b", "x: &r [*r]", "d: *undefined",
    "? [k]\n: v", "x: !!python/object:os.system {}", "x: !!binary zz!", "x: 2001-13-45",
    "\t- tab", "{", "[" * 30, "]" * 3, "'unterminated", "- symbol: ⟡\n  id: 151700\n  name: "
    "z\n  meaning: m\n  trigger: z\n  status: active", "  id: 1e400", "  id: 0x1F",
    "  id: -5", "  id: true", "  name: \"a\\u0000b\"", "  meaning: \"\\u202e\"",
    "  meaning: [a, b]", "  symbol: \"⟁\\u034f\"", "  symbol: [⟁]", "  registers: [[a]]",
    "  scenes: [\"\\e[2J\"]", "  status: [active]", "  unicode_exceptions: 5", "  text: |-",
    "  text: \"\\ud800\"", "  id: .nan", "  glyphs: [[⟁]]", "  lang: \"en\\n\"", "<<: {a: 1}",
    "%YAML 1.1", "---", "...", "- " * 25 + "x", "k: v\nk: w",
]
YAML_VALUES = st.one_of(
    st.sampled_from(["", "~", "[]", "{}", "yes", "no", "0x1F", ".nan", "-.inf", "1e400",
                     "*a", "&a x", "!!str 5", "[[[[x]]]]", "\"\\ud800\"", "\"\\x1b[31m\"",
                     "9" * 60, "2001-13-45", "'", "|", ">-"]),
    TRICKY_TEXT.map(lambda s: json.dumps(s, ensure_ascii=False)),
    JSONISH.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.integers().map(str))


@st.composite
def mutated_yaml(draw, base_text: str, max_ops: int = 4) -> str:
    """``base_text`` with a few line-level mutations: drop, duplicate, insert a hostile
    fragment, replace a value, or splice in arbitrary text."""
    lines = base_text.splitlines()
    for _ in range(draw(st.integers(0, draw(st.sampled_from([1, 2, max_ops]))))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "insert", "value", "value", "splice"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "insert":
            indent = re.match(r"\s*", lines[i]).group(0)
            lines.insert(i, indent + draw(st.sampled_from(YAML_FRAGMENTS)))
        elif op == "value" and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {draw(YAML_VALUES)}"
        else:
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + draw(TRICKY_TEXT) + lines[i][cut:]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n# end\n"]))


def text_or_bytes(structured) -> st.SearchStrategy[bytes]:
    """File contents: mostly ``structured`` text as UTF-8, sometimes arbitrary bytes, a BOM,
    or a broken encoding."""
    return st.one_of(
        structured.map(lambda t: t.encode("utf-8", "surrogatepass")),
        structured.map(lambda t: b"\xef\xbb\xbf" + t.encode("utf-8", "surrogatepass")),
        structured.map(lambda t: t.encode("utf-16", "surrogatepass")),
        st.binary(max_size=300))


def duplicate_keys(text: str) -> bool:
    """Whether PyYAML's own composer sees a mapping with one key twice (an independent oracle
    for "a reader that keeps the last of two keys silently loses the first")."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except Exception:  # noqa: BLE001 - not YAML at all: no oracle
        return False
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)
                    and k.tag != "tag:yaml.org,2002:merge"]
            if len(keys) != len(set(keys)):
                return True
            stack.extend(v for pair in node.value for v in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return False
