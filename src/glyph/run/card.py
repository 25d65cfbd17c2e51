"""``adapters/README.md``: the model card of a run's adapters — which glyphs trigger which
adapter, and how to load one with plain transformers + peft.

Example::

    >>> print(adapter_card(run.manifest()))               # doctest: +SKIP
"""
from __future__ import annotations


def adapter_card(manifest) -> str:
    """``adapters/README.md``: which glyphs trigger which adapter, and how to load one."""
    triggers, info = list(manifest.triggers), manifest.base
    lines = ["# glyph LoRA triggers", "",
             f"Base model: `{info.name}` (`{info.path}`, {'tied' if info.tied else 'untied'} "
             f"embeddings, {info.rows} rows). Each directory is a standard peft adapter: LoRA on "
             "the linear layers plus the trained embedding rows of its glyphs "
             "(`trainable_token_indices`). The tokenizer with the glyphs is `../tokenizer`.", "",
             "| adapter | glyphs (token id) |", "|---|---|"]
    for t in triggers:
        gl = ", ".join(f"{g.symbol} {g.name} ({g.id})" for g in manifest.glyphs_of(t))
        lines.append(f"| `{t}` | {gl} |")
    t0 = triggers[0]
    sym = manifest.glyphs_of(t0)[0].symbol
    lines += ["", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'tok = AutoTokenizer.from_pretrained("../tokenizer")',
              f'base = AutoModelForCausalLM.from_pretrained("{info.path}")']
    if info.rows != info.original_rows:
        lines += ["import torch", "torch.manual_seed(0)  # the glyphs outgrew the spare rows: "
                  "grow exactly as glyph.model.base.grow_rows does",
                  f"base.resize_token_embeddings({info.rows}, mean_resizing=False)"]
    lines += [f'model = PeftModel.from_pretrained(base, "{t0}")',
              f'ids = tok("{sym}\\n⟨poetry · micro · en⟩\\n", return_tensors="pt").input_ids',
              "print(tok.decode(model.generate(ids, max_new_tokens=60, do_sample=True)[0]))",
              "```", ""]
    return "\n".join(lines)
