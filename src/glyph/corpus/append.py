"""Writing scenes as YAML: a new file whole, or one more scene appended to a file *as text*.

:func:`append_scene` leaves every byte of the existing file as it was — comments, blank
lines, quoting, key order, line ends — and inserts the new scene's YAML right after the last
scene of the ``scenes:`` list (before the closing ``]`` of a flow list), indented like the
scenes before it. The result is parsed again and must read as exactly the old scenes plus
the new one, or nothing is written.

Example::

    >>> print(dump_scenes([scene], glyph="ascent"))      # doctest: +SKIP
    version: 1
    glyph: ascent
    scenes:
    - id: Δ101
      ...
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import SceneError
from ..readers import load_yaml
from ..vocab.registry import Registry
from .scenes import FORMAT_VERSION, Scene, heldout_by_id, parse_scene

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader
_Dumper = yaml.SafeDumper  # libyaml's dumper escapes astral symbols (🜂 → "\U0001F702")


class _Block(_Dumper):
    """Multi-line texts as ``|`` literal blocks, as people write them."""


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Block.add_representer(str, _str)


def _item(s: Scene) -> dict:
    d = s.to_dict()
    if d["split"] == ("heldout" if heldout_by_id(s.id) else "train"):
        d.pop("split")  # implied by the id
    return d


def dump_scenes(scenes: list[Scene], glyph: str | None = None) -> str:
    """A whole scene file (``version: 1``, the glyph's name, ``scenes:``)."""
    head = {"version": FORMAT_VERSION, **({"glyph": glyph} if glyph else {})}
    return (yaml.dump(head, Dumper=_Block, allow_unicode=True, sort_keys=False)
            + yaml.dump({"scenes": [_item(s) for s in scenes]}, Dumper=_Block,
                        allow_unicode=True, sort_keys=False, width=100))


def _refuse(path: Path, why: str) -> SceneError:
    return SceneError(f"{path}: cannot append a scene as text ({why}); add it to the file by "
                      "hand — nothing was written")


def _last_leaf(node):
    """The textually last node inside ``node`` (where the last scene ends)."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style \
            and node.value:
        node = node.value[-1][1] if isinstance(node, yaml.MappingNode) else node.value[-1]
    return node


def _block_insert(text: str, seq, path: Path, scene: Scene) -> str:
    """Insert after the last item of a block sequence, with that item's indentation."""
    first = seq.value[0].start_mark.index
    prefix = text[text.rfind("\n", 0, first) + 1: first]
    m = re.fullmatch(r"( *)- +", prefix)
    if m is None:
        raise _refuse(path, "its first scene does not start on a `- ` line")
    end = _last_leaf(seq.value[-1]).end_mark.index
    if end > 0 and text[end - 1] == "\n":
        at = end  # a block scalar ends after its line break
    else:
        nl = text.find("\n", end)
        at = len(text) if nl < 0 else nl + 1
    eol = "\r\n" if "\r\n" in text else "\n"
    body = yaml.dump([_item(scene)], Dumper=_Block, allow_unicode=True, sort_keys=False,
                     width=100)
    body = "".join(m.group(1) + ln if ln.strip() else ln
                   for ln in body.splitlines(keepends=True)).replace("\n", eol)
    before = text[:at] if at == 0 or text[at - 1] == "\n" else text[:at] + eol
    return before + body + text[at:]


def _flow_insert(text: str, seq, scene: Scene) -> str:
    """Insert after the last item of a flow sequence (or into an empty ``[]``)."""
    item = yaml.dump(_item(scene), Dumper=_Dumper, allow_unicode=True, sort_keys=False,
                     default_flow_style=True, width=10**9).strip()
    if seq.value:
        at = seq.value[-1].end_mark.index
        return text[:at] + ", " + item + text[at:]
    close = seq.end_mark.index - 1
    return text[:close] + item + text[close:]


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k != "__line__"}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def append_scene(text: str, path: Path, scene: Scene, reg: Registry) -> str:
    """``text`` (a valid scene file) with ``scene`` appended textually; checked by re-reading."""
    root = yaml.compose(text, Loader=_Loader)
    seq = None
    if isinstance(root, yaml.MappingNode):
        seq = next((v for k, v in root.value if getattr(k, "value", None) == "scenes"), None)
    if not isinstance(seq, yaml.SequenceNode):
        raise _refuse(path, "no `scenes:` list")
    if seq.flow_style or not seq.value:
        if text[seq.end_mark.index - 1: seq.end_mark.index] != "]":
            raise _refuse(path, "its `scenes:` list has an unexpected form")
        new = _flow_insert(text, seq, scene)
    else:
        new = _block_insert(text, seq, path, scene)
    before, after = _plain(load_yaml(text, path, SceneError)), _plain(load_yaml(new, path,
                                                                                 SceneError))
    before["scenes"] = before["scenes"] + [_item(scene)]
    if before != after:
        raise _refuse(path, "the file's layout would not read back as old scenes + the new one")
    got = parse_scene(after["scenes"][-1], "new scene", reg)
    if got != scene:
        raise _refuse(path, "the new scene would not read back unchanged")
    return new
