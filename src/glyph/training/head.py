"""The frozen output layer, fused and chunked: per-token NLL and KL without [tokens, vocabulary].

Only glyph rows and LoRA train, so the head weight ``W`` is frozen and the backward pass only
needs ``dL/dh`` (and, for a tied head, ``dL/d delta`` for the glyph columns). Both are
computed in the forward pass, one chunk of positions at a time, so the full
``[tokens, 151,936]`` logits never exist: on a dense head this halves the step and its peak
memory (benchmarks/train.md). Same maths as the dense path (tests compare loss and gradients
with peft's own forward and with a dense KL).

- :func:`head_nll` — ``-log p(y)``; ``d/dlogits = softmax - onehot(y)``;
- :func:`head_kl` — ``KL(teacher ‖ student)`` where the teacher's logits come from its own
  hidden states through the same frozen head; ``d/dlogits = softmax - p_teacher``.

Example::

    >>> nll = head_nll(hs, W, y, idx=None, delta=None)       # doctest: +SKIP
    >>> kl = head_kl(hs, W, teacher_hs, idx=None, delta=None)   # doctest: +SKIP
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

HEAD_CHUNK_ELEMENTS = 1 << 26  # logits held at once by the fused head: 64M floats = 256 MB


def _logits(h, W, idx, delta):
    """Logits of hidden states ``h``; a tied head's glyph columns come from ``delta``."""
    logits = F.linear(h, W).float()
    if idx is not None:
        logits[:, idx] = F.linear(h, delta.to(h.dtype)).float()
    return logits


def _to_hidden(d, h, W, idx, delta, p_glyph):
    """``dL/dh`` from ``d = dL/dlogits`` (consumed); the glyph columns' part is kept in
    ``p_glyph`` for ``dL/d delta`` (those columns came from ``delta``, not ``W``)."""
    g = None
    if idx is not None:
        p_glyph.copy_(d[:, idx])
        g = d[:, idx].to(h.dtype) @ delta.to(h.dtype)
        d[:, idx] = 0
    gh = d.to(W.dtype) @ W
    return gh if g is None else gh + g


class _ChunkedHead(torch.autograd.Function):
    """The backward both heads share: everything was computed in the forward pass."""

    @staticmethod
    def backward(ctx, grad_out):
        hs, grad_h, p_glyph = ctx.saved_tensors
        g = grad_out.unsqueeze(1)
        d_hs = grad_h * g.to(grad_h.dtype)
        d_delta = (p_glyph * g).T.to(hs.dtype) @ hs if ctx.has_delta else None
        return d_hs, None, None, None, d_delta


class _HeadNLL(_ChunkedHead):
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
            logits = _logits(h, W, idx, delta)
            lse = torch.logsumexp(logits, dim=-1)
            nll[i: i + len(h)] = lse - logits[r, yc]
            p = logits.sub_(lse.unsqueeze(1)).exp_()   # softmax, in place
            p[r, yc] -= 1                              # d nll / d logits
            grad_h[i: i + len(h)] = _to_hidden(p, h, W, idx, delta, p_glyph[i: i + len(h)])
        ctx.save_for_backward(hs, grad_h, p_glyph)
        ctx.has_delta = idx is not None
        return nll


def head_nll(hs, W, y, idx, delta):
    """Per-token NLL of targets ``y`` (see :class:`_HeadNLL`); ``idx``/``delta``: glyph columns."""
    if idx is not None:
        idx = idx.to(hs.device)
    return _HeadNLL.apply(hs, W, y, idx, delta)


class _HeadKL(_ChunkedHead):
    """Per-token KL(teacher ‖ student) through a frozen head, gradients computed chunk by chunk.

    ``ht`` are the teacher's final hidden states at the same positions (no gradient: the
    teacher is the frozen base); its glyph columns are the base's own rows, while a tied
    student reads its glyph columns from ``delta``.
    """

    @staticmethod
    def forward(ctx, hs, W, ht, idx, delta):
        n, v = hs.shape[0], W.shape[0]
        chunk = max(1, HEAD_CHUNK_ELEMENTS // (2 * v))  # two [chunk, vocabulary] tensors live
        kl = hs.new_empty(n, dtype=torch.float32)
        grad_h = torch.empty_like(hs)
        p_glyph = hs.new_zeros(n, 0 if idx is None else len(idx), dtype=torch.float32)
        for i in range(0, n, chunk):
            h, t = hs[i: i + chunk], ht[i: i + chunk].to(hs.dtype)
            log_q = _logits(h, W, idx, delta)
            log_q = log_q.sub_(torch.logsumexp(log_q, dim=-1, keepdim=True))
            log_p = F.linear(t, W).float()
            log_p = log_p.sub_(torch.logsumexp(log_p, dim=-1, keepdim=True))
            p = log_p.exp()
            kl[i: i + len(h)] = (p * (log_p - log_q)).sum(-1)
            d = log_q.exp_().sub_(p)                   # d KL / d student logits
            grad_h[i: i + len(h)] = _to_hidden(d, h, W, idx, delta, p_glyph[i: i + len(h)])
        ctx.save_for_backward(hs, grad_h, p_glyph)
        ctx.has_delta = idx is not None
        return kl


def head_kl(hs, W, ht, idx, delta):
    """Per-token KL(teacher ‖ student) (see :class:`_HeadKL`); ``ht``: teacher hidden states."""
    if idx is not None:
        idx = idx.to(hs.device)
    return _HeadKL.apply(hs, W, ht.detach(), idx, delta)


def nll_no_grad(hs, W, y, idx=None, delta=None):
    """Per-token NLL for scoring (no autograd), chunk by chunk: no ``[tokens, vocabulary]``."""
    n, v = hs.shape[0], W.shape[0]
    chunk = max(1, HEAD_CHUNK_ELEMENTS // v)
    out = hs.new_empty(n, dtype=torch.float32)
    with torch.no_grad():
        for i in range(0, n, chunk):
            h = hs[i: i + chunk]
            logits = _logits(h, W, None if idx is None else idx.to(h.device), delta)
            picked = logits.gather(1, y[i: i + chunk].unsqueeze(1)).squeeze(1)
            out[i: i + len(h)] = torch.logsumexp(logits, dim=-1) - picked
    return out
