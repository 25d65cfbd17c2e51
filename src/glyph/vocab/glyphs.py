"""A registry's contents as values: :class:`Glyph` and :class:`Registry`, and how a registry
is written back as YAML. Reading, validating and editing the file is
:mod:`glyph.vocab.registry`.

Example::

    >>> Glyph(symbol="⟁", id=151669, name="ascent", meaning="a step up", trigger="ascent").active
    True
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from ..display import shown
from ..errors import NotFound
from .family import DEFAULT_FAMILY, BaseFamily, family as get_family
from .unicode import canonical_text

FORMAT_VERSION = 1
STATUSES = ("active", "retired")
UNICODE_EXCEPTIONS = ("private-use", "nonsymbol")
DEFAULT_REGISTERS = {
    "poetry": "images, rhythm and line breaks; feeling compressed into few words",
    "logic": "premises, steps and a conclusion; precise, sequential, checkable",
    "interface": "the language of software and systems; states, actions, signals",
    "body": "somatic language; breath, posture, sensation, movement",
}
GLYPH_KEYS = ("symbol", "id", "name", "meaning", "archetype", "registers", "scenes",
               "trigger", "status", "unicode_exceptions")
REQUIRED_KEYS = ("symbol", "id", "name", "meaning", "trigger", "status")
HEADER = (
    "# glyph registry. Written by `glyph add` / `glyph remove` (atomically, under a lock);\n"
    "# hand edits are fine: every load validates the file and reports errors as file:line.\n"
    "# Ids are assigned once and never reused; a removed glyph is kept as `status: retired`.\n"
)


@dataclass(frozen=True)
class Glyph:
    """One registered glyph. ``kind`` is ``added`` (new token) or ``claimed`` (existing),
    decided by the registry's base family when the glyph is read or added."""

    symbol: str
    id: int
    name: str
    meaning: str
    trigger: str
    archetype: str = ""
    registers: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()
    status: str = "active"
    unicode_exceptions: tuple[str, ...] = ()
    kind: str = field(default="added", compare=False)
    line: int = field(default=0, compare=False, repr=False)

    @property
    def active(self) -> bool:
        return self.status == "active"

    def to_dict(self) -> dict:
        d = {
            "symbol": self.symbol, "id": self.id, "name": self.name, "meaning": self.meaning,
            "archetype": self.archetype, "registers": list(self.registers),
            "scenes": list(self.scenes), "trigger": self.trigger, "status": self.status,
        }
        if self.unicode_exceptions:
            d["unicode_exceptions"] = list(self.unicode_exceptions)
        return d


@dataclass
class Registry:
    """The parsed, validated registry. Look glyphs up with :meth:`get`."""

    path: Path
    next_id: int = 0  # 0: the family's first glyph id
    registers: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_REGISTERS))
    glyphs: list[Glyph] = field(default_factory=list)
    version: int = FORMAT_VERSION
    family_name: str = DEFAULT_FAMILY

    def __post_init__(self) -> None:
        if not self.next_id:
            self.next_id = self.family.first_glyph_id

    @property
    def family(self) -> BaseFamily:
        """The base family whose ids this registry hands out."""
        return get_family(self.family_name)

    def active(self) -> list[Glyph]:
        return [g for g in self.glyphs if g.active]

    def symbols(self) -> frozenset[str]:
        return frozenset(g.symbol for g in self.active())

    def triggers(self) -> list[str]:
        return sorted({g.trigger for g in self.active()})

    def one_trigger_per_glyph(self) -> "Registry":
        """A copy in which every glyph is its own trigger, named after it (one adapter each);
        the file is untouched.

            >>> reg = Registry(Path("r.yaml"), glyphs=[
            ...     Glyph("⟁", 151669, "ascent", "up", "initiation"),
            ...     Glyph("🜂", 151670, "fire", "heat", "initiation")])
            >>> reg.triggers(), reg.one_trigger_per_glyph().triggers()
            (['initiation'], ['ascent', 'fire'])
        """
        return replace(self, glyphs=[replace(g, trigger=g.name) for g in self.glyphs])

    def find(self, key: str) -> Glyph | None:
        """A glyph by symbol (any presentation form) or by name, or None."""
        sym = canonical_text(key.strip(), {key.strip()[:1]}) if key.strip() else key
        for g in self.glyphs:
            if g.symbol == sym or g.name == key:
                return g
        return None

    def get(self, key: str) -> Glyph:
        g = self.find(key)
        if g is None:
            raise NotFound(f"no glyph {shown(key)} in {self.path}; `glyph list` shows the "
                           "registered ones")
        return g

    def fingerprint(self) -> str:
        """sha256 over (id, symbol, status) of every glyph: what a trained model depends on."""
        rows = sorted((g.id, g.symbol, g.status) for g in self.glyphs)
        return hashlib.sha256(repr(rows).encode("utf-8")).hexdigest()[:16]

    def to_yaml(self) -> str:
        body = {
            "version": self.version, "family": self.family_name, "next_id": self.next_id,
            "registers": dict(self.registers),
            "glyphs": [g.to_dict() for g in self.glyphs],
        }
        return HEADER + yaml.safe_dump(body, allow_unicode=True, sort_keys=False, width=100)
