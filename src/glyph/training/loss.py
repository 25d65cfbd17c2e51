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

from ..model.adapters import token_lut
from .data import IGNORE

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
        if not self.compact and torch.is_grad_enabled():
            # training on a dense head: never materialise the [tokens, vocabulary] logits
            idx = self.luts[adapter][1] if self.tied and delta is not None else None
            return _head_nll(hs, self._head_weight(), y, idx, delta if idx is not None
                             else None), sel
        sc = self._scores(hs, y, sel, delta, adapter)
        return sc.lse - sc.target_logit, sc.sel

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


HEAD_CHUNK_ELEMENTS = 1 << 26  # logits held at once by the fused head: 64M floats = 256 MB


class _HeadNLL(torch.autograd.Function):
    """Per-token NLL through a frozen output layer, gradients computed chunk by chunk.

    The head weight ``W`` is frozen (only glyph rows train), so the backward pass needs
    ``dL/dh = (softmax - onehot) @ W`` and, for a tied head, ``dL/d delta`` for the glyph
    columns. Both are computed in the forward pass, one chunk of positions at a time, and the
    ``[tokens, vocabulary]`` logits never exist in full: on a dense 151,936-row head this
    halves the step and its peak memory (benchmarks/train.md). Exact same maths as the dense
    path (a test compares loss and gradients).
    """

    @staticmethod
    def forward(ctx, hs, W, y, idx, delta):
        n, v = hs.shape[0], W.shape[0]
        chunk = max(1, HEAD_CHUNK_ELEMENTS // v)
        nll = hs.new_empty(n, dtype=torch.float32)
        grad_h = torch.empty_like(hs)
        p_glyph = hs.new_zeros(n, 0 if idx is None else len(idx), dtype=torch.float32)
        rows = torch.arange(min(chunk, n), device=hs.device)
        for i in range(0, n, chunk):
            h, yc = hs[i: i + chunk], y[i: i + chunk]
            r = rows[: len(h)]
            logits = F.linear(h, W).float()
            if idx is not None:
                logits[:, idx] = F.linear(h, delta.to(h.dtype)).float()
            lse = torch.logsumexp(logits, dim=-1)
            nll[i: i + len(h)] = lse - logits[r, yc]
            p = logits.sub_(lse.unsqueeze(1)).exp_()   # softmax, in place
            p[r, yc] -= 1                              # d nll / d logits
            g = None
            if idx is not None:
                p_glyph[i: i + len(h)] = p[:, idx]
                g = p[:, idx].to(h.dtype) @ delta.to(h.dtype)
                p[:, idx] = 0                          # those columns came from delta, not W
            gh = p.to(W.dtype) @ W
            grad_h[i: i + len(h)] = (gh if g is None else gh + g).to(hs.dtype)
        ctx.save_for_backward(hs, grad_h, p_glyph)
        ctx.has_delta = idx is not None
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        hs, grad_h, p_glyph = ctx.saved_tensors
        g = grad_nll.unsqueeze(1)
        d_hs = grad_h * g.to(grad_h.dtype)
        d_delta = (p_glyph * g).T.to(hs.dtype) @ hs if ctx.has_delta else None
        return d_hs, None, None, None, d_delta


def _head_nll(hs, W, y, idx, delta):
    """Per-token NLL of targets ``y`` (see :class:`_HeadNLL`); ``idx``/``delta``: glyph columns."""
    if idx is not None:
        idx = idx.to(hs.device)
    return _HeadNLL.apply(hs, W, y, idx, delta)


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
