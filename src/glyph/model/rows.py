"""Initial embedding rows for new glyph tokens: a table of named strategies.

- ``mean``: mean of all *trained* rows of the base vocabulary (non-zero rows below the
  family's first glyph id) — bounds the change in the model's output distribution (Hewitt);
- ``meaning``: mean of the rows of the tokens of the glyph's written meaning — a head start;
- ``random``: normal with the trained rows' std (seeded generator).

Claimed glyphs (already a token of the vocabulary) keep their own row whatever the strategy.
Adding a strategy is one function and one entry in :data:`STRATEGIES`.

Example::

    >>> rows = init_rows(model, glyphs, "mean", encode, first_glyph_id=151669)   # doctest: +SKIP
    >>> rows.shape                                                                # doctest: +SKIP
    torch.Size([14, 128])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError

DEFAULT_INIT = "mean"  # chosen by measurement: benchmarks/train.md (init comparison)


@dataclass
class _Base:
    """What every strategy may read: the embedding, its trained rows and their mean."""

    W: "object"
    trained: "object"
    mean: "object"
    encode: Callable[[str], list[int]]
    first_glyph_id: int
    generator: "object"


def _mean(base: _Base, glyph):
    return base.mean.clone()


def _random(base: _Base, glyph):
    import torch

    return torch.randn(base.W.shape[1], generator=base.generator) * base.trained.std()


def _meaning(base: _Base, glyph):
    ids = [i for i in base.encode(glyph.meaning) if i < base.first_glyph_id]
    ids = [i for i in ids if base.W[i].abs().sum() > 0]
    return base.W[ids].mean(0) if ids else base.mean.clone()


STRATEGIES: dict[str, Callable] = {"mean": _mean, "meaning": _meaning, "random": _random}


def init_rows(model, glyphs, strategy: str, encode: Callable[[str], list[int]], *,
              first_glyph_id: int, seed: int = 0):
    """Initial rows for ``glyphs`` (registry Glyphs), a ``[n, hidden]`` tensor in the model's dtype.

    ``encode`` turns text into token ids (for ``meaning``).
    """
    import torch

    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown init strategy {strategy!r}; use one of "
                          f"{', '.join(STRATEGIES)}")
    W = model.get_input_embeddings().weight.detach()
    below = W[:first_glyph_id]
    trained = below[below.abs().sum(-1) > 0]
    base = _Base(W, trained, trained.mean(0), encode, first_glyph_id,
                 torch.Generator().manual_seed(seed))
    make = STRATEGIES[strategy]
    rows = [W[g.id].clone() if g.kind == "claimed" else make(base, g) for g in glyphs]
    return torch.stack(rows).to(W.dtype)
