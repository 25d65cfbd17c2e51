"""Copy-free glyph rows at inference: a per-instance patch of peft's trainable-tokens layers.

peft's ``TrainableTokensLayer`` builds ``index_copy(base weight, glyph rows)`` — a full copy
of the 151,936-row matrix — on *every* forward, and a mixed batch runs the layer once per
adapter group (each pass streams the whole matrix again, for the embedding and for a tied
``lm_head``). At inference that, not the model, dominated each generated token. Here the
base layer runs once over the whole batch and only the glyph positions are replaced:
embedding rows where a glyph id occurs, logit columns of the glyph ids, per row group.

The patch touches only the instances it is installed on, only with autograd off, and falls
back to peft's own path otherwise (training keeps peft's path). It relies on peft internals
(``token_indices``, ``trainable_tokens_delta``, ``_get_embed_scale``,
``_check_overlapping_tokens``, ``TrainableTokensWrapper._mixed_batch_forward``):
:func:`check_peft_internals` says loudly which one is gone, and a test calls it.

Example::

    >>> install(peft_model)        # doctest: +SKIP
    2
"""
from __future__ import annotations

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in mixed batches
REQUIRED = {  # class attributes install() reads or replaces
    "peft.tuners.trainable_tokens.layer.TrainableTokensLayer": (
        "forward_adapters", "_get_embed_scale", "_check_overlapping_tokens", "merged"),
    "peft.utils.other.TrainableTokensWrapper": ("_mixed_batch_forward",),
}


def check_peft_internals() -> None:
    """Raise ``RuntimeError`` naming what changed if peft no longer has what :func:`install` uses."""
    import importlib

    for path, attrs in REQUIRED.items():
        mod, _, cls_name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(mod), cls_name)
        except (ImportError, AttributeError) as e:
            raise RuntimeError(f"peft changed: {path} is gone ({e}); update "
                               "glyph.serving.fast_rows") from None
        missing = [a for a in attrs if not hasattr(cls, a)]
        if missing:
            raise RuntimeError(f"peft changed: {path} has no {', '.join(missing)}; update "
                               "glyph.serving.fast_rows")


def _overwrite(layer, x, out, names) -> None:
    """Put the glyph rows of adapters ``names`` into ``out = base_layer(x)`` in place."""
    import torch

    from ..model.adapters import token_lut

    base = layer.base_layer
    for name in names:
        if name not in layer.token_indices:
            continue
        delta = layer.trainable_tokens_delta[name]
        if name not in layer._glyph_luts:  # built once, not on every generated token
            layer._glyph_luts[name] = token_lut(layer.token_indices[name], base.weight.shape[0])
        lut, idx = layer._glyph_luts[name]
        if isinstance(base, torch.nn.Embedding):
            rows = lut.to(x.device)[x]
            hit = rows >= 0
            if hit.any():
                new = delta[rows[hit]].to(out.dtype)
                scale = layer._get_embed_scale()
                out[hit] = new * scale.to(out.dtype) if scale is not None else new
        else:  # a tied lm_head: glyph rows are logit columns
            idx = idx.to(out.device)
            cols = torch.nn.functional.linear(x, delta.to(x.dtype))
            if base.bias is not None:
                cols = cols + base.bias[idx]
            out[..., idx] = cols.to(out.dtype)


def _fast(layer) -> bool:
    import torch

    return (not torch.is_grad_enabled() and not layer.merged
            and isinstance(layer.base_layer, (torch.nn.Embedding, torch.nn.Linear)))


def _forward_adapters(self, x, active_adapters, *args, **kwargs):
    """``TrainableTokensLayer.forward_adapters``, copy-free when :func:`_fast` allows."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    if self.disable_adapters or not active_adapters or not _fast(self):
        return TrainableTokensLayer.forward_adapters(self, x, active_adapters, *args, **kwargs)
    self._check_overlapping_tokens(active_adapters)
    out = self.base_layer(x)
    _overwrite(self, x, out, active_adapters)
    return out


def _mixed_batch_forward(self, x, *args, adapter_names, **kwargs):
    """``TrainableTokensWrapper._mixed_batch_forward``: the base layer once for the batch."""
    import torch
    from peft.utils.other import TrainableTokensWrapper

    layer = self.token_adapter
    if not _fast(layer):
        return TrainableTokensWrapper._mixed_batch_forward(
            self, x, *args, adapter_names=adapter_names, **kwargs)
    out = layer.base_layer(x)
    head = isinstance(layer.base_layer, torch.nn.Linear)
    for name in dict.fromkeys(adapter_names):
        if name == BASE_ADAPTER or name not in layer.token_indices:
            continue
        rows = torch.tensor([i for i, a in enumerate(adapter_names) if a == name])
        if head:  # copy only the glyph columns of these rows, never whole vocabulary rows
            _glyph_columns(layer, x, out, rows, name)
            continue
        part = out[rows]
        _overwrite(layer, x[rows], part, [name])
        out[rows] = part
    return out


def _glyph_columns(layer, x, out, rows, name) -> None:
    """A tied lm_head in a mixed batch: logit columns of ``name``'s glyphs, for ``rows``."""
    import torch

    from ..model.adapters import token_lut

    if name not in layer._glyph_luts:
        layer._glyph_luts[name] = token_lut(layer.token_indices[name],
                                            layer.base_layer.weight.shape[0])
    idx = layer._glyph_luts[name][1].to(out.device)
    delta = layer.trainable_tokens_delta[name]
    cols = torch.nn.functional.linear(x[rows], delta.to(x.dtype))
    if layer.base_layer.bias is not None:
        cols = cols + layer.base_layer.bias[idx]
    view = out[..., idx]
    view[rows] = cols.to(out.dtype)
    out[..., idx] = view


def install(peft_model) -> int:
    """Patch every trainable-tokens layer of ``peft_model`` (this instance only); return how many.

    Same values as peft's path (up to float summation order in a tied head); taken only with
    autograd off, so training keeps peft's own path.
    """
    import types

    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    from peft.utils.other import TrainableTokensWrapper

    check_peft_internals()
    n = 0
    for m in peft_model.modules():
        if isinstance(m, TrainableTokensLayer):
            m._glyph_luts = {}
            m.forward_adapters = types.MethodType(_forward_adapters, m)
            n += 1
        elif isinstance(m, TrainableTokensWrapper):
            m._mixed_batch_forward = types.MethodType(_mixed_batch_forward, m)
    return n
