"""The glyph service: a routed model and its scene index, joined for retrieval and decompression.

:class:`GlyphService` is what the CLI, the demo and a Python user hold: ``neighbors`` asks
the index, ``generate`` asks the model, ``expand`` runs the decompression protocol with
both (:mod:`glyph.serving.expand`), ``compress`` runs its inverse — which glyphs a text is
nearest to (:mod:`glyph.serving.compress`) — and ``build_index`` embeds the scenes with the
model.

Example::

    >>> svc = GlyphService.load("runs/default")                # doctest: +SKIP
    >>> [h.scene_id for h in svc.neighbors("⟁", k=3)]          # doctest: +SKIP
    ['Δ105', 'Δ141', 'Δ117']
    >>> svc.expand("⟁", register="logic").text                 # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..errors import NotFound
from ..run import Run
from ..vocab.unicode import check_unicode
from .index import SceneIndex, build
from .routing import Generation, GlyphModel
from .vector_cache import cached_encoder


class GlyphService:
    """A :class:`GlyphModel` and (when built) the run's :class:`SceneIndex`."""

    def __init__(self, model: GlyphModel, index: SceneIndex | None = None):
        self.model, self.index = model, index

    @classmethod
    def load(cls, run: Path | str | Run, *, registry=None, with_index: bool = True,
             dtype=None) -> "GlyphService":
        """Load the run's model (see :meth:`GlyphModel.load`) and its index when it exists."""
        gm = GlyphModel.load(run, registry=registry, dtype=dtype)
        index = SceneIndex.load(gm.run.path) if with_index and SceneIndex.exists(gm.run.path) \
            else None
        return cls(gm, index)

    @property
    def run(self) -> Run:
        return self.model.run

    # ------------------------------------------------------------ retrieval
    def neighbors(self, glyph: str, *, k: int = 5, register: str | None = None):
        """Nearest scenes of ``glyph`` in the run's index, best first (cosine scores)."""
        g = self.model.glyph(glyph)
        if register is not None:
            self.model.check_register(register)
        if self.index is None:
            raise NotFound(f"run {self.run.path} has no scene index; build it with "
                           f"`glyph index build {self.run.path}`")
        return self.index.neighbors(g.symbol, k=k, register=register)

    def compress(self, text: str, *, register: str | None = None, level: str | None = None,
                 lang: str | None = None, k: int = 5):
        """The glyphs whose scenes ``text`` is nearest to, best first (see
        :func:`glyph.serving.compress.compress`)."""
        from .compress import compress

        return compress(self, text, register=register, level=level, lang=lang, k=k)

    def build_index(self, corpus, *, log: Callable[[str], None] | None = None,
                    **kw) -> SceneIndex:
        """Embed the corpus scenes of the run's glyphs with the base model; save and use it.

        Scene vectors come from the untouched base, so they are cached per base fingerprint:
        a second run (or a rebuild) on the same base embeds nothing again. They are taken at
        the layers of ``vectors.DEPTHS`` (``glyph-whitened`` joins them all).
        """
        from .vectors import candidate_layers

        base = self.run.manifest().base
        encode = cached_encoder(self.model.hidden, f"{base.family}-{base.fingerprint}")
        self.index = build(self.run.path, encode, list(self.model.glyphs.values()), corpus,
                           self.model.registers, log=log, lead=self.model.lead,
                           layers=candidate_layers(self.model.n_layers), **kw)
        return self.index

    # ------------------------------------------------------------ generation
    def generate(self, texts: Sequence[str], **gen) -> list[Generation]:
        """Continue each text with the adapters of its glyphs (see :meth:`GlyphModel.generate`)."""
        for t in texts:
            check_unicode("a prompt", t)
        return self.model.generate(texts, **gen)

    def expand(self, glyph: str, *, register: str = "poetry", level: str | None = None,
               lang: str | None = None, k: int = 3, **gen):
        """Decompress ``glyph`` into ``register`` (see :func:`glyph.serving.expand.expand`)."""
        from .expand import expand

        return expand(self, glyph, register=register, level=level, lang=lang, k=k, **gen)

    def expand_batch(self, prompts: list[str], **gen) -> list[Generation]:
        """Many prompts in one mixed-adapter pass (see :func:`glyph.serving.expand.expand_batch`)."""
        from .expand import expand_batch

        return expand_batch(self, prompts, **gen)

    def respond(self, prompt: str, *, register: str = "poetry", level: str | None = None,
                lang: str | None = None, k: int = 3, **gen):
        """A glyph (or its name) is expanded; any other text is continued with its glyphs'
        adapters. Returns an :class:`~glyph.serving.expand.Expansion` or a :class:`Generation`."""
        check_unicode("the prompt", prompt)
        if self.model.is_glyph(prompt):
            return self.expand(prompt, register=register, level=level, lang=lang, k=k, **gen)
        return self.generate([prompt], **gen)[0]
