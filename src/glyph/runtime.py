"""The glyph-routed model: a trained run loaded for inference, routing adapters by glyph.

:class:`GlyphModel` loads a run directory (base + every trigger adapter + tokenizer, and the
scene index when it exists) and routes each input by the glyphs it contains:

- no glyph → the untouched base (peft's ``__base__``: no LoRA, base embedding rows);
- glyphs of one trigger → that trigger's adapter;
- glyphs of several triggers → those adapters *together*: their LoRA deltas add up and each
  glyph's row comes from its own adapter (row sets are disjoint by construction). This is the
  documented combination for free text such as ``"⟁ and 🫁"``.

A batch may mix routes: rows with at most one trigger share one forward pass through peft's
mixed-batch ``adapter_names``; each multi-trigger combination runs as its own group.

Example::

    >>> gm = GlyphModel.load("runs/default")                 # doctest: +SKIP
    >>> gm.generate(["⟁ the floor gives way and"])[0].text  # doctest: +SKIP
    >>> gm.expand("⟁", register="poetry").text             # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import model as mdl
from .errors import ConfigError, ModelError, NotFound
from .runs import load_manifest
from .unicode import canonical_text

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in mixed batches
STOP_IDS = (151643, 151645)  # <|endoftext|> ends every scene; <|im_end|> ends a chat turn


@dataclass
class Generation:
    """One continuation: the (canonical) prompt, the new text and the adapters it used."""

    prompt: str
    text: str
    triggers: list[str]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _clean(text: str) -> str:
    """Cut a continuation where the model starts a new scene header (``⟨…⟩``)."""
    cut = text.find("⟨")
    return (text[:cut] if cut >= 0 else text).rstrip()


def _fast_token_rows(peft_model) -> int:
    """Serve trainable-token rows without copying the embedding matrix; return layers patched.

    peft's ``TrainableTokensLayer`` builds ``index_copy(base weight, glyph rows)`` — a full
    copy of the 151,936-row matrix — on *every* forward, and a mixed batch runs the layer once
    per adapter group (each pass streams the whole matrix again, for the embedding and for a
    tied ``lm_head``). At inference that, not the model, dominated each generated token.
    Here the base layer runs once over the whole batch and only the glyph positions are
    replaced: embedding rows where a glyph id occurs, logit columns of the glyph ids, per row
    group. Same values (up to float summation order in the head). Training keeps peft's path
    (this one is only taken with autograd off).
    """
    import types

    import torch
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    from peft.utils.other import TrainableTokensWrapper

    from .forward import token_lut

    def overwrite(layer, x, out, names) -> None:
        """Put the glyph rows of adapters ``names`` into ``out = base_layer(x)`` in place."""
        base = layer.base_layer
        for name in names:
            if name not in layer.token_indices:
                continue
            delta = layer.trainable_tokens_delta[name]
            if name not in layer._glyph_luts:  # built once, not on every generated token
                layer._glyph_luts[name] = token_lut(layer.token_indices[name],
                                                    base.weight.shape[0])
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

    def fast(layer) -> bool:
        return (not torch.is_grad_enabled() and not layer.merged
                and isinstance(layer.base_layer, (torch.nn.Embedding, torch.nn.Linear)))

    def forward_adapters(self, x, active_adapters, *args, **kwargs):
        if self.disable_adapters or not active_adapters or not fast(self):
            return TrainableTokensLayer.forward_adapters(self, x, active_adapters, *args, **kwargs)
        self._check_overlapping_tokens(active_adapters)
        out = self.base_layer(x)
        overwrite(self, x, out, active_adapters)
        return out

    def mixed_batch_forward(self, x, *args, adapter_names, **kwargs):
        layer = self.token_adapter
        if not fast(layer):
            return TrainableTokensWrapper._mixed_batch_forward(
                self, x, *args, adapter_names=adapter_names, **kwargs)
        out = layer.base_layer(x)  # once for the whole batch
        for name in dict.fromkeys(adapter_names):
            if name == BASE_ADAPTER:
                continue
            rows = torch.tensor([i for i, a in enumerate(adapter_names) if a == name])
            part = out[rows]
            overwrite(layer, x[rows], part, [name])
            out[rows] = part
        return out

    n = 0
    for m in peft_model.modules():
        if isinstance(m, TrainableTokensLayer):
            m._glyph_luts = {}
            m.forward_adapters = types.MethodType(forward_adapters, m)
            n += 1
        elif isinstance(m, TrainableTokensWrapper):
            m._mixed_batch_forward = types.MethodType(mixed_batch_forward, m)
    return n


class GlyphModel:
    """A trained run, ready to route, retrieve and generate. Build it with :meth:`load`."""

    def __init__(self, run: Path, manifest: dict, tokenizer, peft_model, *, registers=None,
                 index=None):
        self.run, self.manifest, self.tokenizer, self.model = run, manifest, tokenizer, peft_model
        self.index = index
        self.glyphs: dict[str, dict] = {g["symbol"]: g for g in manifest["glyphs"]}
        self.triggers: list[str] = list(manifest["triggers"])
        self.registers: list[str] = list(registers or manifest.get("registers")
                                         or ("poetry", "logic", "interface", "body"))

    # ------------------------------------------------------------ loading
    @classmethod
    def load(cls, run: Path | str, *, registry=None, with_index: bool = True,
             dtype=None) -> "GlyphModel":
        """Load base + every trigger adapter of ``run``.

        Refuses an incomplete run and a registry whose ids differ from the run's.
        """
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        run = Path(run)
        manifest = load_manifest(run, registry)
        tok = AutoTokenizer.from_pretrained(run / manifest["tokenizer"])
        tok.padding_side = "left"  # generation continues at the right edge of every row
        where = manifest["base"]["path"]
        if not Path(where).exists() and Path(where).is_absolute():
            raise ModelError(f"the base model of run {run} is gone ({where}); rebuild it with "
                             f"`glyph train --out {run} --overwrite` or restore that directory")
        with mdl.quiet_loading():
            base = AutoModelForCausalLM.from_pretrained(where, dtype=dtype or torch.float32)
            mdl.grow_rows(base, manifest["base"]["rows"])
            pm = None
            for t, rel in manifest["triggers"].items():
                if pm is None:
                    pm = PeftModel.from_pretrained(base, run / rel, adapter_name=t)
                else:
                    pm.load_adapter(run / rel, adapter_name=t)
        pm.eval()
        _fast_token_rows(pm)
        index = None
        if with_index:
            from .index import SceneIndex

            if SceneIndex.exists(run):
                index = SceneIndex.load(run)
        regs = list(registry.registers) if registry is not None else None
        return cls(run, manifest, tok, pm, registers=regs, index=index)

    # ------------------------------------------------------------ routing
    def canonical(self, text: str) -> str:
        """NFC, and a presentation selector after a glyph dropped (as in training)."""
        return canonical_text(text, set(self.glyphs))

    def triggers_in(self, text: str) -> list[str]:
        """Triggers of the glyphs present in ``text``, in order of first appearance."""
        found = sorted((text.find(s), g["trigger"]) for s, g in self.glyphs.items() if s in text)
        out: list[str] = []
        for _, t in found:
            if t not in out:
                out.append(t)
        return out

    def glyph(self, key: str) -> dict:
        """A glyph of this run by symbol (any presentation form) or name."""
        sym = self.canonical(key.strip())
        for g in self.glyphs.values():
            if g["symbol"] == sym or g["name"] == key.strip():
                return g
        known = " ".join(self.glyphs)
        raise NotFound(f"{key!r} is not a glyph of run {self.run} (it knows {known}); register "
                       "it, add scenes and train again")

    def check_register(self, register: str) -> None:
        if register not in self.registers:
            raise ConfigError(f"unknown register {register!r}; use one of "
                              f"{', '.join(self.registers)}")

    # ------------------------------------------------------------ generation
    def generate(self, texts: Sequence[str], *, max_new_tokens: int = 120,
                 temperature: float = 0.8, top_p: float = 0.95, top_k: int = 50,
                 repetition_penalty: float = 1.1, seed: int = 0,
                 min_new_tokens: int = 0) -> list[Generation]:
        """Continue each text, routing adapters per row by the glyphs it contains."""
        if max_new_tokens < 1:
            raise ConfigError("--max-new-tokens must be >= 1")
        if temperature < 0:
            raise ConfigError("--temperature must be >= 0 (0 = greedy)")
        texts = [self.canonical(t) for t in texts]
        routes = [self.triggers_in(t) for t in texts]
        kw = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                  top_k=top_k, repetition_penalty=repetition_penalty, seed=seed,
                  min_new_tokens=min_new_tokens)
        out: list[Generation | None] = [None] * len(texts)
        single = [i for i, r in enumerate(routes) if len(r) <= 1]
        if single:
            names = [routes[i][0] if routes[i] else BASE_ADAPTER for i in single]
            for i, text in zip(single, self._generate([texts[i] for i in single], names, **kw)):
                out[i] = Generation(texts[i], text, routes[i])
        combos: dict[tuple[str, ...], list[int]] = {}
        for i, r in enumerate(routes):
            if len(r) > 1:
                combos.setdefault(tuple(r), []).append(i)
        for combo, rows in combos.items():
            with self.adapters(list(combo)):
                res = self._generate([texts[i] for i in rows], None, **kw)
            for i, text in zip(rows, res):
                out[i] = Generation(texts[i], text, list(combo))
        return out  # type: ignore[return-value]

    def adapters(self, names: list[str]):
        """Context manager: activate several adapters at once (restored afterwards)."""
        from contextlib import contextmanager

        @contextmanager
        def active():
            from peft.tuners.tuners_utils import BaseTunerLayer

            # peft's model-level set_adapter refuses several trainable-token adapters at once
            # (their rows could overlap; ours are disjoint by construction), so activate the
            # first one everywhere, then all of them on every adapter layer: LoRA deltas add
            # up and the token layer merges every adapter's rows.
            self.model.base_model.set_adapter(names[0])
            for m in self.model.modules():
                if isinstance(m, BaseTunerLayer):
                    m.set_adapter(names)
            try:
                yield
            finally:
                self.model.base_model.set_adapter(self.triggers[0])

        return active()

    def _generate(self, texts, adapter_names, *, max_new_tokens, temperature, top_p, top_k,
                  repetition_penalty, seed, min_new_tokens) -> list[str]:
        import torch

        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True,
                             add_special_tokens=False)
        kw = dict(max_new_tokens=max_new_tokens, pad_token_id=STOP_IDS[0],
                  eos_token_id=list(STOP_IDS), repetition_penalty=repetition_penalty,
                  min_new_tokens=min_new_tokens)
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if adapter_names is not None:
            kw["adapter_names"] = list(adapter_names)
        torch.manual_seed(seed)
        with torch.no_grad():
            ids = self.model.generate(**enc, **kw)
        new = ids[:, enc["input_ids"].shape[1]:]
        return [_clean(self.tokenizer.decode(row, skip_special_tokens=True)) for row in new]

    def route_logits(self, text: str, ids=None):
        """Logits of ``text`` through the routing :meth:`generate` uses (``[1, T, vocab]``)."""
        import torch

        text = self.canonical(text)
        if ids is None:
            ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        route = self.triggers_in(text)
        with torch.no_grad():
            if len(route) > 1:
                with self.adapters(route):
                    return self.model(input_ids=ids).logits
            return self.model(input_ids=ids,
                              adapter_names=[route[0] if route else BASE_ADAPTER]).logits

    # ------------------------------------------------------------ hidden states
    def hidden(self, pairs: Sequence[tuple[str, str]], *, adapter: str | None = None,
               batch_size: int = 16):
        """Hidden states of ``prefix + text`` pairs: ``(mean over text tokens, last token)``.

        ``adapter=None`` runs the untouched base. Returns two float32 numpy arrays ``[n, d]``.
        """
        import numpy as np
        import torch

        tok = self.tokenizer
        means, lasts = [], []
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i: i + batch_size]
            rows, spans = [], []
            for prefix, text in chunk:
                p = tok(self.canonical(prefix), add_special_tokens=False)["input_ids"]
                t = tok(self.canonical(text), add_special_tokens=False)["input_ids"] if text else []
                rows.append(p + t)
                spans.append((len(p), len(p) + len(t)))
            n = max(len(r) for r in rows)
            ids = torch.full((len(rows), n), STOP_IDS[0], dtype=torch.long)
            mask = torch.zeros((len(rows), n), dtype=torch.long)
            for j, r in enumerate(rows):  # right padding: positions count from 0 in every row
                ids[j, : len(r)] = torch.tensor(r)
                mask[j, : len(r)] = 1
            with torch.no_grad(), self._route(adapter):
                # the transformer body only: no 151,936-wide logits for states we do not need
                body = self.model.base_model.model.model
                h = body(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            for j, (a, b) in enumerate(spans):
                lo, hi = (a, b) if b > a else (0, a)
                means.append(h[j, lo:hi].mean(0).numpy())
                lasts.append(h[j, (b if b > a else a) - 1].numpy())
        return np.stack(means).astype("float32"), np.stack(lasts).astype("float32")

    def _route(self, adapter: str | None):
        from contextlib import nullcontext

        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return nullcontext()

    # ------------------------------------------------------------ retrieval and decompression
    def neighbors(self, glyph: str, *, k: int = 5, register: str | None = None):
        """Nearest scenes of ``glyph`` in the run's index, best first (cosine scores)."""
        g = self.glyph(glyph)
        if register is not None:
            self.check_register(register)
        if self.index is None:
            raise NotFound(f"run {self.run} has no scene index; build it with "
                           f"`glyph index build {self.run}`")
        return self.index.neighbors(g["symbol"], k=k, register=register)

    def expand(self, glyph: str, *, register: str = "poetry", level: str | None = None,
               lang: str | None = None, k: int = 3, **gen):
        """Decompress ``glyph`` into ``register`` (see :func:`glyph.expand.expand`)."""
        from .expand import expand

        return expand(self, glyph, register=register, level=level, lang=lang, k=k, **gen)
