"""glyph: Unicode symbols as first-class tokens of a Qwen3 model.

The package follows the data flow: ``vocab`` (unicode rules, base family, registry,
tokenizer) → ``corpus`` (scenes) → ``model`` (base models, glyph rows, scoped adapters) →
``run`` (the run directory) → ``training`` (the recipe) → ``serving`` (routing, index,
expansion, export) → ``evaluation`` (metrics, report, saturation) → ``cli``. Lower layers
never import higher ones. Light modules import no torch; heavy ones are imported lazily.

Example::

    >>> from glyph import GlyphService              # doctest: +SKIP
    >>> GlyphService.load("runs/default").expand("⟁", register="poetry").text   # doctest: +SKIP
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "GlyphModel": ("glyph.serving.routing", "GlyphModel"),
    "GlyphService": ("glyph.serving.service", "GlyphService"),
    "Run": ("glyph.run", "Run"),
    "TrainConfig": ("glyph.training.config", "TrainConfig"),
    "train": ("glyph.training.recipe", "train"),
}


def __getattr__(name: str):
    # ``glyph.GlyphService`` without importing torch when ``import glyph`` runs (the registry
    # commands must start fast).
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'glyph' has no attribute {name!r}")
