"""The manifest of a run directory: typed, versioned, validated when read.

``manifest.json`` is written last by training; a run without it is not complete. Reading it
checks every field's type and says which one is wrong and how to recover, instead of a
``KeyError`` three modules later.

Example::

    >>> m = Manifest.read(Path("runs/default/manifest.json"))   # doctest: +SKIP
    >>> m.glyphs[0].symbol, m.base.tied, m.family.stop_ids       # doctest: +SKIP
    ('⟁', True, (151643, 151645))
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import GlyphError, ModelError
from ..limits import MAX_JSON_BYTES
from ..model.base import BaseInfo
from ..readers import read_json
from ..vocab.family import BaseFamily, family as get_family
from ..vocab.unicode import validate_slug

RUN_FORMAT = 1  # the JSON shape; fields added since are optional with defaults


@dataclass(frozen=True)
class GlyphEntry:
    """A glyph the run trained: its token id and the trigger (adapter) it activates."""

    symbol: str
    id: int
    name: str
    trigger: str
    kind: str = "added"
    meaning: str = ""


@dataclass(frozen=True)
class Manifest:
    """What a finished run is: its glyphs, adapters, base, tokenizer, data and results."""

    glyphs: tuple[GlyphEntry, ...]
    triggers: dict[str, str]            # trigger → adapter directory, relative to the run
    base: BaseInfo
    tokenizer: str = "tokenizer"        # relative to the run
    registry: dict[str, str] = field(default_factory=dict)   # path, fingerprint
    registers: tuple[str, ...] = ()     # the registry's registers when the run was trained
    corpus: dict[str, Any] = field(default_factory=dict)     # fingerprint, scene counts
    config: dict[str, Any] = field(default_factory=dict)     # the TrainConfig, as saved
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    prompt_lead: str = ""               # what every prompt starts with (corpus.scenes.LEAD)
    version: int = RUN_FORMAT

    @property
    def family(self) -> BaseFamily:
        return get_family(self.base.family)

    @classmethod
    def of_training(cls, *, reg, triggers: list[str], base: BaseInfo, corpus, train_scenes: int,
                    config: dict, metrics: dict, prompt_lead: str = "") -> "Manifest":
        """The manifest of a run that just trained ``triggers`` on ``base``."""
        return cls(
            glyphs=tuple(GlyphEntry(g.symbol, g.id, g.name, g.trigger, g.kind, g.meaning)
                         for g in reg.active() if g.trigger in triggers),
            triggers={t: f"adapters/{t}" for t in triggers}, base=base, tokenizer="tokenizer",
            registry={"path": str(reg.path), "fingerprint": reg.fingerprint()},
            registers=tuple(reg.registers),
            corpus={"fingerprint": corpus.fingerprint(), "train_scenes": train_scenes,
                    "heldout_scenes": len(corpus.select(split="heldout"))},
            config=config, metrics=metrics, versions=versions(), created=now(),
            prompt_lead=prompt_lead)

    def glyphs_of(self, trigger: str) -> list[GlyphEntry]:
        return [g for g in self.glyphs if g.trigger == trigger]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["glyphs"] = [asdict(g) for g in self.glyphs]
        d["registers"] = list(self.registers)
        return d

    def write_text(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    # ------------------------------------------------------------ reading
    @classmethod
    def read(cls, path: Path) -> "Manifest":
        """Parse and validate ``manifest.json``; raise :class:`ModelError` naming the problem."""
        run = path.parent
        fix = (f"retrain with `glyph train --out {run} --overwrite`" if run.name else "retrain")
        data = read_json(path, ModelError, limit=MAX_JSON_BYTES, what="a manifest", fix=fix)
        return cls.from_dict(data, where=str(path), fix=fix)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "manifest", fix: str = "retrain") -> "Manifest":
        def bad(key: str, want: str) -> ModelError:
            return ModelError(f"{where}: {key} must be {want}; the run directory is damaged: {fix}")

        if not isinstance(data, dict):
            raise bad("the manifest", "a JSON object")
        version = data.get("version")
        if version != RUN_FORMAT:
            raise ModelError(f"{where}: run format {version!r} is not supported (this glyph "
                             f"reads {RUN_FORMAT}); {fix}")
        glyphs = _list_of(data.get("glyphs"), GlyphEntry, "glyphs", bad)
        triggers = data.get("triggers")
        if not isinstance(triggers, dict) or not triggers or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in triggers.items()):
            raise bad("triggers", "an object mapping each trigger to its adapter directory")
        if any(g.trigger not in triggers for g in glyphs):
            raise bad("glyphs", "glyphs whose triggers are all listed under triggers")
        for t, where_to in triggers.items():
            try:
                validate_slug("trigger", t)
            except GlyphError:
                raise bad("triggers", "keyed by trigger names (slugs such as 'initiation')") \
                    from None
            if not _inside(where_to):
                raise bad(f"triggers.{t}", "a directory inside the run (relative, no '..')")
        base = _record(data.get("base"), BaseInfo, "base", bad)
        if base.family:
            try:
                get_family(base.family)
            except Exception:  # noqa: BLE001 - an unknown family name
                raise bad("base.family", "a base family this glyph knows") from None
        kw: dict[str, Any] = {"glyphs": tuple(glyphs), "triggers": dict(triggers), "base": base}
        for key, typ in (("tokenizer", str), ("registry", dict), ("corpus", dict),
                         ("config", dict), ("metrics", dict), ("versions", dict),
                         ("created", str), ("prompt_lead", str)):
            if key in data:
                if not isinstance(data[key], typ):
                    raise bad(key, f"a JSON {'string' if typ is str else 'object'}")
                kw[key] = data[key]
        lead = kw.get("prompt_lead", "")
        if len(lead) > 8 or lead.strip():
            raise bad("prompt_lead", "empty or a few blank characters (a newline)")
        if not _inside(kw.get("tokenizer", "tokenizer")):
            raise bad("tokenizer", "a directory inside the run (relative, no '..')")
        regs = data.get("registers", [])
        if not isinstance(regs, list) or not all(isinstance(r, str) for r in regs):
            raise bad("registers", "a list of register names")
        return cls(registers=tuple(regs), **kw)


_JSON_TYPES = {"str": str, "int": int, "bool": bool}


def _inside(rel: str) -> bool:
    """A path that stays inside the run directory: relative, without '..'."""
    p = Path(rel)
    return bool(rel) and "\0" not in rel and not p.is_absolute() and ".." not in p.parts


def _record(item: Any, cls, key: str, bad):
    """One dataclass from a JSON object, every annotated field type-checked."""
    if not isinstance(item, dict):
        raise bad(key, "a JSON object")
    kw = {}
    for f in fields(cls):
        if f.name not in item:
            if f.default is not MISSING or f.default_factory is not MISSING:
                continue  # optional: it has a default
            raise bad(f"{key}.{f.name}", "present")
        typ = _JSON_TYPES.get(str(f.type))
        v = item[f.name]
        if typ is not None and (not isinstance(v, typ) or (typ is int and isinstance(v, bool))):
            raise bad(f"{key}.{f.name}", f"a JSON {'number' if typ is int else str(f.type)}")
        kw[f.name] = v
    return cls(**kw)


def _list_of(items: Any, cls, key: str, bad) -> list:
    if not isinstance(items, list) or not items:
        raise bad(key, "a non-empty list")
    return [_record(x, cls, f"{key}[{i}]", bad) for i, x in enumerate(items)]


def versions() -> dict:
    """Versions of the packages a run depends on (recorded in its manifest)."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("glyph", "torch", "transformers", "peft", "accelerate", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
