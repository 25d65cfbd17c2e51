"""Decompression: a glyph goes in, its scene comes out in the register asked for.

The protocol: recognise the glyph → find its nearest scenes (FAISS) → activate the LoRA
adapter the glyph triggers → unfold ``glyph + register`` into text → return the text with the
scenes and adapter used.

:class:`GlyphModel` is the library piece: it loads a run, routes adapters by the glyphs
present in each input (rows without glyphs run the untouched base, rows with one trigger use
peft's mixed-batch ``adapter_names``), and exposes ``generate``, ``neighbors``, ``expand``.

Several triggers in one input (``"⟁ and 🫁"``): the adapters of all glyphs present are
activated together — their LoRA deltas add up, and each glyph's row comes from its own
adapter (the row sets are disjoint by construction).

Example::

    >>> gm = GlyphModel.load("runs/demo")                        # doctest: +SKIP
    >>> print(gm.expand("⟁", register="poetry").text)            # doctest: +SKIP
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import model as mdl
from . import registry as registry_mod
from .errors import ConfigError, NotFound
from .runs import load_manifest

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in mixed batches


@dataclass
class Generation:
    prompt: str
    text: str
    triggers: list[str]

    def to_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Expansion:
    glyph: str
    register: str
    level: str
    text: str
    adapter: str
    scenes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = self.__dict__.copy()
        d["scenes"] = [h.to_dict() for h in self.scenes]
        return d


class GlyphModel:
    """A trained run, ready to route, retrieve and generate."""

    def __init__(self, run: Path, manifest: dict, tokenizer, peft_model, index=None):
        self.run, self.manifest, self.tokenizer, self.model = run, manifest, tokenizer, peft_model
        self.index = index
        self.glyphs = {g["symbol"]: g for g in manifest["glyphs"]}
        self.registers = sorted({r for g in manifest["glyphs"] for r in ("poetry", "logic",
                                                                        "interface", "body")})

    @classmethod
    def load(cls, run: Path | str, *, registry=None, with_index: bool = True) -> "GlyphModel":
        """Load base + every trigger adapter of ``run`` (refuses a registry whose ids differ)."""
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        run = Path(run)
        reg = registry if registry is not None else _try_registry()
        manifest = load_manifest(run, reg)
        tok = AutoTokenizer.from_pretrained(run / manifest["tokenizer"])
        tok.padding_side = "left"
        base = AutoModelForCausalLM.from_pretrained(manifest["base"]["path"], dtype=torch.float32)
        mdl.grow_rows(base, manifest["base"]["rows"])
        pm = None
        for t, rel in manifest["triggers"].items():
            if pm is None:
                pm = PeftModel.from_pretrained(base, run / rel, adapter_name=t)
            else:
                pm.load_adapter(run / rel, adapter_name=t)
        pm.eval()
        index = None
        if with_index:
            from .index import SceneIndex

            if SceneIndex.directory(run).joinpath("meta.json").exists():
                index = SceneIndex.load(run)
        gm = cls(run, manifest, tok, pm, index)
        if reg is not None:
            gm.registers = list(reg.registers)
        return gm

    # ------------------------------------------------------------ routing
    def triggers_in(self, text: str) -> list[str]:
        """Triggers of the glyphs present in ``text``, in order of first appearance."""
        out: list[str] = []
        for sym, g in sorted(self.glyphs.items(), key=lambda kv: text.find(kv[0])):
            if sym in text and g["trigger"] not in out:
                out.append(g["trigger"])
        return out

    def generate(self, texts: list[str], *, max_new_tokens: int = 96, temperature: float = 0.8,
                 seed: int = 0, top_p: float = 0.95) -> list[Generation]:
        """Continue each text, routing adapters per row by the glyphs it contains."""
        import torch

        from .unicode import canonical_text

        texts = [canonical_text(t, set(self.glyphs)) for t in texts]
        routes = [self.triggers_in(t) for t in texts]
        out: list[Generation | None] = [None] * len(texts)
        single = [i for i, r in enumerate(routes) if len(r) <= 1]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(routes):
            if len(r) > 1:
                groups.setdefault(tuple(r), []).append(i)
        if single:
            names = [routes[i][0] if routes[i] else BASE_ADAPTER for i in single]
            for i, text in zip(single, self._generate([texts[i] for i in single], names,
                                                      max_new_tokens, temperature, seed, top_p)):
                out[i] = Generation(texts[i], text, routes[i])
        for combo, rows in groups.items():
            self.model.base_model.set_adapter(list(combo))
            try:
                res = self._generate([texts[i] for i in rows], None, max_new_tokens, temperature,
                                     seed, top_p)
            finally:
                self.model.base_model.set_adapter(next(iter(self.manifest["triggers"])))
            for i, text in zip(rows, res):
                out[i] = Generation(texts[i], text, list(combo))
        return out  # type: ignore[return-value]

    def _generate(self, texts, adapter_names, max_new_tokens, temperature, seed, top_p):
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed)
        kw = dict(max_new_tokens=max_new_tokens, pad_token_id=151643,
                  eos_token_id=[151643, 151645])
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kw.update(do_sample=False)
        if adapter_names is not None:
            kw["adapter_names"] = adapter_names
        with torch.no_grad():
            ids = self.model.generate(**enc, **kw)
        new = ids[:, enc["input_ids"].shape[1]:]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]

    # ------------------------------------------------------------ retrieval and decompression
    def _check_glyph(self, glyph: str) -> dict:
        from .unicode import canonical_text

        sym = canonical_text(glyph.strip(), set(self.glyphs))
        if sym not in self.glyphs:
            known = " ".join(self.glyphs)
            raise NotFound(f"{glyph!r} is not a glyph of run {self.run} (known: {known}); "
                           "register and train it first")
        return self.glyphs[sym]

    def neighbors(self, glyph: str, *, k: int = 5, register: str | None = None):
        """Nearest scenes of ``glyph`` in the index (cosine scores)."""
        g = self._check_glyph(glyph)
        if self.index is None:
            raise NotFound(f"run {self.run} has no scene index; run `glyph index build {self.run}`")
        if register is not None:
            self._check_register(register)
        return self.index.search(self.index.glyph_vector(g["symbol"]), k=k, register=register)

    def _check_register(self, register: str) -> None:
        if register not in self.registers:
            raise ConfigError(f"unknown register {register!r}; use one of "
                              f"{', '.join(self.registers)}")

    def expand(self, glyph: str, *, register: str = "poetry", level: str = "meso", k: int = 3,
               max_new_tokens: int = 96, temperature: float = 0.8, seed: int = 0) -> Expansion:
        """Decompress ``glyph`` into ``register``: nearest scenes → its adapter → text."""
        g = self._check_glyph(glyph)
        self._check_register(register)
        if level not in ("micro", "meso", "macro"):
            raise ConfigError(f"unknown level {level!r}; use micro, meso or macro")
        hits = self.neighbors(g["symbol"], k=k, register=register)
        text = self.generate([mdl.prompt(g["symbol"], register, level)],
                             max_new_tokens=max_new_tokens, temperature=temperature,
                             seed=seed)[0].text
        return Expansion(glyph=g["symbol"], register=register, level=level, text=text,
                         adapter=g["trigger"], scenes=hits)


def _try_registry():
    try:
        return registry_mod.load()
    except Exception:  # noqa: BLE001 — a run can be used without a project registry
        return None


def read_batch(path: Path) -> list[str]:
    """Prompts for ``glyph expand --batch``: one per line (blank lines skipped), or JSONL
    objects with a ``prompt`` field."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    out = []
    for n, ln in enumerate(lines, 1):
        if ln.lstrip().startswith("{"):
            try:
                out.append(json.loads(ln)["prompt"])
            except (json.JSONDecodeError, KeyError):
                raise ConfigError(f"{path}:{n}: expected a JSON object with a 'prompt'") from None
        else:
            out.append(ln)
    return out
