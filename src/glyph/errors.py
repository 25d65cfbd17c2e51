"""Domain errors. The library raises these; the CLI prints ``str(err)`` on one line and exits 1.

Every message says what is wrong *and how to fix it*, e.g.
``⟁ is already registered as 'ascent'; use `glyph remove ⟁` first``.
"""
from __future__ import annotations


class GlyphError(Exception):
    """Base class of every error glyph reports to a user."""

    exit_code = 1


class UnicodeRejected(GlyphError):
    """A symbol cannot be a glyph (control, bidi, letter, not one grapheme, ...)."""


class RegistryError(GlyphError):
    """The registry file is missing, unreadable or would become inconsistent."""


class RegistryCorrupt(RegistryError):
    """The registry file cannot be parsed or fails validation; it is never overwritten."""


class NotFound(GlyphError):
    """A glyph, scene, run or register that was asked for does not exist."""


class TokenizerError(GlyphError):
    """The base tokenizer cannot be built, loaded or extended."""


class SceneError(GlyphError):
    """The scene corpus is invalid (reported as ``file:line: reason``)."""


class ConfigError(GlyphError):
    """A configuration value or command-line combination is invalid."""


class ModelError(GlyphError):
    """A base model or run directory cannot be loaded or is incompatible."""


class TrainingError(GlyphError):
    """Training stopped (non-finite loss, refused output directory, ...)."""


class FileError(GlyphError):
    """A file or directory cannot be read or written (permissions, a file where a directory
    belongs, a full disk, a pseudo-filesystem)."""
