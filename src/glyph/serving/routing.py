"""The glyph-routed model: a trained run loaded for inference, routing adapters by glyph.

:class:`GlyphModel` loads a run directory (base + every trigger adapter + tokenizer) and
routes each input by the glyphs it contains:

- no glyph → the untouched base (peft's ``__base__``: no LoRA, base embedding rows);
- glyphs of one trigger → that trigger's adapter;
- glyphs of several triggers → those adapters *together*: their LoRA deltas add up and each
  glyph's row comes from its own adapter (row sets are disjoint by construction). This is the
  documented combination for free text such as ``"⟁ and 🫁"``.

A batch may mix routes: rows with at most one trigger share one forward pass through peft's
mixed-batch ``adapter_names``; each multi-trigger combination runs as its own group.
Retrieval and decompression join this model with the scene index in
:class:`glyph.serving.service.GlyphService`.

Example::

    >>> gm = GlyphModel.load("runs/default")                 # doctest: +SKIP
    >>> gm.generate(["⟁ the floor gives way and"])[0].text  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, NotFound
from ..model.adapters import active
from ..run import Run
from ..run.manifest import GlyphEntry
from ..vocab.unicode import canonical_text
from . import fast_rows
from .fast_rows import BASE_ADAPTER

DEFAULT_REGISTERS = ("poetry", "logic", "interface", "body")  # runs trained before registers were recorded


@dataclass
class Generation:
    """One continuation: the (canonical) prompt, the new text and the adapters it used."""

    prompt: str
    text: str
    triggers: list[str]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def clean(text: str) -> str:
    """Cut a continuation where the model starts a new scene header (``⟨…⟩``)."""
    cut = text.find("⟨")
    return (text[:cut] if cut >= 0 else text).rstrip()


class GlyphModel:
    """A trained run, ready to route and generate. Build it with :meth:`load`."""

    def __init__(self, run: Run, tokenizer, peft_model, *, registers: Sequence[str] = ()):
        self.run, self.tokenizer, self.model = run, tokenizer, peft_model
        self.manifest = run.manifest()
        self.family = self.manifest.family
        self.glyphs: dict[str, GlyphEntry] = {g.symbol: g for g in self.manifest.glyphs}
        self.triggers: list[str] = list(self.manifest.triggers)
        self.lead = self.manifest.prompt_lead  # what the run's prompts start with
        self.registers: list[str] = list(registers or self.manifest.registers or DEFAULT_REGISTERS)

    # ------------------------------------------------------------ loading
    @classmethod
    def load(cls, run: Path | str | Run, *, registry=None, dtype=None) -> "GlyphModel":
        """Load base + every trigger adapter of ``run``.

        Refuses an incomplete run, a base that is not the one the run was trained on, and a
        registry whose ids differ from the run's.
        """
        run = run if isinstance(run, Run) else Run(run)
        run.manifest()
        if registry is not None:
            run.check_registry(registry)
        tok = run.hf_tokenizer()
        pm = run.load_model(dtype=dtype)
        fast_rows.install(pm)
        return cls(run, tok, pm, registers=list(registry.registers) if registry else ())

    # ------------------------------------------------------------ routing
    def canonical(self, text: str) -> str:
        """NFC, and a presentation selector after a glyph dropped (as in training)."""
        return canonical_text(text, set(self.glyphs))

    def triggers_in(self, text: str) -> list[str]:
        """Triggers of the glyphs present in ``text``, in order of first appearance."""
        found = sorted((text.find(s), g.trigger) for s, g in self.glyphs.items() if s in text)
        out: list[str] = []
        for _, t in found:
            if t not in out:
                out.append(t)
        return out

    def glyph(self, key: str) -> GlyphEntry:
        """A glyph of this run by symbol (any presentation form) or name."""
        sym = self.canonical(key.strip())
        for g in self.glyphs.values():
            if g.symbol == sym or g.name == key.strip():
                return g
        known = " ".join(self.glyphs)
        raise NotFound(f"{key!r} is not a glyph of run {self.run.path} (it knows {known}); "
                       "register it, add scenes and train again")

    def is_glyph(self, text: str) -> bool:
        """Whether ``text`` is exactly one of the run's glyphs (by symbol or name)."""
        key = text.strip()
        return self.canonical(key) in self.glyphs or key in {g.name for g in self.glyphs.values()}

    def check_register(self, register: str) -> None:
        if register not in self.registers:
            raise ConfigError(f"unknown register {register!r}; use one of "
                              f"{', '.join(self.registers)}")

    def adapters(self, names: str | Sequence[str] | None):
        """Context manager: these adapters active for the block (``None``: the base), restored after."""
        return active(self.model, names)

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

    def _generate(self, texts, adapter_names, *, max_new_tokens, temperature, top_p, top_k,
                  repetition_penalty, seed, min_new_tokens) -> list[str]:
        import torch

        stops = list(self.family.stop_ids)
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True,
                             add_special_tokens=False)
        kw = dict(max_new_tokens=max_new_tokens, pad_token_id=self.family.endoftext_id,
                  eos_token_id=stops, repetition_penalty=repetition_penalty,
                  min_new_tokens=min_new_tokens)
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if adapter_names is not None:
            kw["adapter_names"] = list(adapter_names)
        # transformers samples from the global RNG: seed it inside a fork, so the caller's
        # random state is the same after as before
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            ids = self.model.generate(**enc, **kw)
        new = ids[:, enc["input_ids"].shape[1]:]
        return [clean(self.tokenizer.decode(row, skip_special_tokens=True)) for row in new]

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
    @property
    def n_layers(self) -> int:
        """How many transformer layers the base has (hidden-state layers are 1 … n_layers)."""
        return int(self.model.base_model.model.config.num_hidden_layers)

    def hidden(self, pairs: Sequence[tuple[str, str]], *, adapter: str | None = None,
               batch_size: int = 16, layers: Sequence[int] | None = None):
        """Hidden states of ``prefix + text`` pairs: ``(mean over text tokens, last token)``.

        ``adapter=None`` runs the untouched base. ``layers`` are 1-based layer numbers (the
        default: the last one, whose states are after the final norm); both arrays are float32
        ``[n, len(layers), d]``. Pairs are batched by length (little padding); results come
        back in input order.

        Example::

            >>> means, lasts = gm.hidden([("header ", "heat")], layers=(12, 24))  # doctest: +SKIP
            >>> means.shape                                               # doctest: +SKIP
            (1, 2, 896)
        """
        import numpy as np
        import torch

        n = self.n_layers
        layers = tuple(layers or (n,))
        if any(not 1 <= lay <= n for lay in layers):
            raise ValueError(f"layers {layers} outside 1..{n}")
        rows, spans = self._hidden_rows(pairs)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        means: list = [None] * len(rows)
        lasts: list = [None] * len(rows)
        body = self.model.base_model.model.model  # the transformer body: no vocabulary logits
        inner = layers != (n,)  # only the last layer: no need to keep every layer's states
        for i in range(0, len(order), batch_size):
            chunk = order[i: i + batch_size]
            ids, mask = self._right_padded([rows[j] for j in chunk])
            with torch.no_grad(), self.adapters(adapter):
                out = body(input_ids=ids, attention_mask=mask, output_hidden_states=inner)
            # hidden_states[k] is after layer k; the last layer's is taken after the final norm
            h = torch.stack([out.last_hidden_state if lay == n else out.hidden_states[lay]
                             for lay in layers], 1).float()
            for r, j in enumerate(chunk):
                a, b = spans[j]
                lo, hi = (a, b) if b > a else (0, a)
                means[j] = h[r, :, lo:hi].mean(1).numpy()
                lasts[j] = h[r, :, (b if b > a else a) - 1].numpy()
        return np.stack(means).astype("float32"), np.stack(lasts).astype("float32")

    def _hidden_rows(self, pairs):
        """Token ids of each ``prefix + text`` and the span of the text in them."""
        tok = self.tokenizer
        rows, spans = [], []
        for prefix, text in pairs:
            p = tok(self.canonical(prefix), add_special_tokens=False)["input_ids"]
            t = tok(self.canonical(text), add_special_tokens=False)["input_ids"] if text else []
            rows.append(p + t)
            spans.append((len(p), len(p) + len(t)))
        return rows, spans

    def _right_padded(self, rows):
        """``(ids, mask)`` with right padding: positions count from 0 in every row."""
        import torch

        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), self.family.endoftext_id, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        return ids, mask
