"""Whole-project checks: the registry and, when present, the scene corpus, together.

Example::

    >>> for line in validate_project(): print(line)     # doctest: +SKIP
    ok: 14 active glyphs, 0 retired (glyphs_registry.yaml)
"""
from __future__ import annotations

from .. import paths
from ..vocab import registry


def validate_project() -> list[str]:
    """Validate the registry (and the scene corpus if ``glyphs/`` holds scene files).

    Returns human-readable ``ok:``/``warning:`` lines; raises a GlyphError on the first error.
    """
    reg = registry.load()
    lines = [f"ok: {len(reg.active())} active glyphs, {len(reg.glyphs) - len(reg.active())} "
             f"retired, triggers {', '.join(reg.triggers()) or '-'} ({reg.path})"]
    claimed = [g for g in reg.active() if g.kind == "claimed"]
    for g in claimed:
        lines.append(f"note: {g.symbol} '{g.name}' claims existing {reg.family.display} token "
                     f"{g.id}: training "
                     "changes how the model reads it in ordinary text")
    scene_dir = paths.scenes_dir(reg.path)
    if scene_dir.is_dir() and any(scene_dir.glob("*.yaml")):
        from . import scenes

        corpus = scenes.load_corpus(reg, scene_dir)
        lines.extend(scenes.check_coverage(reg, corpus))
    return lines
