"""Scoped adapter activation, and the token lookup table glyph rows are served through.

peft keeps *which adapters are active* as state on the model. glyph never changes it for
longer than a block: :func:`active` activates one adapter, several at once (their LoRA deltas
add up and each glyph's row comes from its own adapter, as the row sets are disjoint), or
none (the untouched base), and restores what was active before — also when the block raises.
Which parameters train is not its business: peft's own switching of ``requires_grad`` is
undone, so a step may run two adapters and train both.

Example::

    >>> with active(peft_model, "initiation"):            # doctest: +SKIP
    ...     loss = model(**batch).loss
    >>> with active(peft_model, ["initiation", "body"]):  # doctest: +SKIP
    ...     out = model.generate(**enc)
    >>> with active(peft_model, None):                    # doctest: +SKIP
    ...     base_logits = model(**batch).logits
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence


def active_names(peft_model) -> list[str]:
    """The adapters active now (as peft reports them)."""
    names = peft_model.base_model.active_adapters
    return [names] if isinstance(names, str) else list(names)


@contextmanager
def _grad_flags_kept(peft_model) -> Iterator[None]:
    """Undo peft's switching of ``requires_grad`` when adapters are (de)activated.

    glyph decides what trains itself, and a step may run two adapters (the contrast term) or
    the base (the distillation teacher): a parameter switched off before the backward pass
    would silently get no gradient.
    """
    flags = [(p, p.requires_grad) for n, p in peft_model.named_parameters()
             if "lora_" in n or "trainable_tokens_delta" in n]
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _set(peft_model, names: list[str]) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    with _grad_flags_kept(peft_model):
        # peft's model-level set_adapter takes one name (and refuses several trainable-token
        # adapters at once: their rows could overlap; ours are disjoint by construction), so
        # activate the first everywhere, then all of them on every adapter layer.
        peft_model.base_model.set_adapter(names[0])
        if len(names) > 1:
            for m in peft_model.modules():
                if isinstance(m, BaseTunerLayer):
                    m.set_adapter(names)


@contextmanager
def active(peft_model, names: str | Sequence[str] | None) -> Iterator[None]:
    """Activate ``names`` (one, several, or ``None`` for the base) for the block; restore after."""
    if names is None:
        with _grad_flags_kept(peft_model), peft_model.disable_adapter():
            yield
        return
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted:
        raise ValueError("active() needs at least one adapter name, or None for the base")
    before = active_names(peft_model)
    if before == wanted:
        yield
        return
    _set(peft_model, wanted)
    try:
        yield
    finally:
        _set(peft_model, before)


def token_lut(indices, rows: int):
    """``(lut, idx)`` for one adapter's trainable rows: ``lut[token id]`` = its position in
    the adapter's delta (``-1`` for every other token) and ``idx`` = the token ids as a tensor.

    >>> lut, idx = token_lut([5, 2], rows=8)
    >>> lut.tolist(), idx.tolist()
    ([-1, -1, 1, -1, -1, 0, -1, -1], [5, 2])
    """
    import torch

    idx = torch.tensor(list(indices), dtype=torch.long)
    lut = torch.full((rows,), -1, dtype=torch.long)
    lut[idx] = torch.arange(len(idx))
    return lut, idx
