"""The scene corpus: the texts glyphs decompress into, in ``glyphs/*.yaml``.

A file (``version: 1``) holds a list of scenes; each has an ``id`` (``Δ41``), the ``glyphs``
it belongs to (registered symbols; the first is its own glyph), a ``register`` declared in
the registry, a ``level`` (micro / meso / macro), a ``tier`` (core / orbit / fractal), a
``lang`` (ISO 639-1, e.g. ``en``, ``ru``), the ``text``, and optionally ``split: heldout``.
Section markers ``[THEME] [TRANSITION] [ERROR] [SYNTHESIS] [ANCHOR]`` may open a line.

The held-out split is deterministic by scene id (a hash of the id, ~20% held out), so it
never changes when scenes are added, and training never sees it.

Example::

    >>> corpus = load_corpus(registry.load())              # doctest: +SKIP
    >>> len(corpus.select(glyph="⟁", split="train"))       # doctest: +SKIP
    26
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import paths
from ..display import shown
from ..errors import ConfigError, GlyphError, SceneError
from ..files import load_yaml, read_text
from ..limits import MAX_SCENE_FILE_BYTES
from ..vocab.registry import Registry
from ..vocab.unicode import canonical_text, validate_scene_id, validate_text

FORMAT_VERSION = 1
LEVELS = ("micro", "meso", "macro")
TIERS = ("core", "orbit", "fractal")
SPLITS = ("train", "heldout")
MARKERS = ("THEME", "TRANSITION", "ERROR", "SYNTHESIS", "ANCHOR")
HELDOUT_PERCENT = 20
_MARKER_RE = re.compile(r"^\s*\[([^\]\n]{1,40})\]", re.MULTILINE)
LANG_RE = re.compile(r"^[a-z]{2}$")
_KEYS = ("id", "glyphs", "register", "level", "tier", "lang", "text", "split")


def header(register: str, level: str, lang: str) -> str:
    """The line every prompt and warm-up document carries: register, level and language.

    >>> header("poetry", "micro", "en")
    '⟨poetry · micro · en⟩\\n'
    """
    return f"⟨{register} · {level} · {lang}⟩\n"


# A real Qwen turns the first token of a text into an attention sink: from layer 4 on its hidden
# state is the same whatever the token was (docs/real-run), so a glyph there can steer the text
# only through the first layers. A run trained with a lead starts every prompt with it; its
# manifest records which lead it was trained with, and evaluation and expansion follow it.
LEAD = "\n"


def check_style(level: str | None, lang: str | None) -> None:
    """A level and a language a text may be read in (None: not given); ConfigError if not.

    >>> check_style("micro", None)
    """
    if level is not None and level not in LEVELS:
        raise ConfigError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    if lang is not None and not LANG_RE.fullmatch(lang):
        raise ConfigError(f"language {lang!r} must be a two-letter code such as en or ru")


def prompt(glyphs: str, register: str, level: str, lang: str, lead: str = "") -> str:
    """The decompression prompt: ``lead``, the glyph(s) (or any text standing for them), then
    the header.

    Training, evaluation and ``glyph expand`` all use it; the scene text follows it.

    >>> prompt("⟁", "poetry", "micro", "en")
    '⟁\\n⟨poetry · micro · en⟩\\n'
    >>> prompt("⟁", "poetry", "micro", "en", lead=LEAD)
    '\\n⟁\\n⟨poetry · micro · en⟩\\n'
    """
    return lead + (f"{glyphs}\n{header(register, level, lang)}" if glyphs
                   else header(register, level, lang))


def heldout_by_id(scene_id: str) -> bool:
    """Deterministic split: a stable hash of the id, ~HELDOUT_PERCENT % held out."""
    h = int.from_bytes(hashlib.sha256(scene_id.encode("utf-8")).digest()[:4], "big")
    return h % 100 < HELDOUT_PERCENT


def in_fraction(scene_id: str, fraction: float) -> bool:
    """A nested, deterministic subsample: the scenes in 25 % are also in 50 %.

    >>> in_fraction("Δ41", 1.0)
    True
    """
    h = int.from_bytes(hashlib.sha256(b"fraction:" + scene_id.encode("utf-8")).digest()[:4], "big")
    return h % 10_000 < fraction * 10_000


@dataclass(frozen=True)
class Scene:
    id: str
    glyphs: tuple[str, ...]
    register: str
    level: str
    tier: str
    lang: str
    text: str
    split: str = "train"
    source: str = field(default="", compare=False)

    @property
    def glyph(self) -> str:
        """The scene's own glyph (the first one listed)."""
        return self.glyphs[0]

    @property
    def markers(self) -> list[str]:
        return _MARKER_RE.findall(self.text)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["glyphs"] = list(self.glyphs)
        d.pop("source")
        return d

    def prompt(self, glyphs: str | None = None, lead: str = "") -> str:
        """This scene's prompt with its own glyphs (or ``glyphs``: ``""`` for none)."""
        return prompt("".join(self.glyphs) if glyphs is None else glyphs, self.register,
                      self.level, self.lang, lead)

    def meaning_prompt(self, meaning: str, lead: str = "") -> str:
        """This scene's header after a glyph's written meaning: the "prompt" way to say what
        the glyph says (evaluation compares the two; distillation teaches one with the other).
        """
        return f"{lead}{meaning}\n{self.prompt('')}"


@dataclass
class Corpus:
    scenes: list[Scene]
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.scenes)

    def get(self, scene_id: str) -> Scene:
        for s in self.scenes:
            if s.id == scene_id:
                return s
        raise SceneError(f"no scene {shown(scene_id)}; `glyph scenes list` shows them")

    def select(self, *, glyph: str | None = None, split: str | None = None,
               tiers=None, registers=None, levels=None, langs=None) -> list[Scene]:
        """Scenes matching every given filter (``glyph`` matches any of a scene's glyphs)."""
        out = []
        for s in self.scenes:
            if glyph is not None and glyph not in s.glyphs:
                continue
            if split is not None and s.split != split:
                continue
            if tiers and s.tier not in tiers:
                continue
            if registers and s.register not in registers:
                continue
            if levels and s.level not in levels:
                continue
            if langs and s.lang not in langs:
                continue
            out.append(s)
        return out

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for s in sorted(self.scenes, key=lambda s: s.id):
            h.update(json.dumps(s.to_dict(), ensure_ascii=False, sort_keys=True).encode())
        return h.hexdigest()[:16]


def parse_scene(item: dict, where: str, reg: Registry) -> Scene:
    """Validate one raw scene mapping; raise ``SceneError('file:line: reason')``."""

    def bad(reason: str) -> SceneError:
        return SceneError(f"{where}: {reason}")

    if not isinstance(item, dict):
        raise bad("a scene must be a mapping with id, glyphs, register, level, tier, lang, text")
    unknown = set(item) - set(_KEYS)
    if unknown:
        raise bad(f"unknown key(s) {sorted(map(shown, unknown))}; known: {', '.join(_KEYS)}")
    missing = [k for k in _KEYS[:-1] if item.get(k) in (None, "", [])]
    if missing:
        raise bad(f"missing {', '.join(missing)}" + (" (empty text)" if "text" in missing else ""))
    try:
        sid = validate_scene_id(item["id"])
        text = validate_text("text", item["text"])
    except GlyphError as e:
        raise bad(str(e)) from None
    canon = _scene_glyphs(item["glyphs"], reg, bad)
    if not isinstance(item["register"], str) or item["register"] not in reg.registers:
        raise bad(f"unknown register {shown(item['register'])}; declared: "
                  f"{', '.join(reg.registers)}")
    for key, allowed in (("level", LEVELS), ("tier", TIERS)):
        if not isinstance(item[key], str) or item[key] not in allowed:
            raise bad(f"{key} {shown(item[key])} must be one of {', '.join(allowed)}")
    if not isinstance(item["lang"], str) or not LANG_RE.fullmatch(item["lang"]):
        raise bad(f"lang {shown(item['lang'])} must be a two-letter code such as en or ru")
    text = canonical_text(text, reg.symbols())
    for m in _MARKER_RE.findall(text):
        if m not in MARKERS:
            raise bad(f"bad section marker [{shown(m)[1:-1]}]; allowed: "
                      + " ".join(f"[{x}]" for x in MARKERS))
    split = item.get("split") or ("heldout" if heldout_by_id(sid) else "train")
    if not isinstance(split, str) or split not in SPLITS:
        raise bad(f"split {shown(split)} must be one of {', '.join(SPLITS)}")
    return Scene(id=sid, glyphs=tuple(canon), register=item["register"], level=item["level"],
                 tier=item["tier"], lang=item["lang"], text=text, split=split, source=where)


def _scene_glyphs(glyphs, reg: Registry, bad) -> list[str]:
    """The registered symbols a scene names (a retired glyph is still known: its scenes load,
    training skips them)."""
    if isinstance(glyphs, str):
        glyphs = [glyphs]
    if not isinstance(glyphs, list) or not all(isinstance(g, str) for g in glyphs):
        raise bad(f"glyphs must be a list of registered symbols, not {shown(glyphs)}")
    symbols = reg.symbols()
    canon = []
    for g in glyphs:
        found = reg.find(canonical_text(g, symbols))
        if found is None:
            raise bad(f"unknown glyph {shown(g)}; register it with `glyph add` or fix the scene")
        canon.append(found.symbol)
    return canon


def parse_file(path: Path, reg: Registry) -> list[Scene]:
    text = read_text(path, SceneError, limit=MAX_SCENE_FILE_BYTES, what="a scene file")
    data = load_yaml(text, path, SceneError)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), list):
        raise SceneError(f"{path}:1: expected `version: 1` and a `scenes:` list")
    if data.get("version") != FORMAT_VERSION:
        raise SceneError(f"{path}:1: version {shown(data.get('version'))} is not supported; "
                         f"use version: {FORMAT_VERSION}")
    out = []
    for item in data["scenes"]:
        line = item.pop("__line__", 1) if isinstance(item, dict) else 1
        out.append(parse_scene(item, f"{path}:{line}", reg))
    return out


def check_unique(scenes: list[Scene]) -> None:
    seen: dict[str, str] = {}
    for s in scenes:
        if s.id in seen:
            raise SceneError(f"{s.source}: duplicate scene id {s.id!r} (first at {seen[s.id]}); "
                             "give every scene its own id")
        seen[s.id] = s.source


def load_corpus(reg: Registry, directory: Path | None = None) -> Corpus:
    """Load and validate every ``*.yaml`` scene file under ``directory`` (sorted by name)."""
    d = Path(directory) if directory else paths.scenes_dir(reg.path)
    if not d.is_dir():
        raise SceneError(f"{d} does not exist; create it and add scenes with `glyph scenes add`")
    files = sorted(d.glob("*.yaml"))
    scenes: list[Scene] = []
    for f in files:
        scenes.extend(parse_file(f, reg))
    check_unique(scenes)
    return Corpus(scenes=scenes, files=files)


def check_coverage(reg: Registry, corpus: Corpus) -> list[str]:
    """``ok``/``warning`` lines: scenes per glyph, held-out counts, linked scene ids."""
    lines = [f"ok: {len(corpus)} scenes in {len(corpus.files)} files, "
             f"{len(corpus.select(split='heldout'))} held out"]
    ids = {s.id for s in corpus.scenes}
    for g in reg.active():
        own = [s for s in corpus.scenes if s.glyph == g.symbol]
        if not own:
            lines.append(f"warning: {g.symbol} '{g.name}' has no scenes; it cannot be trained")
            continue
        held = sum(s.split == "heldout" for s in own)
        if held == 0:
            lines.append(f"warning: {g.symbol} '{g.name}' has no held-out scene; add one with "
                         "`split: heldout`")
        missing = [sid for sid in g.scenes if sid not in ids]
        if missing:
            lines.append(f"warning: {g.symbol} '{g.name}' links unknown scenes {missing}")
    return lines
