"""The glyph registry: ``glyphs_registry.yaml``, validated on every load, written atomically.

The file (``version: 1``) holds the registers glyphs expand into, ``next_id`` and the glyphs.
A glyph's token id is assigned once and never reused: ``remove`` retires a glyph and keeps
its id reserved, so a trained model is never silently re-mapped.

The registry records its base family (``family: qwen``, see :mod:`glyph.vocab.family`),
which decides the two kinds of id:

- **added** (for Qwen ``id >= 151669``): a new token after the family's own added tokens;
- **claimed** (for Qwen ``id < 151643``): the symbol is already one token of the family's
  vocabulary (☿, ⬡, ∮, △ …). Adding a duplicate token would change how ordinary text tokenizes, so the glyph
  claims the existing id instead, and the user is told that training that row changes how
  the model reads the symbol everywhere.

Writes take an inter-process lock (``<registry>.lock``), re-read the file, apply the change,
and replace the file atomically (temp file, fsync, rename, fsync dir). A file that does not
parse or validate is reported as ``file:line: reason`` and never overwritten.

Example::

    >>> reg = load()                                   # doctest: +SKIP
    >>> add("⟡", name="spark", meaning="a sudden insight").glyph.id   # doctest: +SKIP
    151680
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from .. import paths
from ..display import shown
from ..errors import GlyphError, RegistryCorrupt, RegistryError
from ..files import atomic_write, load_yaml, locked, read_text
from ..limits import MAX_ADDED_GLYPH_IDS, MAX_REGISTRY_BYTES
from .family import DEFAULT_FAMILY, FAMILIES, BaseFamily, family as get_family
from .glyphs import (DEFAULT_REGISTERS, FORMAT_VERSION, GLYPH_KEYS, HEADER,  # noqa: F401
                     REQUIRED_KEYS, STATUSES, UNICODE_EXCEPTIONS, Glyph, Registry)
from .unicode import describe, validate_line, validate_scene_id, validate_slug, validate_symbol


# ---------------------------------------------------------------- parsing
def parse(text: str, path: Path) -> Registry:
    """Parse and validate registry text; raise :class:`RegistryCorrupt` as ``file:line: …``."""
    data = load_yaml(text, path, RegistryCorrupt)
    if not isinstance(data, dict):
        raise RegistryCorrupt(f"{path}:1: expected a mapping with version, next_id, registers, "
                              "glyphs; fix the file by hand")

    def bad(line: int, reason: str) -> RegistryCorrupt:
        return RegistryCorrupt(f"{path}:{line}: {reason}")

    top = data.pop("__line__", 1)
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise bad(top, f"version {version!r} is not supported (this glyph reads version "
                  f"{FORMAT_VERSION}); upgrade glyph or fix the version key")
    unknown = set(data) - {"version", "family", "next_id", "registers", "glyphs"}
    if unknown:
        raise bad(top, f"unknown top-level key(s) {sorted(map(shown, unknown))}; remove them")
    family_name = data.get("family", DEFAULT_FAMILY)
    if not isinstance(family_name, str) or family_name not in FAMILIES:
        raise bad(top, f"family {shown(family_name)} is not one glyph knows "
                  f"({', '.join(sorted(FAMILIES))}); fix the family key")
    fam = get_family(family_name)
    registers = _parse_registers(data.get("registers") or {}, top, bad)
    items = data.get("glyphs") or []
    if not isinstance(items, list):
        raise bad(top, "glyphs must be a list")
    glyphs: list[Glyph] = []
    seen: dict[str, dict[object, int]] = {"symbol": {}, "name": {}, "id": {}}
    for item in items:
        if not isinstance(item, dict):
            raise bad(top, f"each glyph must be a mapping, got {shown(item)}")
        line = item.pop("__line__", top)
        g = _parse_glyph(item, line, registers, bad, fam)
        for key in ("symbol", "name", "id"):
            value = getattr(g, key)
            if value in seen[key]:
                raise bad(line, f"{key} {value!r} is also used at line {seen[key][value]}; "
                          "every glyph needs its own symbol, name and id")
            seen[key][value] = line
        glyphs.append(g)
    added_ids = [g.id for g in glyphs if g.kind == "added"]
    next_id = data.get("next_id", max(added_ids, default=fam.first_glyph_id - 1) + 1)
    if (not isinstance(next_id, int) or isinstance(next_id, bool)
            or not fam.first_glyph_id <= next_id <= _id_limit(fam)):
        raise bad(top, f"next_id must be an integer from {fam.first_glyph_id} to "
                  f"{_id_limit(fam)}, not {shown(next_id)}")
    if added_ids and max(added_ids) >= next_id:
        raise bad(top, f"next_id {next_id} is not above the largest glyph id {max(added_ids)}; "
                  f"set it to {max(added_ids) + 1}")
    return Registry(path=path, next_id=next_id, registers=dict(registers), glyphs=glyphs,
                    family_name=family_name)


def _id_limit(fam: BaseFamily) -> int:
    """The largest id glyph hands out (each added id is one slot of the tokenizer)."""
    return fam.first_glyph_id + MAX_ADDED_GLYPH_IDS - 1


def _parse_registers(registers, top: int, bad) -> dict[str, str]:
    if not isinstance(registers, dict):
        raise bad(top, "registers must map a register name to its description")
    line = registers.pop("__line__", top)
    for r, desc in registers.items():
        try:
            validate_slug("register", r)
            validate_line(f"the description of register {r!r}", desc)
        except GlyphError as e:
            raise bad(line, str(e)) from None
    return registers


def _list_of_text(item: dict, key: str, line: int, bad) -> list:
    value = item.get(key) or []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise bad(line, f"{key} must be a list of names, not {shown(value)}")
    return value


def _parse_glyph(item: dict, line: int, registers: dict, bad, fam: BaseFamily) -> Glyph:
    unknown = set(item) - set(GLYPH_KEYS)
    if unknown:
        raise bad(line, f"unknown glyph key(s) {sorted(map(shown, unknown))}; known: "
                  f"{', '.join(GLYPH_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if item.get(k) in (None, "")]
    if missing:
        raise bad(line, f"glyph is missing {', '.join(missing)}")
    exceptions = tuple(_list_of_text(item, "unicode_exceptions", line, bad))
    for x in exceptions:
        if x not in UNICODE_EXCEPTIONS:
            raise bad(line, f"unknown unicode_exceptions entry {shown(x)}; use "
                      f"{UNICODE_EXCEPTIONS}")
    if not isinstance(item["symbol"], str):
        raise bad(line, f"symbol must be text, not {shown(item['symbol'])}; quote it")
    try:
        sym = validate_symbol(item["symbol"], allow_private_use="private-use" in exceptions,
                              allow_nonsymbol="nonsymbol" in exceptions).symbol
        if sym != item["symbol"]:
            raise GlyphError(f"symbol must be stored without presentation selectors: write {sym}")
        for k in ("name", "trigger"):
            validate_slug(k, item[k])
        if item.get("archetype"):
            validate_slug("archetype", item["archetype"])
    except GlyphError as e:
        raise bad(line, str(e)) from None
    gid = item["id"]
    if not isinstance(gid, int) or isinstance(gid, bool) or not 0 <= gid <= _id_limit(fam):
        raise bad(line, f"id must be an integer from 0 to {_id_limit(fam)}, not {shown(gid)}")
    if gid in fam.reserved_ids:
        r = fam.reserved_ids
        raise bad(line, f"id {gid} is one of {fam.added_label} ({r.start}..{r.stop - 1}); "
                  f"glyph ids start at {fam.first_glyph_id}")
    kind = fam.kind_of(gid)
    if kind == "claimed" and fam.existing_token_id(sym) != gid:
        raise bad(line, f"id {gid} is below {fam.base_vocab_size} (a claimed {fam.display} "
                  f"token) but {sym} is not {fam.display} token {gid}; use an id >= "
                  f"{fam.first_glyph_id}")
    regs = _list_of_text(item, "registers", line, bad)
    if any(r not in registers for r in regs):
        raise bad(line, f"registers {shown(regs)} must be declared registers "
                  f"({', '.join(registers)}); declare new ones under `registers:`")
    scenes = _list_of_text(item, "scenes", line, bad)
    try:
        for sid in scenes:
            validate_scene_id(sid)
    except GlyphError as e:
        raise bad(line, str(e)) from None
    if item["status"] not in STATUSES:
        raise bad(line, f"status {shown(item['status'])} must be one of {STATUSES}")
    try:
        meaning = validate_line("meaning", item["meaning"])
    except GlyphError as e:
        raise bad(line, str(e)) from None
    return Glyph(symbol=sym, id=gid, name=item["name"], meaning=meaning,
                 trigger=item["trigger"], archetype=item.get("archetype") or "",
                 registers=tuple(regs), scenes=tuple(scenes), status=item["status"],
                 unicode_exceptions=exceptions, kind=kind, line=line)


# ---------------------------------------------------------------- reading and writing
def load(path: Path | str | None = None) -> Registry:
    """Load and validate the registry (``GLYPH_REGISTRY`` or the project's file)."""
    p = Path(path) if path else paths.registry_path()
    if not p.exists() and not p.is_symlink():
        raise RegistryError(f"{p} does not exist; run `glyph init` or set GLYPH_REGISTRY")
    text = read_text(p, RegistryCorrupt, limit=MAX_REGISTRY_BYTES, what="a registry")
    return parse(text, p)


def load_optional() -> Registry | None:
    """The project registry, or None when there is none (a run can be used on its own).

    A registry that exists but is broken is still an error.
    """
    try:
        p = paths.registry_path()
    except RegistryError:
        return None
    return load(p) if p.exists() else None


@contextmanager
def editing(path: Path | str | None = None) -> Iterator[Registry]:
    """Lock, load, let the caller change the registry, validate and write it back atomically.

    If the block raises, nothing is written. The result is re-parsed before writing so a
    change can never produce a file glyph itself would refuse to read.
    """
    p = Path(path) if path else paths.registry_path()
    with locked(p):
        reg = load(p)
        yield reg
        text = reg.to_yaml()
        try:
            parse(text, p)  # never write what we could not read back
        except RegistryCorrupt as e:
            reason = str(e).split(": ", 1)[-1]
            raise RegistryError(f"refusing to write {p}: the change would give a registry glyph "
                                f"cannot read back ({reason}); nothing was written — please "
                                "report this as a glyph bug") from None
        atomic_write(p, text)


def init(path: Path | str, *, registers: dict[str, str] | None = None) -> Registry:
    """Create an empty registry file; refuse to overwrite an existing one."""
    p = Path(path)
    if p.exists():
        raise RegistryError(f"{p} already exists; edit it with `glyph add` / `glyph remove`")
    reg = Registry(path=p, registers=dict(registers or DEFAULT_REGISTERS))
    with locked(p):
        atomic_write(p, reg.to_yaml())
    return reg


@dataclass(frozen=True)
class AddResult:
    glyph: Glyph
    notes: list[str]


def add(
    symbol: str, *, name: str, meaning: str, archetype: str = "", trigger: str | None = None,
    registers: list[str] | tuple[str, ...] | None = None, scenes: list[str] | tuple[str, ...] = (),
    allow_private_use: bool = False, allow_nonsymbol: bool = False,
    path: Path | str | None = None,
) -> AddResult:
    """Register a glyph and assign its id; return it with notes for the user.

    ``trigger`` defaults to the name (one adapter per glyph); ``registers`` default to all
    declared registers.
    """
    checked = validate_symbol(symbol, allow_private_use=allow_private_use,
                              allow_nonsymbol=allow_nonsymbol)
    sym, notes = checked.symbol, list(checked.notes)
    validate_slug("name", name)
    trigger = validate_slug("trigger", trigger or name)
    if archetype:
        validate_slug("archetype", archetype)
    meaning = validate_line("meaning", meaning)
    for sid in scenes:
        validate_scene_id(sid)
    exceptions = tuple(x for x, on in (("private-use", allow_private_use),
                                       ("nonsymbol", allow_nonsymbol)) if on)
    with editing(path) as reg:
        clash = reg.find(sym)
        if clash is not None:
            how = ("`glyph remove` it first" if clash.active else
                   "its id stays reserved; a retired symbol cannot be registered again")
            raise RegistryError(f"{sym} is already registered as '{clash.name}' "
                                f"({clash.status}); {how}")
        for g in reg.glyphs:
            if g.name == name:
                raise RegistryError(f"name '{name}' is already used by {g.symbol}; choose another "
                                    "--name")
        regs = tuple(registers) if registers else tuple(reg.registers)
        for r in regs:
            if r not in reg.registers:
                raise RegistryError(f"unknown register '{r}'; declared: {', '.join(reg.registers)} "
                                    f"(add it under `registers:` in {reg.path.name})")
        existing = reg.family.existing_token_id(sym)
        if existing is not None:
            gid = existing
            notes.append(f"{sym} is already one {reg.family.display} token (id {gid}): the glyph "
                         "claims that id "
                         "instead of adding a duplicate; training changes how the model reads "
                         f"{sym} in ordinary text too")
        else:
            gid = reg.next_id
            reg.next_id += 1
        glyph = Glyph(symbol=sym, id=gid, name=name, meaning=meaning, trigger=trigger,
                      archetype=archetype, registers=regs, scenes=tuple(scenes),
                      unicode_exceptions=exceptions, kind=reg.family.kind_of(gid))
        reg.glyphs.append(glyph)
    return AddResult(glyph=glyph, notes=notes)


def remove(key: str, *, path: Path | str | None = None) -> Glyph:
    """Retire a glyph (by symbol or name). Its id stays reserved forever."""
    with editing(path) as reg:
        g = reg.get(key)
        if not g.active:
            raise RegistryError(f"{g.symbol} '{g.name}' is already retired")
        retired = replace(g, status="retired")
        reg.glyphs[reg.glyphs.index(g)] = retired
    return retired


def codepoints(g: Glyph) -> str:
    """``U+27C1 WHITE TRIANGLE CONTAINING SMALL WHITE TRIANGLE`` for a glyph."""
    return describe(g.symbol)
