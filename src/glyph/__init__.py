"""glyph: Unicode symbols as first-class tokens of a Qwen3 model.

Light modules (registry, unicode, tokenizer) import no torch; heavy ones are imported lazily.
"""
from __future__ import annotations

__version__ = "0.1.0"
