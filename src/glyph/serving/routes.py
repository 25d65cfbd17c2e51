"""Which adapter a prompt needs: the routing rules of a run or of a multi-LoRA export.

An engine that serves one LoRA per request (vLLM, or any OpenAI-compatible server with
LoRA modules) needs to be told which adapter a prompt needs — the OpenAI ``model`` name:

- no glyph → the base model's name;
- glyphs of one trigger → that trigger's adapter;
- glyphs of several triggers → the adapter that sums them, named by the sorted triggers
  joined with ``+`` (``body+initiation``), which exists only if the export was asked for it
  (``glyph export RUN --multi-lora OUT --combine body+initiation``).

Light on purpose (no torch): ``glyph route`` and any client can use it.

Example::

    >>> r = Routing(model="glyph", glyphs={"⟁": "initiation", "🫁": "body"},
    ...             combinations={"body+initiation": ["body", "initiation"]})
    >>> r.model_for("plain text"), r.model_for("⟁ rises"), r.model_for("🫁 and ⟁")
    ('glyph', 'initiation', 'body+initiation')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError, NotFound
from ..vocab.unicode import canonical_text

ROUTING = "routing.json"
ROUTING_FORMAT = 1


def _str_map(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                           for k, v in value.items())


def combo_name(triggers) -> str:
    """The adapter name of several triggers together: sorted, joined with ``+``."""
    return "+".join(sorted(set(triggers)))


@dataclass
class Routing:
    """Glyph → trigger, and the multi-trigger adapters that exist."""

    model: str
    glyphs: dict[str, str]
    combinations: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, export_dir: Path | str) -> "Routing":
        from ..limits import MAX_JSON_BYTES
        from ..readers import read_json

        path = Path(export_dir) / ROUTING
        if not path.exists():
            raise NotFound(f"{path} does not exist; write an export with `glyph export RUN "
                           f"--multi-lora {export_dir}`")
        data = read_json(path, ModelError, limit=MAX_JSON_BYTES, what="a routing file",
                         fix="export again")
        if not isinstance(data, dict) or data.get("version") != ROUTING_FORMAT:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise ModelError(f"{path} is not routing format {ROUTING_FORMAT} (found {found!r}); "
                             "export again")
        model, glyphs, combos = data.get("model"), data.get("glyphs"), data.get("combinations", {})
        if not (isinstance(model, str) and _str_map(glyphs) and isinstance(combos, dict)
                and all(isinstance(v, list) and all(isinstance(t, str) for t in v)
                        for v in combos.values())):
            raise ModelError(f"{path}: model must be text, glyphs a map of glyph → trigger and "
                             "combinations a map of name → triggers; export again")
        return cls(model=model, glyphs=glyphs, combinations=combos)

    @classmethod
    def of_run(cls, manifest, model: str) -> "Routing":
        """The rules of a run itself (every combination allowed: the run sums adapters live)."""
        return cls(model=model, glyphs={g.symbol: g.trigger for g in manifest.glyphs},
                   combinations=None)  # type: ignore[arg-type]

    def triggers_in(self, text: str) -> list[str]:
        """Triggers of the glyphs in ``text``, in order of first appearance (as GlyphModel)."""
        text = canonical_text(text, set(self.glyphs))
        found = sorted((text.find(s), t) for s, t in self.glyphs.items() if s in text)
        return list(dict.fromkeys(t for _, t in found))

    def model_for(self, text: str) -> str:
        """The OpenAI ``model`` name a prompt needs (see the module docstring)."""
        triggers = self.triggers_in(text)
        if not triggers:
            return self.model
        if len(triggers) == 1:
            return triggers[0]
        name = combo_name(triggers)
        if self.combinations is not None and name not in self.combinations:
            raise NotFound(f"this prompt needs {' and '.join(sorted(triggers))} together, and "
                           f"the export has no adapter for that; export again with "
                           f"`--combine {name}`")
        return name
