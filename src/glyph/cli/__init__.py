"""The ``glyph`` command: thin click commands over the library.

Every command parses, calls one library function and prints. Library errors
(:class:`glyph.errors.GlyphError`) are translated once, in :mod:`glyph.cli.app`, into one
line on stderr and exit code 1. Heavy modules (torch, transformers, peft, faiss) are imported
inside the commands that need them, so ``glyph list`` / ``glyph add`` start fast.

Commands live by what they work on: ``registry`` (glyphs and the tokenizer), ``scenes``
(the corpus), ``training`` (train, saturate, demo), ``runs`` (index, neighbors, expand,
export, eval), ``serve`` (serve, route).
"""
from __future__ import annotations

import sys

from . import registry, runs, scenes, serve, training  # noqa: F401  (they register their commands)
from .app import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
