"""A sum of adapters as one more adapter, so multi-trigger rows join a mixed batch.

peft gives a row of a mixed batch exactly one adapter (``adapter_names``); several adapters
act together only when activated model-wide, which costs a forward pass of their own. The
sum of LoRA deltas ``Σ sᵢ·Bᵢ·Aᵢ`` is itself a LoRA of rank ``Σ rᵢ``: A stacked along the rank,
B side by side with each part's scale folded in, scale 1. Glyph rows of different triggers
never overlap, so the combined adapter's trainable tokens are the union of the parts' rows.
:func:`add_sum_adapter` registers that adapter on the live model (once per combination);
the engine then routes a ``⟁ and 🫁`` row to ``body+initiation`` in the same pass as every
other row. The same construction, written to disk, is ``glyph export --multi-lora
--combine`` (:mod:`glyph.serving.multilora`).

Example::

    >>> add_sum_adapter(peft_model, ["body", "initiation"])    # doctest: +SKIP
    'body+initiation'
"""
from __future__ import annotations

from .routes import combo_name


def _token_ids(config) -> list[int]:
    ids = config.trainable_token_indices or []
    if isinstance(ids, dict):  # {"embed_tokens": [...]}
        ids = [i for v in ids.values() for i in v]
    return list(ids)


def add_sum_adapter(pm, names: list[str]) -> str:
    """Register the sum of adapters ``names`` on peft model ``pm``; return its name."""
    import torch
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    new = combo_name(names)
    if new in pm.peft_config:
        return new
    cfgs = [pm.peft_config[n] for n in names]
    rank = sum(c.r for c in cfgs)
    ids = sorted({i for c in cfgs for i in _token_ids(c)})
    targets = sorted({t for c in cfgs for t in c.target_modules})
    pm.add_adapter(new, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                   target_modules=targets, trainable_token_indices=ids or None,
                                   task_type=cfgs[0].task_type))
    with torch.no_grad():
        for m in pm.modules():
            if isinstance(m, LoraLayer) and new in m.lora_A:
                parts = [n for n in names if n in m.lora_A]
                A = torch.cat([m.lora_A[n].weight for n in parts], 0)
                B = torch.cat([m.lora_B[n].weight * m.scaling[n] for n in parts], 1)
                if A.shape[0] < rank:  # a part that does not adapt this module adds zeros
                    A = torch.cat([A, A.new_zeros(rank - A.shape[0], A.shape[1])], 0)
                    B = torch.cat([B, B.new_zeros(B.shape[0], rank - B.shape[1])], 1)
                m.lora_A[new].weight.copy_(A)
                m.lora_B[new].weight.copy_(B)
                m.scaling[new] = 1.0
            elif isinstance(m, TrainableTokensLayer) and not m.tied_adapter \
                    and new in m.trainable_tokens_delta:
                for j, tid in enumerate(m.token_indices[new]):
                    owner = next(n for n in names if tid in m.token_indices.get(n, []))
                    k = m.token_indices[owner].index(tid)
                    m.trainable_tokens_delta[new][j].copy_(m.trainable_tokens_delta[owner][k])
    for p in pm.parameters():  # add_adapter makes the new weights trainable: not here
        p.requires_grad_(False)
    return new
