"""Objectives, micro-batches, bucketing, balance and memory plans of the trainer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from glyph.errors import ConfigError  # noqa: E402
from glyph.training import head as head_mod  # noqa: E402
from glyph.training.data import Example, padding_share, schedule  # noqa: E402
from glyph.training.memory import ModelDims, plan_memory  # noqa: E402
from glyph.training.recipe import Recipe, train  # noqa: E402

from .conftest import train_config  # noqa: E402


def _dense_kl(hs, W, ht, idx, delta):
    ls = hs @ W.T
    if idx is not None:
        ls = ls.index_copy(1, idx, hs @ delta.T)
    lt = ht @ W.T
    lp, lq = torch.log_softmax(lt.double(), -1), torch.log_softmax(ls.double(), -1)
    return (lp.exp() * (lp - lq)).sum(-1)


@pytest.mark.parametrize("tied", [False, True])
def test_fused_kl_equals_dense_kl_and_its_gradients(tied, monkeypatch):
    monkeypatch.setattr(head_mod, "HEAD_CHUNK_ELEMENTS", 2 * 3 * 500)  # 3 positions a chunk
    g = torch.Generator().manual_seed(0)
    W = torch.randn(500, 16, generator=g)
    hs = torch.randn(7, 16, generator=g, requires_grad=True)
    ht = torch.randn(7, 16, generator=g)
    idx = torch.tensor([3, 499]) if tied else None
    delta = torch.randn(2, 16, generator=g, requires_grad=True) if tied else None
    got = head_mod.head_kl(hs, W, ht, idx, delta)
    want = _dense_kl(hs, W, ht, idx, delta)
    assert torch.allclose(got.double(), want, atol=1e-5) and want.min() > 0.1
    weights = torch.arange(1.0, 8.0)
    inputs = [hs] + ([delta] if tied else [])
    g_got = torch.autograd.grad((got * weights).sum(), inputs)
    g_want = torch.autograd.grad((want.float() * weights).sum(), inputs)
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


# ---------------------------------------------------------------- the schedule
def _examples(lengths: list[int], triggers: list[str]) -> list[Example]:
    return [Example(f"s{i}", t, [0] * n, [0] * n) for i, (n, t) in
            enumerate(zip(lengths, triggers))]


def test_bucketing_cuts_padding_and_balance_evens_out_triggers():
    import random

    rng = random.Random(0)
    lengths = [rng.choice([12, 30, 60, 120, 190]) + rng.randrange(8) for _ in range(400)]
    triggers = ["big"] * 320 + ["small"] * 80
    exs = _examples(lengths, triggers)
    plain = schedule(exs, 8, 0, steps=None, epochs=1)
    bucketed = schedule(exs, 8, 0, steps=None, epochs=1, bucket=True)
    assert padding_share(exs, plain) > 0.3 and padding_share(exs, bucketed) < 0.15
    assert sorted(i for _, b in bucketed for i in b) == list(range(400))  # each scene once
    counts = lambda plan: {t: sum(tt == t for tt, _ in plan) for t in ("big", "small")}
    assert counts(plain) == {"big": 40, "small": 10}  # steps follow the data …
    balanced = counts(schedule(exs, 8, 0, steps=None, epochs=1, balance=True))
    assert balanced["big"] == balanced["small"] == 25  # … or every trigger gets as many
    again = schedule(exs, 8, 0, steps=None, epochs=1, bucket=True, balance=True)
    assert again == schedule(exs, 8, 0, steps=None, epochs=1, bucket=True, balance=True)


# ---------------------------------------------------------------- memory plans
QWEN05 = ModelDims(layers=24, hidden=896, intermediate=4864, weight_bytes=2_520_000_000)


def test_memory_plan_takes_the_fastest_that_fits(monkeypatch):
    from glyph.training import memory

    monkeypatch.setattr(memory, "available_gb", lambda: 20.0)
    kw = dict(batch_size=8, max_len=192, dims=QWEN05)
    assert plan_memory("auto", budget_gb=30, **kw).mode == "fast"
    split = plan_memory("auto", budget_gb=8, **kw)
    assert split.mode == "split" and split.parts >= 2 and split.estimate_gb <= 8
    assert plan_memory("auto", budget_gb=3.6, **kw).mode == "checkpoint"
    assert plan_memory("auto", budget_gb=8, passes=2, **kw).parts > split.parts  # contrast
    monkeypatch.setattr(memory, "available_gb", lambda: 3.0)
    with pytest.raises(ConfigError, match="lower --batch-size or --max-len"):
        plan_memory("auto", budget_gb=None, **kw)


# ---------------------------------------------------------------- whole steps on a tiny base
def _recipe(mini_project, tiny_base, name, **kw) -> Recipe:
    cfg = train_config(mini_project / name, tiny_base, steps=4, **kw)
    return Recipe(cfg, log=lambda m: None, progress=False).setup()


def _trainable(recipe) -> dict:
    from glyph.training.checkpoint import trainable

    return {k: v.detach().clone() for k, v in trainable(recipe.peft_model).items()}


def test_micro_batches_and_checkpointing_take_the_same_step(mini_project, tiny_base):
    ref = _recipe(mini_project, tiny_base, "one", memory="fast")
    split = _recipe(mini_project, tiny_base, "two", memory="split", memory_budget=0.001)
    ckpt = _recipe(mini_project, tiny_base, "ckpt", memory="checkpoint", memory_budget=0.001)
    assert (ref.memory.parts, split.memory.parts, ckpt.memory.mode) == (1, 4, "checkpoint")
    for r in (ref, split, ckpt):
        r.glm.train()
        r.stats = r.step(*r.plan[0])
    assert split.stats.loss == pytest.approx(ref.stats.loss, abs=1e-5)
    assert ckpt.stats.loss == pytest.approx(ref.stats.loss, abs=1e-5)
    a, b, c = _trainable(ref), _trainable(split), _trainable(ckpt)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert max((a[k] - c[k]).abs().max().item() for k in a) < 1e-5


def test_contrast_trains_the_wrong_glyphs_adapter_too(mini_project, tiny_base):
    r = _recipe(mini_project, tiny_base, "c", contrast=1.0, contrast_margin=5.0)
    before = _trainable(r)
    trigger, idx = r.plan[0]
    r.glm.train()
    stats = r.step(trigger, idx)
    after = _trainable(r)
    other = next(t for t in r.triggers if t != trigger)
    moved = {t: any(not torch.equal(before[k], after[k]) for k in before if f".{t}" in k)
             for t in r.triggers}
    assert moved[trigger] and moved[other]  # the wrong adapter is pushed away from the scene
    assert "gap" in stats.extra and stats.loss > 0


def test_sibling_contrast_uses_the_same_adapter_and_a_sibling_glyph(mini_project, tiny_base):
    """``contrast_to="sibling"``: on a trigger with two glyphs (initiation: ⟁ 🜂) the wrong
    pass is the sibling under the *same* adapter, so no other adapter moves; a trigger with one
    glyph (body: 🫁) falls back to another trigger's."""
    r = _recipe(mini_project, tiny_base, "s", contrast=1.0, contrast_margin=5.0,
                contrast_to="sibling")
    step, (trigger, idx) = next((i, p) for i, p in enumerate(r.plan) if p[0] == "initiation")
    part = r.parts.parts(step, trigger, idx, 1, 1.0)[0]
    ids, _, _, wrong_trigger = part.wrong
    assert wrong_trigger == "initiation"
    ids_of = {g: r.reg.get(g).id for g in ("⟁", "🜂")}
    for row, i in zip(ids.tolist(), idx):
        own = r.examples[i].scene.glyph
        sibling = "🜂" if own == "⟁" else "⟁"
        assert ids_of[sibling] in row and ids_of[own] not in row
    before = _trainable(r)
    r.glm.train()
    stats = r.step(trigger, idx)
    after = _trainable(r)
    moved = {t: any(not torch.equal(before[k], after[k]) for k in before if f".{t}" in k)
             for t in r.triggers}
    assert moved["initiation"] and not moved["body"] and stats.extra["gap"] == stats.extra["gap"]
    step, (trigger, idx) = next((i, p) for i, p in enumerate(r.plan) if p[0] == "body")
    assert r.parts.parts(step, trigger, idx, 1, 1.0)[0].wrong[3] == "initiation"
    with pytest.raises(ConfigError, match="--contrast-to"):
        train_config(mini_project / "bad", tiny_base, contrast_to="everyone")


@pytest.mark.parametrize("objective", ["distill", "lm+distill"])
def test_distillation_runs_end_to_end(mini_project, tiny_base, objective):
    res = train(train_config(mini_project / objective, tiny_base, steps=4, objective=objective),
                log=lambda m: None, progress=False)
    log = [json.loads(x) for x in (res.out / "loss.jsonl").read_text().splitlines()]
    assert all(r["loss"] >= 0 for r in log) and (objective == "distill") == ("nll" not in log[0])
    m = json.loads((res.out / "manifest.json").read_text())
    assert m["config"]["objective"] == objective


def test_teacher_states_are_the_base_with_the_meaning(mini_project, tiny_base):
    """The cached teacher rows equal a direct base forward of ``meaning + header + text``."""
    r = _recipe(mini_project, tiny_base, "t", objective="distill")
    trigger, idx = r.plan[0]
    part = r.parts.parts(0, trigger, idx, 1, 1.0)[0]
    ex = r.examples[idx[0]]
    assert ex.teacher_ids[-len(ex.text):] == ex.text == ex.ids[-len(ex.text):]
    assert r.parts.tok.decode(ex.teacher_ids).startswith(
        r.reg.get(ex.scene.glyph).meaning + "\n⟨")
    from glyph.training.data import collate

    ids, mask, labels = collate([ex.teacher()], r.pad_id)
    with torch.no_grad(), r.peft_model.disable_adapter():
        h = r.peft_model.base_model.model.model(input_ids=ids).last_hidden_state
    want = h[0, :-1][labels[0, 1:] != -100]
    assert torch.allclose(part.teacher[: len(want)], want, atol=1e-5)
    assert Path(r.run.path).name == "t"


def test_adapters_are_per_glyph_on_a_base_and_per_trigger_on_the_default():
    """auto: one adapter per glyph on a --base (measured there), per trigger on the embedded
    default; a config saved before the option resumes per trigger, as it trained."""
    from glyph.training.config import TrainConfig

    assert TrainConfig(out=Path("x"), base="b").adapter_per_glyph
    assert not TrainConfig(out=Path("x")).adapter_per_glyph
    assert not TrainConfig(out=Path("x"), base="b", adapters="trigger").adapter_per_glyph
    assert TrainConfig(out=Path("x"), adapters="glyph").adapter_per_glyph
    old = TrainConfig(out=Path("x"), base="b").to_dict()
    del old["adapters"]
    assert TrainConfig.from_dict(old).adapters == "trigger"


def test_a_time_budget_cuts_the_schedule_after_measuring(mini_project, tiny_base):
    from glyph.training.config import REAL_BASE_MINUTES, TrainConfig
    from glyph.training.recipe import TIME_PROBE_STEPS

    assert TrainConfig(out=Path("x")).time_budget is None           # the embedded default
    assert TrainConfig(out=Path("x"), base="b").time_budget == REAL_BASE_MINUTES
    assert TrainConfig(out=Path("x"), base="b", steps=9).time_budget is None
    said = []
    res = train(train_config(mini_project / "tb", tiny_base, steps=24, max_minutes=1e-5),
                log=said.append, progress=False)
    assert res.steps == TIME_PROBE_STEPS and any("time budget" in m for m in said)
    saved = json.loads((res.out / "train_config.json").read_text())
    assert saved["steps"] == TIME_PROBE_STEPS  # a resumed run follows the cut schedule
    log = [json.loads(x) for x in (res.out / "loss.jsonl").read_text().splitlines()]
    assert len(log) == TIME_PROBE_STEPS and "heldout_loss" in log[-1]
    roomy = train(train_config(mini_project / "roomy", tiny_base, steps=6, max_minutes=60),
                  log=lambda m: None, progress=False)
    assert roomy.steps == 6
