"""Editing the scene corpus: add one scene, import a JSONL/CSV file — validated, locked, atomic.

Every write takes the corpus-wide lock (scene ids must stay unique across files), re-reads
the corpus, validates the new scenes against it and the registry, and publishes the file
atomically; a file with an invalid row writes nothing.

``add`` appends the new scene to ``glyphs/<glyph name>.yaml`` *as text*: the rest of the file
— comments, blank lines, quoting, key order — stays byte for byte as it was
(:mod:`glyph.corpus.append`).

Example::

    >>> add(reg, glyphs=["⟁"], register="body", level="micro", tier="core", lang="en",
    ...     text="Heat in the soles, a step up.")          # doctest: +SKIP
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from .. import paths
from ..display import shown, size as shown_size
from ..errors import SceneError
from ..files import atomic_write, locked, read_text
from ..limits import MAX_SCENE_FILE_BYTES
from ..readers import parse_json
from ..vocab.registry import Registry
from .append import append_scene, dump_scenes
from .scenes import Corpus, Scene, check_unique, load_corpus, parse_scene


def next_id(corpus: Corpus) -> str:
    """The next free ``Δ<n>`` id."""
    nums = [int(m.group(1)) for s in corpus.scenes if (m := re.fullmatch(r"Δ(\d{1,12})", s.id))]
    return f"Δ{max(nums, default=0) + 1}"


def _publish(target: Path, text: str) -> None:
    size = len(text.encode("utf-8"))
    if size > MAX_SCENE_FILE_BYTES:
        raise SceneError(f"{target} would grow to {size / 2**20:.1f} MiB, over the "
                         f"{shown_size(MAX_SCENE_FILE_BYTES)} limit of a scene file; put the "
                         "scenes into another file")
    atomic_write(target, text)


def add(reg: Registry, *, glyphs: list[str], register: str, level: str, tier: str, lang: str,
        text: str, scene_id: str | None = None, directory: Path | None = None) -> Scene:
    """Append one scene to ``glyphs/<glyph name>.yaml`` (validated, atomic, locked)."""
    d = Path(directory) if directory else paths.scenes_dir(reg.path)
    first = reg.get(glyphs[0]) if glyphs else None
    if first is None:
        raise SceneError("a scene needs at least one glyph (--glyph)")
    target = d / f"{first.name}.yaml"
    with locked(d / ".corpus"):  # corpus-wide: ids must stay unique across files
        corpus = load_corpus(reg, d) if d.is_dir() else Corpus(scenes=[])
        sid = scene_id if scene_id is not None else next_id(corpus)
        scene = parse_scene({"id": sid, "glyphs": glyphs, "register": register, "level": level,
                             "tier": tier, "lang": lang, "text": text}, "new scene", reg)
        check_unique(corpus.scenes + [scene])
        if target.exists():
            old = read_text(target, SceneError, limit=MAX_SCENE_FILE_BYTES, what="a scene file")
            new = append_scene(old, target, scene, reg)
        else:
            new = dump_scenes([scene], glyph=first.name)
        _publish(target, new)
    return scene


# ---------------------------------------------------------------- JSONL and CSV
def _jsonl_rows(path: Path, text: str) -> list[dict]:
    rows = []
    # JSON text never holds a raw newline inside a string, so "\n" alone separates records;
    # str.splitlines would also split at U+2028/U+0085, which JSON strings may contain raw
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        row = parse_json(line, str(path), SceneError, first_line=n, fix="fix that line")
        if not isinstance(row, dict):
            raise SceneError(f"{path}:{n}: each line must be a JSON object, not {shown(row)}")
        rows.append({**row, "__line__": n})
    return rows


def _csv_rows(path: Path, text: str) -> list[dict]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[dict] = []
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise SceneError(f"{path}:{start}: not valid CSV ({e}); quote texts with commas, "
                             "quotes or line breaks in double quotes") from None
        if not fields or fields == [""]:
            continue
        if header is None:
            header = [h.strip() for h in fields]
            twice = sorted({h for h in header if header.count(h) > 1})
            if twice:
                raise SceneError(f"{path}:{start}: column(s) {', '.join(map(shown, twice))} "
                                 "appear twice in the header; keep one")
            continue
        if len(fields) != len(header):
            raise SceneError(f"{path}:{start}: {len(fields)} fields but the header names "
                             f"{len(header)}; put a text holding commas in double quotes")
        row = {k: v for k, v in zip(header, fields) if v != ""}
        if "glyphs" in row:
            row["glyphs"] = [g for g in re.split(r"[\s,]+", row["glyphs"]) if g]
        rows.append({**row, "__line__": start})
    return rows


def read_rows(path: Path) -> list[dict]:
    """Raw scene rows of a JSONL or CSV file (``glyphs`` may be space/comma separated in CSV).

    Every row keeps its first line as ``__line__``. A CSV row with more or fewer fields than
    its header (an unquoted comma) is an error, never a silently cut text.
    """
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".jsonl", ".ndjson", ".csv"):
        raise SceneError(f"{path}: unknown format {shown(path.suffix)}; use .jsonl or .csv")
    text = read_text(path, SceneError, limit=MAX_SCENE_FILE_BYTES, what="a file to import")
    return _csv_rows(path, text) if kind == ".csv" else _jsonl_rows(path, text)


def import_file(reg: Registry, path: Path, directory: Path | None = None) -> list[Scene]:
    """Import all rows of ``path`` into ``glyphs/<stem>.yaml``: every row valid, or nothing."""
    d = Path(directory) if directory else paths.scenes_dir(reg.path)
    target = d / f"{re.sub(r'[^A-Za-z0-9_-]+', '-', path.stem).strip('-')[:64] or 'imported'}.yaml"
    rows = read_rows(path)  # a bad file fails before the lock is taken
    with locked(d / ".corpus"):
        if target.exists():
            raise SceneError(f"{target} already exists; rename {path.name} or remove that file")
        corpus = load_corpus(reg, d) if d.is_dir() else Corpus(scenes=[])
        new = [parse_scene({k: v for k, v in row.items() if k != "__line__"},
                           f"{path}:{row['__line__']}", reg) for row in rows]
        if not new:
            raise SceneError(f"{path}: no scenes found")
        check_unique(corpus.scenes + new)
        _publish(target, dump_scenes(new))
    return new
