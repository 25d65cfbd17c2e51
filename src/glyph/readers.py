"""The one way glyph reads a file it did not just write: bounded, strict, ``file:line: reason``.

- :func:`read_text`: a regular file (never a FIFO or a device, which could block forever), at
  most a named size (:mod:`glyph.limits`), UTF-8 (a leading BOM dropped); a bad byte is
  reported with its line;
- :func:`load_yaml`: YAML through PyYAML's safe loader (libyaml when present) that also
  refuses what the safe loader lets through: a key given twice in one mapping (YAML keeps the
  last silently: a hand edit could drop half a registry), nesting deeper than
  ``MAX_YAML_DEPTH``, aliases that expand past ``MAX_YAML_NODES`` values (alias bombs),
  integers longer than ``MAX_INT_DIGITS`` digits, and values Python cannot build (a
  ``2001-13-45`` date); every mapping gets ``__line__`` (1-based);
- :func:`parse_json` / :func:`read_json`: JSON with the same integer bound, no recursion
  crash, and ``NaN``/``Infinity`` refused unless the caller wrote them itself.

Every failure is the caller's :class:`glyph.errors.GlyphError` subclass, never a traceback.

Example::

    >>> data = load_yaml("a: 1\\n", Path("x.yaml"), GlyphError)
    >>> data["a"], data["__line__"]
    (1, 1)
    >>> load_yaml("a: 1\\na: 2\\n", Path("x.yaml"), GlyphError)
    Traceback (most recent call last):
    ...
    glyph.errors.GlyphError: x.yaml:2: key 'a' appears twice in one mapping (first at line 1); ...
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from .display import shown, size
from .errors import GlyphError
from .limits import MAX_INT_DIGITS, MAX_YAML_DEPTH, MAX_YAML_NODES, MIB

try:  # libyaml: 5-10x faster, and its parser bounds nesting itself
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader

_FAILURES = (ValueError, TypeError, OverflowError, RecursionError, MemoryError)


def read_text(path: Path, error: type[GlyphError], *, limit: int, what: str = "this file",
              missing: str | None = None) -> str:
    """The UTF-8 text of the regular file ``path`` (BOM dropped), at most ``limit`` bytes.

    ``missing`` is the message for a file that does not exist (default: ``PATH does not
    exist``). Every failure is ``error('PATH[:LINE]: reason; fix')``.
    """
    path = Path(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path} is a directory; pass the file itself")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path} is not a regular file (a pipe or a device?); pass a file")
        if st.st_size > limit:
            raise error(f"{path} is {st.st_size / MIB:.1f} MiB, over the {size(limit)} limit "
                        f"for {what}; split it")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise error(missing or f"{path} does not exist") from None
    except OSError as e:
        raise error(f"cannot read {path}: {os_reason(path, e)}; check its permissions") from None
    except ValueError:  # a NUL byte in the path
        raise error(f"{shown(str(path))} is not a usable file name (it holds a NUL byte)") \
            from None
    if len(data) > limit:  # it grew, or stat did not know its size (/proc)
        raise error(f"{path} is over the {size(limit)} limit for {what}; split it")
    return decode(data, str(path), error)


def os_reason(path: Path, e: OSError) -> str:
    """Why the OS refused ``path``, in words: a parent that is a file is named as such."""
    if isinstance(e, (NotADirectoryError, FileExistsError)):
        for parent in Path(path).parents:
            if parent.is_file():
                return f"{parent} is a file, not a directory"
    return e.strerror or str(e)


def decode(data: bytes, where: str, error: type[GlyphError]) -> str:
    """``data`` as UTF-8 (a leading BOM dropped); a bad byte is reported with its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{where}:{line}: not UTF-8 text (byte 0x{data[e.start]:02X}, {e.reason}); "
                    "save it as UTF-8") from None
    return text[1:] if text.startswith("\ufeff") else text


# ================================================================ YAML
class _Refused(Exception):
    def __init__(self, node, reason: str):
        super().__init__(reason)
        self.line = node.start_mark.line + 1 if node is not None else 1
        self.reason = reason


class _LineLoader(_SafeLoader):
    """A safe loader (no arbitrary objects) that records where each mapping starts and turns
    every value Python cannot build into a :class:`_Refused` at that value's line."""

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (_Refused, yaml.YAMLError):
            raise
        except _FAILURES as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise _Refused(node, f"cannot read this value ({shown(first, 80)})") from None


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:
            raise _Refused(key_node, f"a mapping key must be a plain value, not {shown(key)}") \
                from None
        if first is not None:
            raise _Refused(key_node, f"key {shown(key)} appears twice in one mapping (first at "
                           f"line {first}); YAML would keep only the last: remove one")
        seen[key] = line
    mapping = SafeConstructor.construct_mapping(loader, node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> int:
    digits = sum(c.isdigit() for c in node.value)
    if digits > MAX_INT_DIGITS:
        raise _Refused(node, f"an integer of {digits} digits (glyph reads at most "
                       f"{MAX_INT_DIGITS}); quote it if it is text")
    return SafeConstructor.construct_yaml_int(loader, node)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_shape(root) -> None:
    """Refuse a node graph deeper than MAX_YAML_DEPTH, larger than MAX_YAML_NODES once its
    aliases are expanded, or whose alias refers to its own anchor. Linear in the graph."""
    done: dict[int, tuple[int, int]] = {}   # id(node) → (height, expanded size)
    path: set[int] = set()                  # the nodes being expanded (ancestors)
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = [done[id(k)] for k in _children(node)]
            height = 1 + max((h for h, _ in kids), default=0)
            size = 1 + sum(s for _, s in kids)
            if height > MAX_YAML_DEPTH:
                raise _Refused(node, f"nested {height} levels deep (glyph reads at most "
                               f"{MAX_YAML_DEPTH})")
            if size > MAX_YAML_NODES:
                raise _Refused(node, f"its aliases expand to more than {MAX_YAML_NODES:,} values "
                               "(an alias bomb?); write the values out")
            done[key] = (height, size)
            path.discard(key)
            continue
        if key in done:
            continue
        if key in path:
            raise _Refused(node, "an alias refers to the anchor it is inside of; remove it")
        path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in done)


def load_yaml(text: str, path: Path, error: type[GlyphError]):
    """Parse YAML (see the module docstring); errors become ``error('file:line: …')``."""
    never = "glyph never overwrites a file it cannot read"
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_shape(node)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]
        raise error(f"{path}:{line}: not valid YAML ({shown(problem, 120)[1:-1]}); fix the "
                    f"file by hand — {never}") from None
    except _Refused as r:
        raise error(f"{path}:{r.line}: {r.reason} — {never}") from None
    except _FAILURES as e:  # the pure-Python parser on deep nesting; memory
        raise error(f"{path}:1: cannot be read ({type(e).__name__}) — {never}") from None
    finally:
        loader.dispose()


# ================================================================ JSON
def _int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (glyph reads at most "
                         f"{MAX_INT_DIGITS})")
    return int(text)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number; write a number or a string")


def parse_json(text: str, where: str, error: type[GlyphError], *, allow_nan: bool = False,
               fix: str = "fix the file", first_line: int = 1):
    """``json.loads`` with bounded integers, no recursion crash, and NaN/Infinity refused
    unless ``allow_nan`` (glyph's own logs may hold them); errors ``error('where:line: …')``,
    lines counted from ``first_line`` (a JSONL record's line in its file)."""
    try:
        if allow_nan:
            return json.loads(text, parse_int=_int)
        return json.loads(text, parse_int=_int, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        line = first_line + e.lineno - 1
        raise error(f"{where}:{line}: not valid JSON ({e.msg}); {fix}") from None
    except RecursionError:
        raise error(f"{where}:{first_line}: nested too deeply to read; {fix}") from None
    except ValueError as e:
        raise error(f"{where}:{first_line}: {shown(str(e), 120)[1:-1]}; {fix}") from None


def read_json(path: Path, error: type[GlyphError], *, limit: int, what: str = "this file",
              allow_nan: bool = True, fix: str = "fix the file", missing: str | None = None):
    """:func:`read_text` then :func:`parse_json`."""
    text = read_text(path, error, limit=limit, what=what, missing=missing)
    return parse_json(text, str(path), error, allow_nan=allow_nan, fix=fix)
