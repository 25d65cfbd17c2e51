"""glyph: Unicode symbols as first-class tokens of a Qwen3 model.

Light modules (registry, unicode, tokenizer) import no torch; heavy ones are imported lazily.
"""
from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``glyph.GlyphModel`` without importing torch when ``import glyph`` runs (the registry
    # commands must start fast).
    if name == "GlyphModel":
        from .runtime import GlyphModel

        return GlyphModel
    raise AttributeError(f"module 'glyph' has no attribute {name!r}")
