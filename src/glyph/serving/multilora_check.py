"""Verify a multi-LoRA export by reloading it with plain transformers + peft (no glyph code).

Two checks, both on logits (see :mod:`glyph.serving.multilora` for why tied heads differ):

- **glyph-free text**: the exported base against the run's original base. Untied: equal,
  bit for bit. Tied: equal on every column but the glyph tokens'; those are measured.
- **every adapter** (each trigger, each combination): exported base + exported adapter
  against the run's own routed model on a probe holding that adapter's glyphs
  (max |Δ| ≤ 1e-4 in float32); with a tied head the columns of *other* triggers' glyphs are
  left out of the check and measured.

Example::

    >>> verify_export(Run("runs/default"), Path("exports/all"), routing)   # doctest: +SKIP
    {'glyph_free': {...}, 'verified': {'initiation': 2.4e-07, ...}}
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ModelError
from ..model.base import quiet_loading
from ..run import Run
from .export import TOLERANCE

PROBE_TAIL = "\n⟨poetry · meso · en⟩\nThe first line, then the stairs again — и дальше."
PLAIN_TEXT = "The floor of the house is warm, and the stairs go up into the dark — и дальше."


def _columns(vocab: int, drop: list[int]):
    import torch

    keep = torch.ones(vocab, dtype=torch.bool)
    if drop:
        keep[torch.tensor(drop)] = False
    return keep


def _glyph_free(run: Run, base, tok, glyph_ids: list[int], tied: bool) -> dict:
    import torch

    orig = run.load_base(dtype="auto")
    ids = tok(PLAIN_TEXT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        want, got = orig(input_ids=ids).logits.float(), base(input_ids=ids).logits.float()
    del orig
    keep = _columns(want.shape[-1], glyph_ids)
    if not torch.equal(got[..., keep], want[..., keep]) or (not tied and not torch.equal(got, want)):
        raise ModelError("the exported base changes the logits of glyph-free text beyond the "
                         "glyph tokens; nothing was written — report this as a glyph bug")
    # float64: a KL summed over 151,936 entries in float32 carries ~1e-6 of rounding noise,
    # as large as (and of either sign to) the small real difference being reported
    lp_w, lp_g = want.double().log_softmax(-1), got.double().log_softmax(-1)
    return {"tokens": int(ids.shape[1]), "exact": bool(torch.equal(got, want)),
            "max_abs_logit_diff_glyph_columns": float((got - want)[..., ~keep].abs().max())
            if (~keep).any() else 0.0,
            "max_abs_logprob_diff": float((lp_g - lp_w).abs().max()),
            "kl_original_vs_export_per_token": float(
                (lp_w.exp() * (lp_w - lp_g)).sum(-1).mean())}


def verify_export(run: Run, export_dir: Path, routing: dict,
                  log: Callable[[str], None] | None = None) -> dict:
    """Reload ``export_dir`` and compare it with the run (module docstring); raise on a miss."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .routing import GlyphModel

    manifest = run.manifest()
    gm = GlyphModel.load(run)
    tok = AutoTokenizer.from_pretrained(export_dir / routing["base"])
    with quiet_loading():
        base = AutoModelForCausalLM.from_pretrained(export_dir / routing["base"],
                                                    dtype="auto").eval()
    dtype = str(base.dtype).replace("torch.", "")
    tol = TOLERANCE.get(dtype, 5e-2)
    tied = manifest.base.tied
    free = _glyph_free(run, base, tok, [g.id for g in manifest.glyphs], tied)
    if log:
        log("glyph-free text: the exported base equals the original " + (
            "exactly" if free["exact"] else
            f"on every non-glyph logit; glyph-token logits differ by up to "
            f"{free['max_abs_logit_diff_glyph_columns']:.3g} (tied head: glyph rows are output "
            f"rows), max |Δ log p| {free['max_abs_logprob_diff']:.3g}"))
    pm, verified, others = None, {}, {}
    for name, path in routing["adapters"].items():
        with quiet_loading():
            if pm is None:
                pm = PeftModel.from_pretrained(base, export_dir / path, adapter_name=name).eval()
            else:
                pm.load_adapter(export_dir / path, adapter_name=name)
    for name in routing["adapters"]:
        triggers = routing["combinations"].get(name, [name])
        probe = "".join(g.symbol for t in triggers for g in manifest.glyphs_of(t)) + PROBE_TAIL
        ids = tok(probe, return_tensors="pt", add_special_tokens=False)["input_ids"]
        want = gm.route_logits(probe, ids=ids).float()
        pm.set_adapter(name)
        with torch.no_grad():
            got = pm(input_ids=ids).logits.float()
        foreign = [g.id for g in manifest.glyphs if g.trigger not in triggers] if tied else []
        keep = _columns(want.shape[-1], foreign)
        diff = float((got - want)[..., keep].abs().max())
        if not diff <= tol:
            raise ModelError(f"exported adapter {name!r} does not reproduce the run (max "
                             f"|Δlogit| {diff:.3g} > {tol}); nothing was written — report "
                             "this as a glyph bug")
        verified[name] = diff
        if foreign:
            others[name] = float((got - want)[..., ~keep].abs().max())
        if log:
            log(f"verified {name}: plain transformers + peft reproduce the run's logits "
                f"(max |Δ| {diff:.1e})" + (f"; other triggers' glyph columns differ by up to "
                                            f"{others[name]:.3g} (tied head)" if foreign else ""))
    return {"glyph_free": free, "verified": verified, "tolerance": tol,
            "tied_other_glyph_columns": others}
