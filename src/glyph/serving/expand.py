"""Decompression: a glyph goes in, its scene comes out in the register asked for.

The protocol, step by step (:func:`expand`):

1. **recognise** the glyph (any presentation form, or its name) among the run's glyphs;
2. **retrieve** its nearest scenes from the run's FAISS index (in the asked register);
3. **choose the LoRA** the glyph triggers;
4. **unfold** the prompt ``glyph + ⟨register · level · lang⟩`` with that adapter active —
   level and language default to those of the nearest scene, so retrieval decides the shape
   of the text unless you do;
5. **return** the text with the scenes and the adapter it used.

The glyph token alone carries the scene into the generation: the retrieved scenes are
returned beside the text (and pick its level and language), they are not pasted into the
prompt. Free text (``"⟁ and 🫁 at dawn"``) is continued with the adapters of the glyphs it
contains (:meth:`glyph.serving.routing.GlyphModel.generate`); :func:`expand_batch` runs many
prompts in one mixed-adapter pass.

Example::

    >>> svc = GlyphService.load("runs/default")               # doctest: +SKIP
    >>> e = expand(svc, "⟁", register="logic")                # doctest: +SKIP
    >>> e.adapter, [h.scene_id for h in e.scenes]             # doctest: +SKIP
    ('initiation', ['Δ105', 'Δ141', 'Δ117'])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..corpus import scenes
from ..errors import ConfigError, GlyphError
from ..limits import MAX_TEXT_FILE_BYTES
from ..readers import parse_json, read_text
from ..vocab.unicode import check_unicode

DEFAULT_LEVEL = "meso"
DEFAULT_LANG = "en"


@dataclass
class Expansion:
    """The result of :func:`expand`: text, the prompt that produced it, adapter and scenes."""

    glyph: str
    register: str
    level: str
    lang: str
    prompt: str
    text: str
    adapter: str
    scenes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["scenes"] = [h.to_dict() for h in self.scenes]
        return d


def plan(svc, glyph: str, *, register: str = "poetry", level: str | None = None,
         lang: str | None = None, k: int = 3) -> Expansion:
    """Steps 1–3 of the protocol: the glyph, its scenes and adapter, the prompt (no text yet).

    The server streams step 4 itself (:mod:`glyph.serving.api`); :func:`expand` runs it here.
    """
    gm = svc.model
    g = gm.glyph(glyph)
    gm.check_register(register)
    scenes.check_style(level, lang)
    if k < 0:
        raise ConfigError("--k must be >= 0")
    hits = svc.neighbors(g.symbol, k=k, register=register) if k else []
    top = hits[0] if hits else None
    level = level or (top.level if top else DEFAULT_LEVEL)
    lang = lang or (top.lang if top else DEFAULT_LANG)
    prompt = scenes.prompt(g.symbol, register, level, lang, gm.lead)
    return Expansion(glyph=g.symbol, register=register, level=level, lang=lang,
                     prompt=prompt, text="", adapter=g.trigger, scenes=hits)


def expand(svc, glyph: str, *, register: str = "poetry", level: str | None = None,
           lang: str | None = None, k: int = 3, **gen) -> Expansion:
    """Run the decompression protocol for one glyph with a ``GlyphService`` (module docstring)."""
    e = plan(svc, glyph, register=register, level=level, lang=lang, k=k)
    e.text = svc.model.generate([e.prompt], **gen)[0].text.strip()
    return e


def expand_batch(svc, prompts: list[str], **gen) -> list:
    """Continue many prompts in one pass; each row uses the adapters of its own glyphs.

    A prompt that is exactly one glyph is unfolded with the protocol's prompt
    (``glyph + header``) in the default register; anything else is continued as free text.
    """
    gm = svc.model
    texts = []
    for p in prompts:
        sym = gm.canonical(p.strip())
        if sym in gm.glyphs:
            texts.append(scenes.prompt(sym, gm.registers[0], DEFAULT_LEVEL, DEFAULT_LANG,
                                       gm.lead))
        else:
            texts.append(p)
    return gm.generate(texts, **gen)


def read_batch(path: Path | str) -> list[str]:
    """Prompts for ``glyph expand --batch``: one per line (blank lines skipped), or JSONL
    objects with a ``prompt`` field; ``\\n`` inside a plain line stands for a newline."""
    path = Path(path)
    raw = read_text(path, ConfigError, limit=MAX_TEXT_FILE_BYTES, what="a prompts file",
                    missing=f"--batch {path} does not exist")
    out = []
    for n, line in enumerate(raw.split("\n"), 1):  # "\n" only: U+2028 may be in a prompt
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            obj = parse_json(line, str(path), ConfigError, first_line=n,
                             fix='write a JSON object with a "prompt" field')
            prompt = obj.get("prompt") if isinstance(obj, dict) else None
            if not isinstance(prompt, str) or not prompt.strip():
                raise ConfigError(f"{path}:{n}: expected a JSON object with a non-empty "
                                  "\"prompt\" text field")
        else:
            prompt = line.replace("\\n", "\n")
        try:
            out.append(check_unicode("the prompt", prompt))
        except GlyphError as e:
            raise ConfigError(f"{path}:{n}: {e}") from None
    if not out:
        raise ConfigError(f"{path} holds no prompts; write one per line")
    return out
