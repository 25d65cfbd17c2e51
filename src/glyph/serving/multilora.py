"""Export a run for engines that serve many LoRA adapters on one base (vLLM and the like).

An adapter such an engine loads cannot bring new token rows, but glyph rows of different
triggers never overlap — so one base carries them all::

    OUT/base/                    the base with EVERY glyph row merged in + the glyph tokenizer
    OUT/adapters/<trigger>/      plain LoRA (standard target modules, no trainable tokens)
    OUT/adapters/<a>+<b>/        a combination asked for with --combine: the parts' A and B
                                 matrices concatenated along the rank, each B scaled by its
                                 part's alpha/r, alpha = rank — exactly the sum of the deltas
    OUT/routing.json             glyph → trigger, the combinations, the base's model name

The export is verified before it is published: the base is reloaded with plain
transformers and each adapter with plain peft; their logits must equal the run's own
routed model's (max |Δ| ≤ 1e-4) on a probe with that adapter's glyphs. With an untied head
glyph-free text gives exactly the original base's logits. With a tied head the glyph rows
are output rows too: glyph-free text then differs from the original base only in the
logits *of the glyph tokens* (measured and written to ``glyph_export.json``), and a prompt
routed to one trigger sees the other triggers' glyph columns trained as well; both are
excluded from the equality check and reported.

Example::

    >>> export_multi_lora("runs/default", "exports/all", combine=["body+initiation"])  # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, ModelError
from ..files import publishing
from ..run import Run
from .routes import ROUTING, ROUTING_FORMAT, combo_name

MARKER = "glyph_export.json"
VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts


def parse_combos(combine, triggers) -> dict[str, list[str]]:
    """``["body+initiation"]`` → ``{"body+initiation": ["body", "initiation"]}`` (checked)."""
    out: dict[str, list[str]] = {}
    for c in combine:
        parts = sorted({p.strip() for p in c.split("+") if p.strip()})
        unknown = [p for p in parts if p not in triggers]
        if unknown or len(parts) < 2:
            raise ConfigError(f"--combine {c!r} must name two or more of the run's triggers "
                              f"joined by '+' ({', '.join(triggers)})")
        out[combo_name(parts)] = parts
    return out


def _read_adapter(where: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    config = json.loads((where / "adapter_config.json").read_text(encoding="utf-8"))
    for key in ("use_dora", "lora_bias"):
        if config.get(key):
            raise ModelError(f"{where}: {key} adapters cannot be exported as plain LoRA")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelError(f"{where}: per-module ranks are not supported by --multi-lora")
    return config, load_file(str(where / "adapter_model.safetensors"))


def _scale(config: dict) -> float:
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def _plain(config: dict, weights: dict, base_path: str) -> tuple[dict, dict]:
    """An adapter without its trainable tokens: standard LoRA any loader reads."""
    cfg = dict(config, trainable_token_indices=None, modules_to_save=None,
               base_model_name_or_path=base_path)
    return cfg, {k: v for k, v in weights.items() if ".lora_A." in k or ".lora_B." in k}


def _combined(parts: list[tuple[dict, dict]], base_path: str) -> tuple[dict, dict]:
    """One adapter equal to the sum of ``parts``: A stacked along the rank, B side by side
    (each scaled by its part's alpha/r), alpha = rank so the combined scale is 1."""
    import torch

    modules = sorted({k.rsplit(".lora_", 1)[0] for _, w in parts for k in w if ".lora_A." in k})
    weights = {}
    for m in modules:
        a_key, b_key = f"{m}.lora_A.weight", f"{m}.lora_B.weight"
        shape_a = next(w[a_key].shape[1] for _, w in parts if a_key in w)
        shape_b = next(w[b_key].shape[0] for _, w in parts if b_key in w)
        As, Bs = [], []
        for cfg, w in parts:  # a module one part does not adapt contributes zeros
            A = w.get(a_key, torch.zeros(cfg["r"], shape_a))
            B = w.get(b_key, torch.zeros(shape_b, cfg["r"]))
            As.append(A.float())
            Bs.append(B.float() * _scale(cfg))
        dtype = parts[0][1][next(iter(parts[0][1]))].dtype
        weights[a_key] = torch.cat(As, 0).to(dtype).contiguous()
        weights[b_key] = torch.cat(Bs, 1).to(dtype).contiguous()
    rank = sum(cfg["r"] for cfg, _ in parts)
    targets = sorted({t for cfg, _ in parts for t in cfg["target_modules"]})
    cfg = dict(parts[0][0], r=rank, lora_alpha=rank, use_rslora=False, target_modules=targets,
               trainable_token_indices=None, modules_to_save=None,
               base_model_name_or_path=base_path)
    return cfg, weights


def _write_adapter(where: Path, config: dict, weights: dict) -> None:
    from safetensors.torch import save_file

    where.mkdir(parents=True)
    (where / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_file(weights, str(where / "adapter_model.safetensors"))


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_file():
        raise ConfigError(f"{out} is a file; choose a directory for --multi-lora")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ConfigError(f"{out} is not empty and was not written by `glyph export`; "
                              "choose another --multi-lora directory")
        if not overwrite:
            raise ConfigError(f"{out} holds an earlier export; pass --overwrite to replace it")


def export_multi_lora(run: Path | str | Run, out: Path | str, *, combine=(), registry=None,
                      model_name: str | None = None, overwrite: bool = False,
                      verify: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Write ``OUT/base``, ``OUT/adapters/*`` and ``OUT/routing.json``; return the report."""
    import torch

    run, out = (run if isinstance(run, Run) else Run(run)), Path(out)
    manifest = run.manifest()
    if registry is not None:
        run.check_registry(registry)
    combos = parse_combos(combine, list(manifest.triggers))
    _check_out(out, overwrite)
    final_base = str((out / "base").resolve())
    adapters = {t: _read_adapter(run.adapter_dir(t)) for t in manifest.triggers}
    model = run.load_base(dtype="auto")
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for t, (cfg, w) in adapters.items():  # every trigger's glyph rows into the one base
            ids = cfg.get("trainable_token_indices") or []
            delta = next((v for k, v in w.items() if "trainable_tokens_delta" in k), None)
            if ids and delta is not None:
                emb[torch.tensor(ids)] = delta.to(emb.dtype)
    name = model_name or run.path.resolve().name
    report = {"version": 1, "run": str(run.path.resolve()), "model": name,
              "tied": manifest.base.tied, "combinations": combos}
    with publishing(out) as tmp:
        model.save_pretrained(tmp / "base", safe_serialization=True)
        run.hf_tokenizer().save_pretrained(tmp / "base")
        for t, (cfg, w) in adapters.items():
            _write_adapter(tmp / "adapters" / t, *_plain(cfg, w, final_base))
        for cname, parts in combos.items():
            _write_adapter(tmp / "adapters" / cname,
                           *_combined([adapters[p] for p in parts], final_base))
        ranks = [json.loads((d / "adapter_config.json").read_text())["r"]
                 for d in (tmp / "adapters").iterdir()]
        routing = {"version": ROUTING_FORMAT, "model": name, "base": "base",
                   "glyphs": {g.symbol: g.trigger for g in manifest.glyphs},
                   "adapters": {a: f"adapters/{a}" for a in [*adapters, *combos]},
                   "combinations": combos, "max_lora_rank": max(ranks)}
        (tmp / ROUTING).write_text(json.dumps(routing, ensure_ascii=False, indent=2),
                                   encoding="utf-8")
        report["adapters"] = routing["adapters"]
        if verify:
            from .multilora_check import verify_export

            report.update(verify_export(run, tmp, routing, log=log))
        report["vllm"] = vllm_command(out, routing)
        (tmp / MARKER).write_text(json.dumps(report, ensure_ascii=False, indent=2),
                                  encoding="utf-8")
    return report


def vllm_command(out: Path, routing: dict) -> str:
    """The ``vllm serve`` line that serves this export (one engine, every glyph)."""
    mods = " ".join(f"{a}={out / p}" for a, p in routing["adapters"].items())
    rank = next((r for r in VLLM_RANKS if r >= routing["max_lora_rank"]),
                routing["max_lora_rank"])
    return (f"vllm serve {out / routing['base']} --served-model-name {routing['model']} "
            f"--enable-lora --max-lora-rank {rank} --lora-modules {mods}")
