"""Export a run as plain Hugging Face model directories, with the adapter merged in.

vLLM and llama.cpp cannot serve an adapter that brings new token rows, so the portable
artifact is a **merged** model: the run's tokenizer (with the glyph tokens) plus the base
weights with one trigger's LoRA and glyph rows merged, loadable by plain
``AutoModelForCausalLM`` with no glyph package installed.

``export_merged(run, out, trigger=T)`` writes one directory; without ``trigger`` it writes
``out/<trigger>/`` for every trigger of the run. A merged model equals the run's model with
that one adapter active, for every input: the other triggers' glyphs stay tokens of the
tokenizer but keep their base rows (they are trained only in their own export).

Every export is verified before it is published: the written directory is loaded back and
its logits are compared with the adapter model's on a probe holding the trigger's glyphs
(max abs diff ≤ 1e-4 in float32). This catches the known trap of tied embeddings, where
trained rows can be lost on reload when ``tie_word_embeddings`` and the saved head disagree.

Example::

    >>> export_merged("runs/default", "exports/initiation", trigger="initiation")  # doctest: +SKIP
    [PosixPath('exports/initiation')]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, ModelError
from ..files import publishing
from ..model.base import quiet_loading
from ..run import Manifest, Run

MARKER = "glyph_export.json"
TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 5e-2}


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_file():
        raise ConfigError(f"{out} is a file; choose a directory for --merged")
    children = list(out.iterdir()) if out.is_dir() else []
    if children:
        single = (out / MARKER).is_file()
        per_trigger = all(p.is_dir() and (p / MARKER).is_file() for p in children)
        if not (single or per_trigger):
            raise ConfigError(f"{out} is not empty and was not written by `glyph export`; "
                              "choose another --merged directory")
        if not overwrite:
            raise ConfigError(f"{out} holds an earlier export; pass --overwrite to replace it")


def _probe(manifest: Manifest, trigger: str) -> str:
    glyphs = "".join(g.symbol for g in manifest.glyphs_of(trigger))
    return f"{glyphs}\n⟨poetry · meso · en⟩\nThe first line, then {glyphs} again — и дальше."


def export_one(run: Run, trigger: str, out: Path, *, verify: bool = True,
               log: Callable[[str], None] | None = None) -> Path:
    """Merge ``trigger``'s adapter into the base and publish it at ``out`` (verified)."""
    import torch
    from transformers import AutoModelForCausalLM

    manifest = run.manifest()
    tok = run.hf_tokenizer()
    tok.padding_side = "right"
    pm = run.load_model(dtype="auto", triggers=[trigger])
    dtype = str(pm.base_model.model.dtype).replace("torch.", "")
    ids = tok(_probe(manifest, trigger), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        want = pm(input_ids=ids).logits.float()
    merged = pm.merge_and_unload()
    with publishing(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({
            "version": 1, "run": str(run.path.resolve()), "trigger": trigger,
            "glyphs": [{"symbol": g.symbol, "id": g.id, "name": g.name}
                       for g in manifest.glyphs_of(trigger)],
            "base": manifest.base.name, "registry": manifest.registry.get("fingerprint"),
            "tied": manifest.base.tied, "dtype": dtype}, ensure_ascii=False, indent=2),
            encoding="utf-8")
        if verify:
            with quiet_loading():
                again = AutoModelForCausalLM.from_pretrained(tmp, dtype="auto").eval()
            with torch.no_grad():
                got = again(input_ids=ids).logits.float()
            diff = (got - want).abs().max().item()
            tol = TOLERANCE.get(dtype, 5e-2)
            if not diff <= tol:
                raise ModelError(f"export of trigger {trigger!r} does not reproduce the adapter "
                                 f"model (max |Δlogit| {diff:.3g} > {tol}); nothing was written "
                                 "— report this as a glyph bug")
            if log:
                log(f"verified {trigger}: reloaded logits match the adapter model "
                    f"(max |Δ| {diff:.1e})")
    return out


def export_merged(run: Path | str | Run, out: Path | str, *, trigger: str | None = None,
                  registry=None, overwrite: bool = False, verify: bool = True,
                  log: Callable[[str], None] | None = None) -> list[Path]:
    """Write merged model directories for one trigger (``out``) or all (``out/<trigger>``)."""
    run, out = (run if isinstance(run, Run) else Run(run)), Path(out)
    manifest = run.manifest()
    if registry is not None:
        run.check_registry(registry)
    if trigger is not None:
        run.adapter_dir(trigger)  # an unknown trigger fails here, before anything loads
    _check_out(out, overwrite)
    if trigger is not None:
        return [export_one(run, trigger, out, verify=verify, log=log)]
    return [export_one(run, t, out / t, verify=verify, log=log) for t in manifest.triggers]
