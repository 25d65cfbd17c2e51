"""The trainer on a tiny Qwen3 built in a fixture: run layout, guarantees, resume, failures."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from glyph.vocab import registry  # noqa
from glyph.corpus import scenes  # noqa: E402
from glyph.errors import ConfigError, GlyphError, ModelError, SceneError, TrainingError  # noqa: E402
from glyph.training.loss import IGNORE, GlyphLM  # noqa: E402
from glyph.training.recipe import train  # noqa: E402

from .conftest import train_config as _cfg  # noqa: E402

def _quiet(*_a, **_k) -> None:
    pass


@pytest.fixture
def trained_run(mini_project, tiny_base) -> Path:
    res = train(_cfg(mini_project / "run", tiny_base), log=_quiet, progress=False)
    return res.out


# ---------------------------------------------------------------- the fast forward pass
# Qwen2.5-0.5B's widths (the real base: untied dense head 151,936 × 896), one layer
REAL_SHAPE = dict(hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                  num_key_value_heads=2, head_dim=64)


@pytest.mark.parametrize("tied, zero_rows, shape", [
    (True, False, "tiny"), (False, False, "tiny"), (True, True, "tiny"), (False, True, "tiny"),
    (False, False, "real")])
def test_fast_loss_equals_peft_forward(tied, zero_rows, shape, monkeypatch):
    """Our forward (label-only logits, compact softmax over zero rows, fused chunked head)
    == peft's own loss and gradients."""
    from glyph.training import head

    monkeypatch.setattr(head, "HEAD_CHUNK_ELEMENTS", 3 * 151936)  # 3 positions per chunk
    from peft import LoraConfig, get_peft_model
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    dims = REAL_SHAPE if shape == "real" else dict(
        hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
        head_dim=16)
    cfg = Qwen3Config(vocab_size=151936, num_hidden_layers=1, tie_word_embeddings=tied, **dims)
    base = Qwen3ForCausalLM(cfg)
    if zero_rows:  # like the embedded default: rows of unseen tokens are exactly zero
        with torch.no_grad():
            for w in {id(base.get_input_embeddings().weight): base.get_input_embeddings().weight,
                      id(base.get_output_embeddings().weight): base.get_output_embeddings().weight
                      }.values():
                w[1000:] = 0.0
    pm = get_peft_model(base, LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], trainable_token_indices=[151669, 151670],
        init_lora_weights=False), adapter_name="g1")
    with torch.no_grad():
        for m in pm.modules():
            if isinstance(m, TrainableTokensLayer) and not m.tied_adapter:
                m.trainable_tokens_delta["g1"].normal_()
    # 5000 is a zero row when zero_rows: a label there must still be scored exactly
    x = torch.tensor([[151669, 100, 200, 151670, 5, 6, 5000], [1, 151669, 3, 4, 5, 6, 151643]])
    labels = x.clone()
    labels[:, :2] = IGNORE
    lm = GlyphLM(pm, tied)
    assert lm.compact is zero_rows
    params = [p for p in pm.parameters() if p.requires_grad]
    theirs = pm(input_ids=x, attention_mask=torch.ones_like(x), labels=labels).loss
    want = torch.autograd.grad(theirs, params)
    ours, n = lm(x, torch.ones_like(x), labels, "g1")  # dense: the fused chunked head
    got = torch.autograd.grad(ours, params)
    assert n == 10
    assert abs(ours.item() - theirs.item()) < 1e-4
    emb = next(m for m in pm.modules() if isinstance(m, TrainableTokensLayer) and not m.tied_adapter)
    rows = params.index(emb.trainable_tokens_delta["g1"])
    assert got[rows].abs().sum() > 0  # gradients reach the glyph rows …
    for g, w in zip(got, want):       # … and every gradient equals peft's own
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-4), (g - w).abs().max()


# ---------------------------------------------------------------- the run directory
def test_run_directory_is_complete_small_and_standard(trained_run):
    m = json.loads((trained_run / "manifest.json").read_text())
    assert set(m["triggers"]) == {"initiation", "body"}
    assert {g["symbol"]: g["id"] for g in m["glyphs"]} == {"⟁": 151669, "🜂": 151670,
                                                            "🫁": 151671}
    for t in ("initiation", "body"):
        d = trained_run / "adapters" / t
        cfg = json.loads((d / "adapter_config.json").read_text())
        assert cfg["peft_type"] == "LORA"
        assert sorted(cfg["trainable_token_indices"]) == (
            [151669, 151670] if t == "initiation" else [151671])
        size = (d / "adapter_model.safetensors").stat().st_size
        assert size < 5 * 2**20, f"adapter {t} is {size} bytes: full embedding saved?"
    from safetensors import safe_open

    with safe_open(str(trained_run / "adapters/initiation/adapter_model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert all(s[0] < 1000 for s in shapes.values()), shapes  # never a 151,936-row matrix
    assert (trained_run / "tokenizer" / "tokenizer.json").exists()
    log = [json.loads(line) for line in (trained_run / "loss.jsonl").read_text().splitlines()]
    assert len(log) == 24 and any("heldout_loss" in r for r in log)
    assert not (trained_run / "checkpoints").exists()
    card = (trained_run / "adapters" / "README.md").read_text(encoding="utf-8")
    assert "More Information Needed" not in card  # peft's template replaced by ours
    assert all(f"`{t}`" in card for t in m["triggers"]) and "⟁" in card
    assert m["versions"]["peft"] and m["base"]["tied"] is True


def _load_plain(run: Path, adapter: str):
    """Load a run the way the README shows: plain transformers + peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = json.loads((run / "manifest.json").read_text())
    tok = AutoTokenizer.from_pretrained(run / "tokenizer")
    base = AutoModelForCausalLM.from_pretrained(m["base"]["path"])
    model = PeftModel.from_pretrained(base, run / "adapters" / adapter, adapter_name=adapter)
    return tok, base, model.eval()


def _nll(model, tok, prompt: str, text: str) -> float:
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    t = tok(text, add_special_tokens=False)["input_ids"] + [151643]
    ids = torch.tensor([p + t])
    labels = torch.tensor([[IGNORE] * len(p) + t])
    with torch.no_grad():
        return model(input_ids=ids, labels=labels).loss.item()


def test_rows_other_than_glyphs_are_bit_identical_and_base_logits_exact(trained_run, tiny_base):
    from transformers import AutoModelForCausalLM

    tok, _, model = _load_plain(trained_run, "initiation")
    pristine = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    ids = torch.tensor([tok("plain text without any glyph, дыши", add_special_tokens=False)
                        ["input_ids"]])
    with torch.no_grad(), model.disable_adapter():
        got = model(input_ids=ids).logits
    want = pristine(input_ids=ids).logits
    assert torch.equal(got, want)  # no glyph, no adapter: exactly the base
    merged = model.merge_and_unload()
    before = pristine.get_input_embeddings().weight
    after = merged.get_input_embeddings().weight
    glyph_ids = torch.tensor([151669, 151670])
    keep = torch.ones(before.shape[0], dtype=torch.bool)
    keep[glyph_ids] = False
    assert torch.equal(after[keep], before[keep])
    assert not torch.equal(after[glyph_ids], before[glyph_ids])  # the glyph rows did train


def test_trained_glyph_lowers_heldout_loss(trained_run, tiny_base):
    from transformers import AutoModelForCausalLM

    reg = registry.load()
    held = [s for s in scenes.load_corpus(reg).select(split="heldout") if s.glyph in ("⟁", "🜂")]
    assert held
    tok, _, model = _load_plain(trained_run, "initiation")
    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    trained = sum(_nll(model, tok, s.prompt(), s.text) for s in held)
    untrained = sum(_nll(base, tok, s.prompt(), s.text) for s in held)
    no_glyph = sum(_nll(base, tok, s.prompt(""), s.text) for s in held)
    assert trained < untrained and trained < no_glyph


def test_untied_base_trains_and_keeps_rows(mini_project, tiny_untied_base):
    res = train(_cfg(mini_project / "run-untied", tiny_untied_base, steps=6), log=_quiet,
                progress=False)
    m = json.loads((res.out / "manifest.json").read_text())
    assert m["base"]["tied"] is False
    tok, _, model = _load_plain(res.out, "body")
    merged = model.merge_and_unload()
    from transformers import AutoModelForCausalLM

    pristine = AutoModelForCausalLM.from_pretrained(tiny_untied_base)
    assert torch.equal(merged.get_output_embeddings().weight,
                       pristine.get_output_embeddings().weight)


def test_one_adapter_per_glyph_splits_shared_triggers(mini_project, tiny_base):
    """adapters="glyph": ⟁ and 🜂 (one trigger in the registry) get an adapter each, each with
    only its own row; the registry file is untouched and serving routes by the run's triggers."""
    reg_file = Path(os.environ["GLYPH_REGISTRY"])
    before = reg_file.read_bytes()
    res = train(_cfg(mini_project / "per-glyph", tiny_base, steps=6, adapters="glyph"),
                log=_quiet, progress=False)
    m = json.loads((res.out / "manifest.json").read_text())
    assert set(m["triggers"]) == {"ascent", "fire", "breath"}
    assert {g["symbol"]: g["trigger"] for g in m["glyphs"]} == {
        "⟁": "ascent", "🜂": "fire", "🫁": "breath"}
    for t, gid in (("ascent", 151669), ("fire", 151670), ("breath", 151671)):
        cfg = json.loads((res.out / "adapters" / t / "adapter_config.json").read_text())
        assert cfg["trainable_token_indices"] == [gid]
    steps = [json.loads(line)["trigger"] for line in (res.out / "loss.jsonl").read_text()
             .splitlines()]
    assert sorted(set(steps)) == ["ascent", "breath", "fire"] and len(steps) == 6
    assert reg_file.read_bytes() == before
    assert json.loads((res.out / "train_config.json").read_text())["adapters"] == "glyph"
    from glyph.serving.routing import GlyphModel

    gm = GlyphModel.load(res.out, registry=registry.load())
    assert gm.triggers_in("🜂 then ⟁") == ["fire", "ascent"]


def test_a_run_with_a_lead_keeps_it_in_training_evaluation_and_expansion(
        mini_project, tiny_base, monkeypatch):
    """lead=True: every training prompt starts with a newline before the glyph (so the glyph is
    not the first token); the manifest records it, and scoring and expansion prompt the same."""
    res = train(_cfg(mini_project / "lead", tiny_base, steps=3, lead=True), log=_quiet,
                progress=False)
    m = json.loads((res.out / "manifest.json").read_text())
    assert m["prompt_lead"] == "\n"
    from glyph.evaluation import metrics as ev
    from glyph.evaluation.scoring import Scorer
    from glyph.serving import expand
    from glyph.serving.service import GlyphService
    from glyph.training.data import build_examples

    reg = registry.load()
    corpus = scenes.load_corpus(reg)
    svc = GlyphService.load(res.out, registry=reg, with_index=False)
    tok = svc.model.run.tokenizer
    ex = build_examples(reg, corpus.select(split="train")[:1], tok, 64, lead="\n")[0]
    assert ex.ids[:2] == [tok.encode("\n", add_special_tokens=False).ids[0], 151669]
    assert expand.plan(svc, "⟁", register="poetry", k=0).prompt.startswith("\n⟁\n⟨poetry")
    seen = []
    real_nll = Scorer.nll
    monkeypatch.setattr(Scorer, "nll", lambda self, pairs, adapter: (
        seen.extend(p for p, _ in pairs), real_nll(self, pairs, adapter))[1])
    ev.evaluate(res.out, registry=reg, corpus=corpus, max_scenes=3, svc=svc, light=True)
    assert seen and all(p.startswith("\n") for p in seen)
    assert any(p.startswith("\n🫁\n") for p in seen)


# ---------------------------------------------------------------- determinism and resume
def _adapter_tensors(run: Path) -> dict:
    from safetensors.torch import load_file

    return {f"{t.name}/{k}": v for t in sorted(p for p in (run / "adapters").iterdir() if p.is_dir())
            for k, v in load_file(str(t / "adapter_model.safetensors")).items()}


def _crash_after(n: int):
    """An on_step hook that stops training as a kill would, after step ``n``."""
    def hook(stats) -> None:
        if stats.step >= n:
            raise KeyboardInterrupt
    return hook


def test_kill_and_resume_equals_uninterrupted_run(mini_project, tiny_base, trained_run):
    crashed = mini_project / "crashed"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(crashed, tiny_base), log=_quiet, progress=False, on_step=_crash_after(13))
    assert not (crashed / "manifest.json").exists()  # a crash never looks complete
    assert (crashed / "checkpoints" / "latest").read_text().strip() == "step-000008"
    with pytest.raises(TrainingError, match="--resume"):
        train(_cfg(crashed, tiny_base), log=_quiet, progress=False)
    train(_cfg(crashed, tiny_base), resume=True, log=_quiet, progress=False)
    a, b = _adapter_tensors(trained_run), _adapter_tensors(crashed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same result, bit for bit


def test_lora_dropout_is_seeded_per_step(mini_project, tiny_base, trained_run):
    """Dropout changes what is learnt, yet a killed and resumed run draws the same masks, and
    training leaves the caller's RNG where it was."""
    kw = dict(steps=12, lora_dropout=0.3)
    whole = mini_project / "dropout-whole"
    before = torch.random.get_rng_state()
    train(_cfg(whole, tiny_base, **kw), log=_quiet, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    saved = json.loads(next((whole / "adapters").glob("*/adapter_config.json")).read_text())
    assert saved["lora_dropout"] == 0.3
    crashed = mini_project / "dropout-crashed"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(crashed, tiny_base, **kw), log=_quiet, progress=False,
              on_step=_crash_after(10))
    train(_cfg(crashed, tiny_base, **kw), resume=True, log=_quiet, progress=False)
    a, b = _adapter_tensors(whole), _adapter_tensors(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = mini_project / "dropout-off"
    train(_cfg(plain, tiny_base, steps=12), log=_quiet, progress=False)
    c = _adapter_tensors(plain)
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_" in k)
    with pytest.raises(ConfigError, match="lora-dropout"):
        _cfg(mini_project / "bad", tiny_base, lora_dropout=1.0)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(mini_project, tiny_base):
    out = mini_project / "nan"
    with pytest.raises(TrainingError, match=r"loss became (nan|inf).*step-0000"):
        train(_cfg(out, tiny_base, lr=1e30, embedding_lr=1e30, save_every=1), log=_quiet,
              progress=False)
    assert not (out / "manifest.json").exists()
    assert (out / "checkpoints" / "latest").exists()


# ---------------------------------------------------------------- bad input fails first
def test_bad_inputs_fail_before_work(mini_project, tiny_base, tmp_path):
    with pytest.raises(ModelError, match="no such directory"):
        train(_cfg(tmp_path / "r1", "./does-not-exist"), log=_quiet, progress=False)
    notlm = tmp_path / "bert"
    notlm.mkdir()
    (notlm / "config.json").write_text(json.dumps({"model_type": "bert",
                                                   "architectures": ["BertModel"]}))
    with pytest.raises(ModelError, match="not a causal LM"):
        train(_cfg(tmp_path / "r2", notlm), log=_quiet, progress=False)
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_base, foreign)
    from tokenizers import Tokenizer, models, pre_tokenizers

    t = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.save(str(foreign / "tokenizer.json"))
    with pytest.raises(ModelError, match="not Qwen-family"):
        train(_cfg(tmp_path / "r3", foreign), log=_quiet, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="not a glyph run"):
        train(_cfg(other, tiny_base), overwrite=True, log=_quiet, progress=False)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError):
        train(_cfg(tmp_path / "r4", tiny_base, tiers=("core", "moon")), log=_quiet)
    for p in ("r1", "r2", "r3", "r4"):
        assert not (tmp_path / p / "manifest.json").exists()


def test_glyph_without_scenes_warns_or_fails_strict(mini_project, tiny_base):
    registry.add("🜄", name="water", meaning="dissolution", trigger="flow")
    with pytest.raises(TrainingError, match="no training scenes for 🜄 water"):
        train(_cfg(mini_project / "strict", tiny_base, strict=True), log=_quiet, progress=False)
    said = []
    train(_cfg(mini_project / "lenient", tiny_base, steps=2), log=said.append, progress=False)
    assert any("warning: no training scenes for 🜄 water" in s for s in said)


def test_invalid_corpus_fails_with_file_and_line(mini_project, tiny_base):
    bad = Path(os.environ["GLYPH_SCENES"]) / "broken.yaml"
    bad.write_text("version: 1\nscenes:\n- id: Δ900\n  glyphs: [⟁]\n  register: dance\n"
                   "  level: micro\n  tier: core\n  lang: en\n  text: hi\n", encoding="utf-8")
    with pytest.raises(SceneError, match=r"broken.yaml:3: unknown register 'dance'"):
        train(_cfg(mini_project / "r", tiny_base), log=_quiet, progress=False)


def test_manifest_refuses_a_registry_with_different_ids(trained_run):
    from glyph.run import Run

    run = Run(trained_run)
    run.check_registry(registry.load())
    assert run.manifest().glyphs
    other = registry.Registry(path=Path("x.yaml"), next_id=151700, glyphs=[registry.Glyph(
        symbol="⟁", id=151690, name="ascent", meaning="m", trigger="t")])
    with pytest.raises(ModelError, match="⟁ at id 151669 but the registry has it id 151690"):
        run.check_registry(other)
    with pytest.raises(GlyphError, match="not a glyph run"):
        Run(trained_run / "tokenizer").manifest()
