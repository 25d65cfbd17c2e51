"""The run directory (``directory.Run``) and its typed manifest (``manifest.Manifest``).

Example::

    >>> from glyph.run import Run
    >>> Run("runs/default").manifest().triggers        # doctest: +SKIP
"""
from .directory import Run
from .manifest import GlyphEntry, Manifest

__all__ = ["Run", "Manifest", "GlyphEntry"]
