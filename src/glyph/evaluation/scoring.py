"""Scoring texts under a run's model: NLL and KL per text, with any adapter or the base.

Texts are batched by length (little padding) and scored exactly (over the full vocabulary,
label tokens only); results come back in input order.

Example::

    >>> scorer = Scorer(gm)                                           # doctest: +SKIP
    >>> scorer.nll([("⟁\\n⟨poetry · micro · en⟩\\n", "The floor goes hot")], "initiation")   # doctest: +SKIP
    [4.21]
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from .. import paths
from ..files import atomic_write, locked


def _examples(tok, pairs, max_text: int, eos: int):
    """``(prompt, text)`` pairs → Examples with labels on the text (+ end of text) only.

    The text is cut to ``max_text`` tokens whatever the prompt's length, so two conditions
    that score the same text with different prompts label exactly the same tokens.
    """
    from ..training.data import IGNORE, Example

    out = []
    for p, t in pairs:
        pi = tok.encode(p, add_special_tokens=False).ids
        ti = (tok.encode(t, add_special_tokens=False).ids + [eos])[:max_text]
        out.append(Example("", "", pi + ti, [IGNORE] * len(pi) + ti))
    return out


class Scorer:
    """Scores texts under a run's model with any adapter (or the base) — batched, exact.

    Texts are batched by length (little padding); results come back in input order.
    """

    def __init__(self, gm, batch_size: int = 16, max_text: int = 192):
        from ..training.loss import GlyphLM

        self.gm, self.batch_size, self.max_text = gm, batch_size, max_text
        self.lm = GlyphLM(gm.model, gm.manifest.base.tied)
        self.tok = gm.run.tokenizer
        self.lead = gm.lead  # every prompt starts as the run's did in training
        self.eos = gm.family.endoftext_id

    def _scored(self, pairs, adapter, order, *, nll_only: bool = False):
        """Yield ``(positions of the batch in the input, Scores)`` in ``order`` (``nll_only``:
        ``(positions, per-token NLL, mask)``, without the full-vocabulary logits)."""
        import torch

        from ..training.data import collate

        exs = _examples(self.tok, pairs, self.max_text, self.eos)
        for i in range(0, len(order), self.batch_size):
            rows = order[i: i + self.batch_size]
            ids, mask, labels = collate([exs[j] for j in rows], self.eos)
            # Score inside the context and yield outside it: a ``yield`` inside
            # ``no_grad``/an adapter scope would leak both states into the caller
            # (and, if the generator is abandoned, into everything that runs after).
            with torch.no_grad(), self.gm.adapters(adapter):
                out = (self.lm.token_nll(ids, mask, labels, adapter) if nll_only
                       else self.lm.scores(ids, mask, labels, adapter))
            yield rows, out

    def _order(self, pairs) -> list[int]:
        lengths = [len(p) + len(t) for p, t in pairs]
        return sorted(range(len(pairs)), key=lambda i: lengths[i])

    def nll(self, pairs, adapter: str | None) -> list[float]:
        """Mean NLL per token of each text given its prompt.

        With ``adapter=None`` (the untouched base) the numbers do not depend on the run, so
        they are kept per base fingerprint (:class:`BaseScores`) and computed once.
        """
        if adapter is None:
            return self.base_scores.nll(pairs, lambda todo: self._nll(todo, None))
        return self._nll(pairs, adapter)

    @property
    def base_scores(self) -> "BaseScores":
        if "_base_scores" not in self.__dict__:
            m = self.gm.manifest  # the registry decides how the run's tokenizer splits glyphs
            self._base_scores = BaseScores(f"{m.base.family}-{m.base.fingerprint}-"
                                           f"{m.registry.get('fingerprint', '-')}-{self.max_text}")
        return self._base_scores

    def _nll(self, pairs, adapter: str | None) -> list[float]:
        out = [0.0] * len(pairs)
        for rows, (nll, sel) in self._scored(pairs, adapter, self._order(pairs), nll_only=True):
            k = 0
            for j, c in zip(rows, sel.sum(1).tolist()):
                out[j] = nll[k: k + c].mean().item()
                k += c
        return out

    def kl(self, pairs_p, adapter_p, pairs_q, adapter_q) -> list[float]:
        """Mean KL(P ‖ Q) per text between two conditions scoring the same texts."""
        order = self._order(pairs_q)
        out = [0.0] * len(pairs_p)
        for (rows, sp), (_, sq) in zip(self._scored(pairs_p, adapter_p, order),
                                       self._scored(pairs_q, adapter_q, order)):
            kl = sp.kl_to(sq)
            k = 0
            for j, c in zip(rows, sp.sel.sum(1).tolist()):
                out[j] = kl[k: k + c].mean().item()
                k += c
        return out


class BaseScores:
    """NLLs of ``(prompt, text)`` pairs under an untouched base, kept in ``$GLYPH_HOME/scores/``.

    The "no glyph" and "written meaning" columns of an evaluation score the base, not the
    run: every run on the same base needs the same numbers. On a real 0.5B model they are
    most of an evaluation's time, so the second run on a base pays nothing for them.
    """

    VERSION = 1

    def __init__(self, key: str):
        self.path = paths.home() / "scores" / f"{key}-v{self.VERSION}.json"

    def _read(self) -> dict[str, float]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def nll(self, pairs, compute: Callable[[list], list[float]]) -> list[float]:
        keys = [hashlib.sha256(f"{p}\0{t}".encode("utf-8")).hexdigest()[:24] for p, t in pairs]
        have = self._read()
        todo = sorted({k: i for i, k in enumerate(keys) if k not in have}.values())
        if todo:
            new = compute([pairs[i] for i in todo])
            with locked(self.path):
                have = {**self._read(), **{keys[i]: v for i, v in zip(todo, new)}}
                atomic_write(self.path, json.dumps(have))
        return [have[k] for k in keys]
