"""Per-request sampling for the serving engine: one batch of logits, each row its own rules.

A row is chosen exactly as transformers' ``generate`` chooses for one prompt — repetition
penalty over prompt + generated tokens, then temperature, top-k, top-p — so a greedy request
gives the same tokens as :meth:`glyph.serving.routing.GlyphModel.generate`. Two things differ
on purpose, both for speed on a 151,936-token vocabulary (a full sort costs ~30 ms per row
on one core here): top-p looks for its nucleus among the best :data:`NUCLEUS_CANDIDATES`
tokens first and sorts the whole row only when they do not reach ``top_p``; and a row draws
with one uniform number from its **own** ``torch.Generator`` (inverse CDF), so a request with a
``seed`` gives the same text whatever else shares its batch.

OpenAI's ``presence_penalty`` and ``frequency_penalty`` are applied as OpenAI documents
them: ``logit -= presence * [count > 0] + frequency * count`` over generated tokens.

Example::

    >>> import torch
    >>> p = SamplingParams(max_tokens=4, temperature=0)
    >>> logits = torch.tensor([[0.1, 2.0, 0.3]])
    >>> choose(logits, [p], [[0]], [[]], [None]).tolist()
    [1]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

NUCLEUS_CANDIDATES = 256  # top-p searches these first; exact fallback to a full sort
BLOCK = 1024              # the inverse CDF is walked block by block (see _draw)
MAX_STOPS = 4             # as OpenAI


@dataclass(frozen=True)
class SamplingParams:
    """How one request is sampled (OpenAI's names; ``top_k``/``repetition_penalty`` as vLLM's).

    >>> SamplingParams(max_tokens=0)
    Traceback (most recent call last):
    ...
    glyph.errors.ConfigError: max_tokens must be an integer >= 1
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                      # 0 = off
    repetition_penalty: float = 1.0     # 1 = off (transformers' definition)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    def __post_init__(self) -> None:
        def number(name: str, lo: float, hi: float) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not lo <= v <= hi:
                raise ConfigError(f"{name} must be a number in [{lo:g}, {hi:g}]")

        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) \
                or self.max_tokens < 1:
            raise ConfigError("max_tokens must be an integer >= 1")
        number("temperature", 0, 2)
        number("presence_penalty", -2, 2)
        number("frequency_penalty", -2, 2)
        number("repetition_penalty", 0.01, 10)
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ConfigError("top_p must be a number in (0, 1]")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError("top_k must be an integer >= 0 (0 = off)")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if len(stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in stop):
            raise ConfigError(f"stop must be a non-empty string or a list of at most {MAX_STOPS}")
        object.__setattr__(self, "stop", stop)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError("seed must be an integer")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def generator(seed: int | None):
    """A private RNG for one request (never the global one): seeded, or from OS entropy."""
    import torch

    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
    return g


def _penalise(row, p: SamplingParams, prompt: Sequence[int], out: Sequence[int]) -> None:
    """In place: repetition penalty (prompt + output), then OpenAI's presence/frequency."""
    import torch

    if p.repetition_penalty != 1.0:
        seen = torch.tensor(list(prompt) + list(out), dtype=torch.long)
        if len(seen):
            s = row.gather(0, seen)
            s = torch.where(s < 0, s * p.repetition_penalty, s / p.repetition_penalty)
            row.scatter_(0, seen, s)
    if out and (p.presence_penalty or p.frequency_penalty):
        ids, counts = torch.tensor(list(out), dtype=torch.long).unique(return_counts=True)
        row.index_add_(0, ids, -(p.presence_penalty + p.frequency_penalty * counts.to(row.dtype)))


def _nucleus(probs, top_p: float):
    """``(positions, probabilities)`` that top-p keeps from a probability row (not renormalised).

    transformers' rule: drop the tokens whose ascending cumulative probability is
    ``<= 1 - top_p``, i.e. those with at least ``top_p`` of mass strictly above them; the most
    likely token always stays.
    """
    import torch

    k = min(NUCLEUS_CANDIDATES, probs.numel())
    vals, pos = torch.topk(probs, k)
    if k < probs.numel() and float(vals.sum()) < top_p:  # the nucleus is wider: sort it all
        vals, pos = torch.sort(probs, descending=True)
    above = vals.cumsum(0) - vals
    keep = above < top_p
    keep[0] = True
    return pos[keep], vals[keep]


def _sample(row, p: SamplingParams, gen) -> int:
    """One token from a (penalised) logit row under temperature, top-k and top-p."""
    import torch

    row = row / p.temperature
    if p.top_k:
        vals, ids = torch.topk(row, min(p.top_k, row.numel()))
        probs = torch.softmax(vals, 0)
        if p.top_p < 1:
            pos, probs = _nucleus(probs, p.top_p)
            ids = ids[pos]
    else:
        probs = torch.softmax(row, 0)
        ids = None
        if p.top_p < 1:
            ids, probs = _nucleus(probs, p.top_p)
    u = torch.rand(1, generator=gen, dtype=torch.float64)
    j = int(_draw(probs[None], u)[0])
    return int(ids[j]) if ids is not None else j


def _draw(probs, u):
    """Inverse-CDF draws: for each row of ``probs`` (``[rows, n]``, not necessarily summing to
    1) the index where the cumulative mass passes ``u * total``. Exact, and cheap on a
    151,936-token row: block sums first, then a cumulative sum inside one block only."""
    import torch

    rows, n = probs.shape
    full = n - n % BLOCK
    sums = [probs[:, :full].reshape(rows, -1, BLOCK).sum(-1)] if full else []
    if full < n:
        sums.append(probs[:, full:].sum(-1, keepdim=True))
    blocks = torch.cat(sums, 1).double().cumsum(-1)               # [rows, blocks]
    target = u.double() * blocks[:, -1]
    b = torch.searchsorted(blocks, target[:, None], right=True)[:, 0].clamp(max=blocks.shape[1] - 1)
    out = torch.empty(rows, dtype=torch.long)
    for r in range(rows):
        k = int(b[r])
        before = blocks[r, k - 1] if k else 0.0
        inner = probs[r, k * BLOCK:(k + 1) * BLOCK].double().cumsum(0)
        j = int(torch.searchsorted(inner, (target[r] - before).reshape(1), right=True)[0])
        out[r] = min(k * BLOCK + min(j, len(inner) - 1), n - 1)
    return out


def _plain_sampling(p: SamplingParams, out: Sequence[int]) -> bool:
    """Sampling from the whole tempered distribution, nothing else (OpenAI's defaults)."""
    return (not p.greedy and p.top_k == 0 and p.top_p == 1 and p.repetition_penalty == 1.0
            and not (out and (p.presence_penalty or p.frequency_penalty)))


def _sample_plain(logits, params, generators):
    """:func:`_sample` for many rows at once when they only have a temperature: one softmax
    and one cumulative sum for the batch, one uniform number from each row's generator."""
    import torch

    temps = torch.tensor([p.temperature for p in params], dtype=logits.dtype)
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    return _draw(torch.softmax(logits / temps[:, None], -1), u)


def choose(logits, params: Sequence[SamplingParams], prompts: Sequence[Sequence[int]],
           outputs: Sequence[Sequence[int]], generators: Sequence) -> "torch.Tensor":
    """The next token of every row of ``logits`` (``[rows, vocab]``), each by its own params."""
    import torch

    logits = logits.float()
    out = torch.empty(logits.shape[0], dtype=torch.long)
    greedy = [i for i, p in enumerate(params) if p.greedy and p.repetition_penalty == 1.0
              and not (outputs[i] and (p.presence_penalty or p.frequency_penalty))]
    if greedy:  # the common greedy case, batched
        idx = torch.tensor(greedy)
        out[idx] = logits[idx].argmax(-1)
    plain = [i for i, p in enumerate(params) if _plain_sampling(p, outputs[i])]
    if plain:  # plain sampling, batched
        idx = torch.tensor(plain)
        out[idx] = _sample_plain(logits[idx], [params[i] for i in plain],
                                 [generators[i] for i in plain])
    for i in sorted(set(range(len(params))) - set(greedy) - set(plain)):
        p, row = params[i], logits[i].clone()
        _penalise(row, p, prompts[i], outputs[i])
        out[i] = int(row.argmax()) if p.greedy else _sample(row, p, generators[i])
    return out
