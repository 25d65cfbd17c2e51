"""Does a token at the start of a prompt steer the text less than the same token one later?

Real Qwen models turn the first token of a text into an attention sink: a huge hidden state
that later tokens attend to as a no-op, whatever the token was. A glyph at position 0 would
then carry its meaning only through the first layers. This probe feeds 14 different one-token
words, each followed by the decompression header, to the *untrained* base, once at position 0
and once after each candidate lead, and reports:

- how different the words' hidden states stay (mean pairwise cosine at layers 4 and 12: 1.000
  means the word is erased);
- the norm of the word's hidden state at layer 4 (a sink's is huge);
- how much the word changes the next-token distribution after the header (mean pairwise KL).

Usage::

    python tools/probe_first_token.py --base "$GGUF" --out benchmarks/first_token.md
"""
from __future__ import annotations

import itertools
import time

from _probe import load_probe_base, probe_args

WORDS = ["fire", "river", "water", "bone", "salt", "stone", "light", "heart", "storm", "door",
         "seed", "mirror", "ash", "wind"]
LEADS = {"none (position 0)": "", "`\\n`": "\n", "`<|endoftext|>`": "<|endoftext|>",
         "`<|im_start|>`": "<|im_start|>"}


def probe(model, tok, lead: str, words: list[str]) -> dict:
    """The three measures of the module docstring for one lead."""
    import torch

    from glyph.corpus import scenes

    ids = [tok.encode(w, add_special_tokens=False) for w in words]
    if any(len(i) != 1 for i in ids):
        raise SystemExit(f"every word must be one token of this base: {dict(zip(words, ids))}")
    pre = tok.encode(lead, add_special_tokens=False) if lead else []
    header = tok.encode("\n" + scenes.header("poetry", "micro", "en"), add_special_tokens=False)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([pre + i + header for i in ids]),
                    output_hidden_states=True)
    lp = out.logits[:, -1].float().log_softmax(-1)
    n = len(words)
    kl = [(lp[a].exp() * (lp[a] - lp[b])).sum().item()
          for a, b in itertools.permutations(range(n), 2)]

    def cos(layer: int) -> float:
        x = torch.nn.functional.normalize(out.hidden_states[layer][:, len(pre)].float(), dim=-1)
        c = x @ x.T
        return (c.sum() - c.diag().sum()).item() / (n * (n - 1))

    return {"cos4": cos(4), "cos12": cos(12), "kl": sum(kl) / len(kl),
            "norm4": out.hidden_states[4][:, len(pre)].float().norm(dim=-1).mean().item()}


def main() -> None:
    a = probe_args(__doc__)
    t0 = time.time()
    model, tok = load_probe_base(a.base)
    rows = {name: probe(model, tok, lead, WORDS) for name, lead in LEADS.items()}
    lines = ["# The first token of a prompt", "",
             f"Command: `python tools/probe_first_token.py --base {a.base} --out {a.out}` "
             f"({time.time() - t0:.0f} s).", "",
             f"{len(WORDS)} one-token words ({', '.join(WORDS)}), each followed by "
             "`\\n⟨poetry · micro · en⟩\\n`, through the untrained base; the word at position 0 "
             "or after a lead. cos: mean pairwise cosine of the words' hidden states (1.000: the "
             "word is erased); KL: mean pairwise KL of the next-token distributions after the "
             "header (how much the word steers what follows).", "",
             "| lead | cos, layer 4 | cos, layer 12 | state norm, layer 4 | KL next token |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {name.replace('|', chr(92) + '|')} | {r['cos4']:.3f} | {r['cos12']:.3f} | {r['norm4']:.0f} | {r['kl']:.3f} |"
              for name, r in rows.items()]
    a.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
