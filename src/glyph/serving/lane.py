"""One lane of the serving engine: sequences that share forward passes and one KV cache.

A lane is either the *mixed* lane (key ``()``: rows with no trigger or one trigger, each row
naming its adapter through peft's ``adapter_names``) or one multi-trigger combination (key
``("body", "initiation")``: those adapters active together, model-wide, for its passes).

The cache holds ``[rows, heads, length, dim]`` keys and values per layer, **left-padded** to
the lane's length. ``mask`` marks real positions; a row's position ids count only its real
tokens. New rows are prefilled in their own pass and then merged by padding both caches on
the left to a common length; finished rows are cut out, and columns that became padding in
every row are trimmed, so a lane never grows past its longest live sequence.

Text is detokenized incrementally per row (a piece is released only when it decodes to
whole characters) and ``stop`` strings are held back until they can no longer match, so a
client never sees a stop string or half of one.
"""
from __future__ import annotations

from contextlib import nullcontext

from .handle import Handle
from .sampling import choose


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of ``text`` could still begin a stop string."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


class Lane:
    """Sequences decoded together (see the module docstring)."""

    def __init__(self, gm, key: tuple[str, ...], tok_lock):
        self.gm, self.key, self.tok_lock = gm, key, tok_lock
        self.seqs: list["Handle"] = []
        self.cache = None   # transformers DynamicCache, or None while the lane is empty
        self.mask = None    # [rows, length] long, 1 = a real token
        self.stops = set(gm.family.stop_ids)

    # ------------------------------------------------------------ forward passes
    def _forward(self, ids, mask, positions, cache, adapters: list[str]):
        from transformers import DynamicCache

        kw = {"adapter_names": adapters} if not self.key else {}
        scope = self.gm.adapters(list(self.key)) if self.key else nullcontext()
        with scope:
            out = self.gm.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                past_key_values=cache if cache is not None else DynamicCache(),
                                use_cache=True, logits_to_keep=1, **kw)
        return out.logits[:, -1], out.past_key_values

    def prefill(self, new: list["Handle"], adapters: list[str]) -> list["Handle"]:
        """Run the prompts of ``new``, sample their first tokens, merge them into the lane."""
        import torch

        width = max(len(h.prompt_ids) for h in new)
        pad = self.gm.family.endoftext_id
        ids = torch.full((len(new), width), pad, dtype=torch.long)
        mask = torch.zeros((len(new), width), dtype=torch.long)
        for r, h in enumerate(new):  # left padding: every prompt ends at the last column
            ids[r, width - len(h.prompt_ids):] = torch.tensor(h.prompt_ids)
            mask[r, width - len(h.prompt_ids):] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, mask, positions, None, adapters)
        self._merge(new, cache, mask)
        return self._advance(new, logits)

    def decode(self, adapters: list[str]) -> list["Handle"]:
        """One step for every row; returns the rows that finished."""
        import torch

        ids = torch.tensor([[h.out_ids[-1]] for h in self.seqs], dtype=torch.long)
        positions = self.mask.sum(1, keepdim=True)  # real tokens before this one
        self.mask = torch.cat([self.mask, torch.ones((len(self.seqs), 1), dtype=torch.long)], 1)
        logits, self.cache = self._forward(ids, self.mask, positions, self.cache, adapters)
        return self._advance(self.seqs, logits)

    # ------------------------------------------------------------ cache bookkeeping
    def _merge(self, new: list["Handle"], cache, mask) -> None:
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        if self.cache is None:
            self.seqs, self.cache, self.mask = list(new), cache, mask
            return
        n = max(self.mask.shape[1], mask.shape[1])

        def left(t, dim_from_end: int):  # pad the time dimension on the left to n
            extra = n - t.shape[-dim_from_end]
            if not extra:
                return t
            spec = [0, 0] * (dim_from_end - 1) + [extra, 0]
            return F.pad(t, spec)

        layers = []
        for old_l, new_l in zip(self.cache.layers, cache.layers):
            layers.append((torch.cat([left(old_l.keys, 2), left(new_l.keys, 2)]),
                           torch.cat([left(old_l.values, 2), left(new_l.values, 2)])))
        self.cache = DynamicCache(ddp_cache_data=layers)
        self.mask = torch.cat([left(self.mask, 1), left(mask, 1)])
        self.seqs = self.seqs + list(new)

    def drop(self, gone: list["Handle"]) -> None:
        """Cut finished or cancelled rows out of the cache; trim all-padding columns."""
        import torch
        from transformers import DynamicCache

        gone_ids = {h.id for h in gone}
        keep = [i for i, h in enumerate(self.seqs) if h.id not in gone_ids]
        self.seqs = [self.seqs[i] for i in keep]
        if not keep:
            self.cache = self.mask = None
            return
        rows = torch.tensor(keep)
        mask = self.mask[rows]
        first = int(mask.any(0).nonzero()[0])  # columns before it are padding in every row
        self.mask = mask[:, first:]
        self.cache = DynamicCache(ddp_cache_data=[
            (lay.keys[rows, :, first:], lay.values[rows, :, first:]) for lay in self.cache.layers])

    # ------------------------------------------------------------ tokens → text
    def _advance(self, rows: list["Handle"], logits) -> list["Handle"]:
        """Sample one token per row, stream its text; return the rows that finished."""
        tokens = choose(logits, [h.params for h in rows], [h.prompt_ids for h in rows],
                        [h.out_ids for h in rows], [h._gen for h in rows]).tolist()
        finished = []
        for h, tok in zip(rows, tokens):
            if tok in self.stops:
                h._emit(h.text[h._sent:], "stop")
                finished.append(h)
                continue
            h.out_ids.append(tok)
            if self._text(h) or len(h.out_ids) >= h.params.max_tokens:
                if h.finish_reason is None:
                    h._emit(h.text[h._sent:], "length")
                finished.append(h)
        return finished

    def _text(self, h: "Handle") -> bool:
        """Update ``h.text`` after a new token; emit what is safe; True if a stop string hit."""
        with self.tok_lock:
            text = self.gm.tokenizer.decode(h.out_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
            return False
        stops = h.params.stop
        if stops:
            lo = max(0, len(h.text) - max(map(len, stops)))
            hits = [i for i in (text.find(s, lo) for s in stops) if i >= 0]
            if hits:
                h.text = text[:min(hits)]
                h._emit(h.text[h._sent:], "stop")
                return True
        h.text = text
        safe = len(text) - _held_back(text, stops)
        if safe > h._sent:
            h._emit(text[h._sent:safe])
            h._sent = safe
        return False
