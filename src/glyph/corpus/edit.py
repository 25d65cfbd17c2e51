"""Editing the scene corpus: add one scene, import a JSONL/CSV file — validated, locked, atomic.

Every write takes the corpus-wide lock (scene ids must stay unique across files), re-reads
the corpus, validates the new scenes against it and the registry, and publishes the file
atomically; a file with an invalid row writes nothing.

Example::

    >>> add(reg, glyphs=["⟁"], register="body", level="micro", tier="core", lang="en",
    ...     text="Heat in the soles, a step up.")          # doctest: +SKIP
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import yaml

from .. import paths
from ..errors import SceneError
from ..files import atomic_write, locked
from ..vocab.registry import Registry
from .scenes import (FORMAT_VERSION, Corpus, Scene, check_unique, parse_file, heldout_by_id,
                     load_corpus, parse_scene)


def _dump(scenes: list[Scene]) -> str:
    items = []
    for s in scenes:
        d = s.to_dict()
        if d["split"] == ("heldout" if heldout_by_id(s.id) else "train"):
            d.pop("split")  # implied by the id
        items.append(d)

    class _Block(yaml.SafeDumper):
        pass

    def _str(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Block.add_representer(str, _str)
    return yaml.dump({"version": FORMAT_VERSION, "scenes": items}, Dumper=_Block,
                     allow_unicode=True, sort_keys=False, width=100)


def next_id(corpus: Corpus) -> str:
    """The next free ``Δ<n>`` id."""
    nums = [int(m.group(1)) for s in corpus.scenes if (m := re.fullmatch(r"Δ(\d+)", s.id))]
    return f"Δ{max(nums, default=0) + 1}"


def add(reg: Registry, *, glyphs: list[str], register: str, level: str, tier: str, lang: str,
        text: str, scene_id: str | None = None, directory: Path | None = None) -> Scene:
    """Append one scene to ``glyphs/<glyph name>.yaml`` (validated, atomic, locked)."""
    d = Path(directory) if directory else paths.scenes_dir(reg.path)
    d.mkdir(parents=True, exist_ok=True)
    first = reg.get(glyphs[0]) if glyphs else None
    if first is None:
        raise SceneError("a scene needs at least one glyph (--glyph)")
    target = d / f"{first.name}.yaml"
    with locked(d / ".corpus"):  # corpus-wide: ids must stay unique across files
        corpus = load_corpus(reg, d)
        sid = scene_id or next_id(corpus)
        scene = parse_scene({"id": sid, "glyphs": glyphs, "register": register, "level": level,
                             "tier": tier, "lang": lang, "text": text}, "new scene", reg)
        check_unique(corpus.scenes + [scene])
        existing = parse_file(target, reg) if target.exists() else []
        atomic_write(target, _dump(existing + [scene]))
    return scene


def read_rows(path: Path) -> list[dict]:
    """Raw scene rows of a JSONL or CSV file (``glyphs`` may be space/comma separated in CSV)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SceneError(f"{path} does not exist") from None
    except UnicodeDecodeError as e:
        raise SceneError(f"{path}:1: not UTF-8 text ({e.reason})") from None
    rows: list[dict] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SceneError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise SceneError(f"{path}:{n}: each line must be a JSON object")
            rows.append({**row, "__line__": n})
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        for row in reader:
            row = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            if isinstance(row.get("glyphs"), str):
                row["glyphs"] = [g for g in re.split(r"[\s,]+", row["glyphs"]) if g]
            rows.append({**row, "__line__": reader.line_num})
    else:
        raise SceneError(f"{path}: unknown format {path.suffix!r}; use .jsonl or .csv")
    return rows


def import_file(reg: Registry, path: Path, directory: Path | None = None) -> list[Scene]:
    """Import all rows of ``path`` into ``glyphs/<stem>.yaml``: every row valid, or nothing."""
    d = Path(directory) if directory else paths.scenes_dir(reg.path)
    d.mkdir(parents=True, exist_ok=True)
    target = d / f"{re.sub(r'[^A-Za-z0-9_-]+', '-', path.stem).strip('-') or 'imported'}.yaml"
    with locked(d / ".corpus"):
        if target.exists():
            raise SceneError(f"{target} already exists; rename {path.name} or remove that file")
        corpus = load_corpus(reg, d)
        new = [parse_scene({k: v for k, v in row.items() if k != "__line__"},
                           f"{path}:{row['__line__']}", reg) for row in read_rows(path)]
        if not new:
            raise SceneError(f"{path}: no scenes found")
        check_unique(corpus.scenes + new)
        atomic_write(target, _dump(new))
    return new
