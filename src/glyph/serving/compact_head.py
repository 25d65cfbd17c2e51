"""An output layer that multiplies only its non-zero rows (at inference, for the engine).

The embedded default base keeps every token it never saw at exactly zero (9,800 live rows of
151,936; see :mod:`glyph.model.tiny`), and on a tiny model the output layer is most of the
work per generated token. A zero row gives a logit of exactly 0 (its bias, if any), so the
patched layer computes ``x @ W[live].T`` and writes it into a tensor of zeros: the same
logits, a fraction of the multiply. A real checkpoint has no zero rows and is left alone.
The training step has its own compact softmax (:mod:`glyph.training.loss`); this is the
inference side, installed per instance, only with autograd off.

Example::

    >>> install(peft_model)      # doctest: +SKIP
    9800
"""
from __future__ import annotations

MIN_ZERO_FRACTION = 0.25  # below this the dense layer is as fast


def _head_linear(peft_model):
    """The ``nn.Linear`` that computes the logits (under peft's trainable-tokens wrapper)."""
    head = peft_model.get_output_embeddings()
    token_adapter = getattr(head, "token_adapter", None)
    return token_adapter.base_layer if token_adapter is not None else head


def install(peft_model, min_zero_fraction: float = MIN_ZERO_FRACTION) -> int:
    """Patch the output layer of ``peft_model`` if enough of its rows are zero; return the
    number of live rows it multiplies (0: not patched)."""
    import torch

    lin = _head_linear(peft_model)
    if not isinstance(lin, torch.nn.Linear) or getattr(lin, "_glyph_compact", False):
        return int(getattr(lin, "_glyph_live", 0))
    with torch.no_grad():
        live = lin.weight.ne(0).any(1).nonzero().squeeze(1)
    rows = lin.weight.shape[0]
    if rows - len(live) < min_zero_fraction * rows:
        return 0
    with torch.no_grad():
        weight = lin.weight[live].contiguous()       # a copy: the model is not trained here
        bias = lin.bias[live] if lin.bias is not None else None
    dense = lin.forward

    def forward(x):
        if torch.is_grad_enabled():
            return dense(x)
        out = (x.new_zeros(*x.shape[:-1], rows) if lin.bias is None
               else lin.bias.to(x.dtype).expand(*x.shape[:-1], rows).clone())
        out[..., live] = torch.nn.functional.linear(x, weight.to(x.dtype),
                                                    None if bias is None else bias.to(x.dtype))
        return out

    lin.forward = forward
    lin._glyph_compact, lin._glyph_live = True, len(live)
    return len(live)
