"""The trainable parts a recipe adds to a base: one LoRA adapter per trigger with its glyph
rows, and (in the memory plan's checkpoint mode) gradient checkpointing.

Example::

    >>> peft_model = attach_adapters(base, reg, ["body", "initiation"], cfg, init_rows)   # doctest: +SKIP
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .config import TrainConfig

def attach_adapters(base_model, reg, triggers: list[str], cfg: TrainConfig, init_rows: dict):
    """One LoRA adapter per trigger, each training only its own glyphs' rows."""
    import torch
    from peft import LoraConfig, get_peft_model

    from .loss import embedding_layer

    peft_model = None
    for t in triggers:
        ids = [g.id for g in reg.active() if g.trigger == t]
        lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=list(reg.family.lora_targets),
                        trainable_token_indices=ids, task_type="CAUSAL_LM")
        if peft_model is None:
            peft_model = get_peft_model(base_model, lc, adapter_name=t)
        else:
            peft_model.add_adapter(t, lc)
    emb = embedding_layer(peft_model)
    with torch.no_grad():  # our init goes into the adapter, the base stays bit-identical
        for t in triggers:
            for j, gid in enumerate(emb.token_indices[t]):
                emb.trainable_tokens_delta[t][j].copy_(init_rows[gid])
    return peft_model


def checkpointing(model) -> None:
    """Gradient checkpointing, non-reentrant (inputs need no grad; works with LoRA)."""
    kw = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # its name since transformers 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
