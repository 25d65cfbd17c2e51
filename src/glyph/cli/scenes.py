"""Scene corpus commands: scenes list, add, import, validate (no torch).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .app import Group, SafePath, csv, echo, echo_json, main


@main.group(cls=Group)
def scenes() -> None:
    """The scene corpus (glyphs/*.yaml)."""


@scenes.command("list")
@click.option("--glyph", "glyph_key", default=None, help="symbol or name")
@click.option("--register", default=None)
@click.option("--level", default=None)
@click.option("--tier", default=None)
@click.option("--split", type=click.Choice(["train", "heldout"]), default=None)
@click.option("--json", "as_json", is_flag=True)
def scenes_list(glyph_key, register, level, tier, split, as_json) -> None:
    """List scenes, optionally filtered."""
    from ..corpus import scenes as sc
    from ..vocab import registry

    reg = registry.load()
    sym = reg.get(glyph_key).symbol if glyph_key else None
    rows = sc.load_corpus(reg).select(glyph=sym, split=split, registers=csv(register),
                                      levels=csv(level), tiers=csv(tier))
    if as_json:
        return echo_json([s.to_dict() for s in rows])
    for s in rows:
        first = s.text.splitlines()[0][:70]
        echo(f"{s.id:<7}{''.join(s.glyphs):<4}{s.register:<10}{s.level:<6}{s.tier:<8}"
                   f"{s.lang:<3}{s.split:<8}{first}")
    echo(f"{len(rows)} scenes", err=True)


@scenes.command("add")
@click.option("--glyph", "glyphs", multiple=True, required=True, help="symbol or name (repeat)")
@click.option("--register", required=True)
@click.option("--level", required=True, type=click.Choice(["micro", "meso", "macro"]))
@click.option("--tier", default="core", show_default=True,
              type=click.Choice(["core", "orbit", "fractal"]))
@click.option("--lang", default="en", show_default=True)
@click.option("--text", required=True, help="the scene text ('-' reads stdin)")
@click.option("--id", "scene_id", default=None, help="default: the next free Δ<n>")
def scenes_add(glyphs, register, level, tier, lang, text, scene_id) -> None:
    """Add one scene to glyphs/<glyph name>.yaml."""
    from ..corpus import edit
    from ..vocab import registry

    reg = registry.load()
    text = _stdin_text() if text == "-" else text
    s = edit.add(reg, glyphs=[reg.get(g).symbol for g in glyphs], register=register, level=level,
               tier=tier, lang=lang, text=text, scene_id=scene_id)
    echo(f"added scene {s.id} ({s.split}) for {''.join(s.glyphs)}")


def _stdin_text() -> str:
    """Standard input as UTF-8 text (bounded; bytes that are not UTF-8 are an error)."""
    from ..errors import SceneError
    from ..limits import MAX_TEXT_FILE_BYTES
    from ..readers import decode

    data = sys.stdin.buffer.read(MAX_TEXT_FILE_BYTES + 1)
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise SceneError(f"stdin holds more than {MAX_TEXT_FILE_BYTES // 2**20} MiB; a scene "
                         "is at most a few pages")
    return decode(data, "stdin", SceneError)


@scenes.command("import")
@click.argument("file", type=SafePath(dir_okay=False, path_type=Path))
def scenes_import(file: Path) -> None:
    """Import scenes from JSONL or CSV (all rows valid, or nothing is written)."""
    from ..corpus import edit
    from ..vocab import registry

    new = edit.import_file(registry.load(), file)
    echo(f"imported {len(new)} scenes from {file}")


@scenes.command("validate")
def scenes_validate() -> None:
    """Validate the scene corpus against the registry."""
    from ..corpus import scenes as sc
    from ..vocab import registry

    reg = registry.load()
    for line in sc.check_coverage(reg, sc.load_corpus(reg)):
        echo(line)


