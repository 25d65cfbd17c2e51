"""The training forward pass: a masked LM loss over a peft model (LoRA + trainable glyph rows).

Same maths and parameters as ``peft_model(input_ids, labels=…).loss``, computed faster:

1. **logits only where a label exists** — prompt and padding positions never reach the
   151,936-wide output layer, which dominates the step of a small model;
2. **glyph rows read straight from peft's ``trainable_tokens_delta``** — peft's own forward
   ``index_copy``-s the whole embedding matrix on every call (twice when tied);
3. **exact compact softmax when the head has all-zero rows** — a row of zeros gives a logit of
   exactly 0, so ``logsumexp`` over the full vocabulary equals
   ``logaddexp(logsumexp(live logits), log(#zero rows))``. The embedded default base keeps
   every token it never saw at exactly zero (see :mod:`glyph.model.tiny`), so only its ~6k live
   rows are multiplied. A real checkpoint has no zero rows and takes the dense path.

A test checks the loss against peft's own forward, tied and untied, dense and compact.

Example::

    >>> lm = GlyphLM(peft_model, tied=True)                       # doctest: +SKIP
    >>> loss, n_tokens = lm(ids, mask, labels, adapter="initiation")   # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.adapters import active, token_lut
from .data import IGNORE
from .head import head_kl, head_nll, nll_no_grad

COMPACT_MIN_ZERO_FRACTION = 0.25  # below this, the dense head is as fast


def embedding_layer(peft_model):
    """peft's TrainableTokensLayer around the input embedding."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    for m in peft_model.modules():
        if isinstance(m, TrainableTokensLayer) and isinstance(m.base_layer, torch.nn.Embedding):
            return m
    raise ValueError("the peft model has no trainable tokens on its input embedding")


class GlyphLM(torch.nn.Module):
    """Masked LM loss of a peft model with one active adapter; returns ``(loss, n_tokens)``."""

    def __init__(self, peft_model, tied: bool, *, compact: bool | None = None):
        super().__init__()
        self.peft_model = peft_model
        self.tied = tied
        self.emb = embedding_layer(peft_model)
        rows = self.emb.base_layer.weight.shape[0]
        self.luts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        glyph_ids: set[int] = set()
        for name, idx in self.emb.token_indices.items():
            self.luts[name] = token_lut(idx, rows)
            glyph_ids.update(idx)
        head_w = self._head_weight()
        with torch.no_grad():
            live = (head_w != 0).any(dim=1)
            live[sorted(glyph_ids)] = True  # glyph rows are always computed (they train)
        n_zero = int(rows - live.sum())
        if compact is None:
            compact = n_zero >= COMPACT_MIN_ZERO_FRACTION * rows
        self.compact = compact and n_zero > 0
        if self.compact:
            cols = live.nonzero().squeeze(1)
            self.cols = cols
            self.col_of = torch.full((rows,), -1, dtype=torch.long)
            self.col_of[cols] = torch.arange(len(cols))
            self.log_zero = math.log(n_zero)
            self.n_zero = n_zero
            # glyph columns of each adapter inside the compact set (tied: read from the delta)
            self.glyph_cols = {n: self.col_of[idx] for n, (_, idx) in self.luts.items()}

    def _head_weight(self) -> torch.Tensor:
        head = self.peft_model.base_model.model.get_output_embeddings()
        return head.base_layer.weight if hasattr(head, "base_layer") else head.weight

    def forward(self, input_ids, attention_mask, labels, adapter: str | None, *,
                per_token: bool = False):
        """Mean loss over the labelled tokens and their count (``per_token``: the
        :meth:`token_nll` pair instead)."""
        nll, sel = self.token_nll(input_ids, attention_mask, labels, adapter)
        if per_token:
            return nll, sel
        return nll.mean(), int(sel.sum())

    def token_nll(self, input_ids, attention_mask, labels, adapter: str | None):
        """Per-token NLL of every labelled position (flat, row-major) and the ``[B, T-1]`` mask.

        ``adapter=None`` scores the untouched base: base rows, no LoRA (the caller disables the
        adapters with ``peft_model.disable_adapter()``).
        """
        hs, y, sel, delta = self._hidden(input_ids, attention_mask, labels, adapter)
        return self._nll(hs, y, sel, delta, adapter), sel

    def _nll(self, hs, y, sel, delta, adapter):
        if not self.compact:  # a dense head: never materialise the [tokens, vocabulary] logits
            idx = self.luts[adapter][1] if self.tied and delta is not None else None
            d = delta if idx is not None else None
            if torch.is_grad_enabled():
                return head_nll(hs, self._head_weight(), y, idx, d)
            return nll_no_grad(hs, self._head_weight(), y, idx, d)
        sc = self._scores(hs, y, sel, delta, adapter)
        return sc.lse - sc.target_logit

    def token_losses(self, input_ids, attention_mask, labels, adapter: str, *,
                     teacher_hs=None, nll: bool = True):
        """``(NLL, KL, mask)`` per labelled token from one pass through the model.

        ``nll=False`` skips the NLL (``None``); without ``teacher_hs`` — the teacher's final
        hidden states at the same labelled tokens (:meth:`teacher_hidden`) — the KL is
        ``None``. Both go through the frozen head chunk by chunk (:mod:`glyph.training.head`).
        """
        hs, y, sel, delta = self._hidden(input_ids, attention_mask, labels, adapter)
        out_nll = self._nll(hs, y, sel, delta, adapter) if nll else None
        out_kl = None
        if teacher_hs is not None:
            idx = self.luts[adapter][1] if self.tied and delta is not None else None
            out_kl = head_kl(hs, self._head_weight(), teacher_hs, idx,
                             delta if idx is not None else None)
        return out_nll, out_kl, sel

    def teacher_hidden(self, input_ids, attention_mask, labels):
        """The untouched base's final hidden states at the labelled positions (no gradient)."""
        with torch.no_grad(), active(self.peft_model, None):
            hs, _, _, _ = self._hidden(input_ids, attention_mask, labels, None)
        return hs

    def scores(self, input_ids, attention_mask, labels, adapter: str | None) -> "Scores":
        """Next-token scores at every labelled position (see :class:`Scores`)."""
        hs, y, sel, delta = self._hidden(input_ids, attention_mask, labels, adapter)
        return self._scores(hs, y, sel, delta, adapter)

    def _hidden(self, input_ids, attention_mask, labels, adapter: str | None):
        """Final hidden states at the labelled positions, their targets, mask and glyph rows."""
        lm = self.peft_model.base_model.model           # the *ForCausalLM with LoRA layers
        W = self.emb.base_layer.weight                  # frozen base rows
        x = F.embedding(input_ids, W)
        delta = None
        if adapter is not None:
            delta = self.emb.trainable_tokens_delta[adapter]
            lut, _ = self.luts[adapter]
            pos = lut.to(input_ids.device)[input_ids]
            x = torch.where((pos >= 0).unsqueeze(-1), delta[pos.clamp(min=0)].to(x.dtype), x)
        h = lm.model(inputs_embeds=x, attention_mask=attention_mask).last_hidden_state
        target = labels[:, 1:]
        sel = target != IGNORE
        return h[:, :-1][sel], target[sel], sel, delta

    def _scores(self, hs, y, sel, delta, adapter) -> "Scores":
        head_w = self._head_weight()
        tied_glyphs = self.tied and delta is not None  # the tied head reads the trained rows
        if not self.compact:
            logits = F.linear(hs, head_w)
            if tied_glyphs:
                logits[:, self.luts[adapter][1].to(logits.device)] = hs @ delta.T.to(hs.dtype)
            logits = logits.float()
            picked = logits.gather(1, y.unsqueeze(1)).squeeze(1)
            return Scores(logits, torch.logsumexp(logits, dim=-1), picked, sel, 0)
        logits = F.linear(hs, head_w[self.cols.to(hs.device)]).float()
        if tied_glyphs:
            logits[:, self.glyph_cols[adapter].to(hs.device)] = (hs @ delta.T.to(hs.dtype)).float()
        lse = torch.logaddexp(torch.logsumexp(logits, dim=-1),
                              torch.tensor(self.log_zero, device=hs.device))
        col = self.col_of.to(y.device)[y]
        picked = logits.gather(1, col.clamp(min=0).unsqueeze(1)).squeeze(1)
        target_logit = torch.where(col >= 0, picked, torch.zeros_like(picked))  # zero row: 0
        return Scores(logits, lse, target_logit, sel, self.n_zero)


@dataclass
class Scores:
    """Next-token scores at the labelled positions of a batch (flat, row-major).

    ``logits`` covers the computed columns (every row of the vocabulary, or in compact mode
    the live rows); the ``n_zero`` other rows all have logit exactly 0. ``lse`` is the
    full-vocabulary logsumexp, so ``log p(token) = logit - lse``.
    """

    logits: torch.Tensor
    lse: torch.Tensor
    target_logit: torch.Tensor
    sel: torch.Tensor
    n_zero: int

    def kl_to(self, other: "Scores") -> torch.Tensor:
        """KL(self ‖ other) per position, exact over the full vocabulary (same columns)."""
        lp = self.logits - self.lse.unsqueeze(1)
        lq = other.logits - other.lse.unsqueeze(1)
        kl = (lp.exp() * (lp - lq)).sum(-1)
        if self.n_zero:  # every zero row: p = exp(-lse_p), q = exp(-lse_q)
            kl = kl + self.n_zero * torch.exp(-self.lse) * (other.lse - self.lse)
        return kl.clamp(min=0)
