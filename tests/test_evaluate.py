"""`glyph eval`: each metric on a case whose answer is known, then end to end on a tiny run."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from glyph.evaluation import metrics as ev  # noqa: E402
from glyph.evaluation.report import table  # noqa: E402
from glyph.vocab import registry  # noqa: E402
from glyph.cli import main  # noqa: E402


def _row(glyph, best, own, none, other, meaning, kl=0.0, meaning_other=3.0, meaning_best=None):
    return dict(glyph=glyph, best=best, own=own, none=none, other=other, meaning=meaning,
                kl_meaning=kl, meaning_other=meaning_other, meaning_best=meaning_best or glyph)


def test_summarize_known_answers():
    rows = [_row("a", "a", 2.0, 3.0, 2.5, 2.0), _row("a", "b", 3.0, 3.0, 3.5, 2.0),
            _row("b", "b", 1.0, 2.0, 1.5, 1.0, kl=0.4, meaning_best="a"),
            _row("b", "b", 2.0, 2.0, 2.5, 2.0, meaning_other=2.0, meaning_best="a")]
    m = ev.summarize(rows, n_glyphs=4)
    assert m["specificity"] == {"accuracy": 0.75, "meaning_accuracy": 0.5, "chance": 0.25}
    assert m["nll"] == {"own": 2.0, "none": 2.5, "other": 2.5, "meaning": 1.75,
                        "meaning_other": 2.75}
    assert m["gain_vs_none"] == pytest.approx(0.5) and m["gain_vs_other"] == pytest.approx(0.5)
    assert m["specific_gain"] == {"glyph": pytest.approx(0.5), "meaning": pytest.approx(1.0)}
    pe = m["prompt_equivalence"]
    assert pe["meaning_gain"] == pytest.approx(0.75)
    assert pe["recovered"] == pytest.approx(0.5 / 0.75)
    assert pe["kl_meaning_vs_glyph"] == pytest.approx(0.1)
    hurt = ev.summarize([_row("a", "a", 2.0, 3.0, 2.5, 3.5)], 2)  # meaning makes it worse
    assert hurt["prompt_equivalence"]["recovered"] is None


def _scored(glyph, register, scores, meaning_scores=None):
    return dict(glyph=glyph, register=register, level="micro", lang="en", scores=scores,
                meaning_scores=meaning_scores)


def test_diagnosis_known_answers():
    """A hub glyph ("a") lowers every scene's NLL by 1.5: specificity collapses, calibration
    recovers it; the meanings (own 2, others 3) are right everywhere."""
    from glyph.evaluation.diagnose import diagnose, markdown

    trig = {"a": "x", "b": "x", "c": "y", "d": "z"}
    rows = []
    for g, reg in zip("abcd", ("poetry", "poetry", "logic", "logic")):
        plain = {h: 2.0 if h == g else 3.0 for h in "abcd"}
        rows.append(_scored(g, reg, {**plain, "a": plain["a"] - 1.5}, plain))
    d = diagnose(rows, trig)
    g, m = d["glyph"], d["meaning"]
    assert g["specificity"] == 0.25 and g["winners"] == {"a": 4} and g["top_winner_share"] == 1
    assert g["trigger"] == {"accuracy": 0.5, "chance": 0.375}
    assert g["within_trigger"] == {"accuracy": 0.5, "chance": 0.5, "scenes": 2}
    assert g["calibrated"] == {"accuracy": 1.0, "chance": 0.25}
    assert g["by_style"]["register"] == {"logic": {"accuracy": 0.0, "scenes": 2},
                                         "poetry": {"accuracy": 0.5, "scenes": 2}}
    assert m["specificity"] == m["trigger"]["accuracy"] == m["calibrated"]["accuracy"] == 1.0
    text = "\n".join(markdown(d))
    assert "| winner shares the own trigger | 0.50 | 1.00 | 0.38 |" in text
    assert "a 4" in text and "| register poetry | 2 | 0.50 | 1.00 |" in text
    no_meaning = diagnose([{**r, "meaning_scores": None} for r in rows], trig)
    assert no_meaning["meaning"] is None and no_meaning["glyph"] == g
    assert "| 0.25 | – |" in "\n".join(markdown(no_meaning))


class _FakeIndex:
    """Scenes on a line: glyph g's vector retrieves the scenes listed in ``ranking[g]``."""

    def __init__(self, ranking):
        self.ranking = ranking

    def glyph_vector(self, g):
        return g

    def search(self, g, *, k, where):
        from types import SimpleNamespace

        ids = [i for i in self.ranking[g] if where({"id": i})]
        return [SimpleNamespace(scene_id=i) for i in ids[:k]]


def test_retrieval_known_answers():
    from types import SimpleNamespace as S

    pool = [S(id=f"a{i}", glyph="a") for i in range(2)] + [S(id=f"b{i}", glyph="b")
                                                          for i in range(6)]
    idx = _FakeIndex({"a": ["b0", "a0", "b1", "a1", "b2", "b3"],
                      "b": ["b0", "b1", "b2", "b3", "b4", "a0"], })
    r = ev.retrieval(idx, pool, ["a", "b"])
    assert r["per_glyph"]["a"] == {"recall@1": 0.0, "recall@5": 1.0}
    assert r["per_glyph"]["b"] == {"recall@1": 1.0, "recall@5": 1.0}
    assert r["overall"]["recall@1"] == 0.5
    assert r["overall"]["chance@1"] == pytest.approx((2 / 8 + 6 / 8) / 2)


def test_scene_retrieval_is_one_query_per_scene():
    import numpy as np
    from types import SimpleNamespace as NS

    from glyph.serving.faiss_index import make_faiss_index
    from glyph.serving.index import SceneIndex
    from glyph.serving.vectors import glyph_key

    # glyph vectors on two axes; each scene's vector says where it lies
    scenes = {"a1": [0.9, 0.1], "a2": [0.2, 0.8], "b1": [0.1, 0.9], "b2": [0.0, 1.0]}
    index = SceneIndex(make_faiss_index(np.array(list(scenes.values()), dtype="float32")),
                       [{"id": k} for k in scenes],
                       {glyph_key("a"): np.array([1.0, 0.0], dtype="float32"),
                        glyph_key("b"): np.array([0.0, 1.0], dtype="float32")}, {})
    pool = [NS(id=i, glyph=i[0], register="poetry", level="micro" if i[1] == "1" else "macro",
               lang="en") for i in ("a1", "a2", "b1", "b2", "zz")]
    r = ev.scene_retrieval(index, pool, ["a", "b"])
    assert r["per_glyph"]["a"] == {"accuracy": 0.5, "scenes": 2}
    assert r["per_glyph"]["b"] == {"accuracy": 1.0, "scenes": 2}
    assert r["overall"] == {"accuracy": 0.75, "scenes": 4, "chance": 0.5}
    # where the misses are: a2, the one miss, is the macro scene of a
    assert r["by_style"]["level"] == {"macro": {"accuracy": 0.5, "scenes": 2},
                                      "micro": {"accuracy": 1.0, "scenes": 2}}


def test_a_subsample_scores_every_glyph_evenly():
    from types import SimpleNamespace as S

    # ids sorted by glyph would starve the last glyphs under a step-by-id subsample
    sizes = {"a": 30, "b": 30, "c": 5, "d": 2}
    pool = [S(id=f"{g}{i:03d}", glyph=g) for g, n in sizes.items() for i in range(n)]
    corpus = S(select=lambda split: list(pool))
    picked = ev._scenes(corpus, set(sizes), "heldout", 16)
    counts = {g: sum(s.glyph == g for s in picked) for g in sizes}
    assert counts == {"a": 5, "b": 5, "c": 4, "d": 2}  # short glyphs give theirs, the rest share
    assert len({s.id for s in picked}) == 16 and picked == sorted(picked, key=lambda s: s.id)
    spread = [int(s.id[1:]) for s in picked if s.glyph == "a"]
    assert spread[0] < 6 and spread[-1] > 24  # spread over the glyph's scenes, not its first
    assert ev._scenes(corpus, set(sizes), "heldout", 16) == picked
    assert len(ev._scenes(corpus, set(sizes), "heldout", 500)) == 67


@pytest.mark.parametrize("zero_rows", [False, True])
def test_kl_is_exact_over_the_full_vocabulary(zero_rows):
    """Scores.kl_to (compact or dense) equals KL computed from full log-softmaxes."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from glyph.training.loss import IGNORE, GlyphLM

    torch.manual_seed(0)
    base = Qwen3ForCausalLM(Qwen3Config(vocab_size=151936, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2,
                                        num_key_value_heads=1, head_dim=16,
                                        tie_word_embeddings=True))
    with torch.no_grad():
        base.get_input_embeddings().weight.mul_(30)  # peaked distributions: KL well above 0
        if zero_rows:
            base.get_input_embeddings().weight[2000:] = 0
    pm = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"],
                                         trainable_token_indices=[151669],
                                         init_lora_weights=False), adapter_name="g").eval()
    lm = GlyphLM(pm, tied=True)
    assert lm.compact is zero_rows
    a = torch.tensor([[10, 11, 12, 13, 14, 15]])
    b = torch.tensor([[151669, 12, 13, 14, 15, 16]])  # other prompt, same 4 labelled tokens
    la, lb = a.clone(), b.clone()
    la[:, :2], lb[:, :2] = IGNORE, IGNORE
    la[:, 2:], lb[:, 2:] = torch.tensor([12, 13, 14, 15]), torch.tensor([13, 14, 15, 16])
    with torch.no_grad(), pm.disable_adapter():
        p = lm.scores(a, torch.ones_like(a), la, None)
        dense_p = torch.log_softmax(pm(input_ids=a).logits[0, 1:-1].double(), -1)
    with torch.no_grad():
        q = lm.scores(b, torch.ones_like(b), lb, "g")
        dense_q = torch.log_softmax(pm(input_ids=b).logits[0, 1:-1].double(), -1)
    want = (dense_p.exp() * (dense_p - dense_q)).sum(-1).float()
    assert want.min() > 0.01
    assert torch.allclose(p.kl_to(q), want, rtol=1e-3, atol=1e-5)
    assert torch.allclose(p.kl_to(p), torch.zeros(4), atol=1e-6)


# ---------------------------------------------------------------- end to end on a tiny run
@pytest.fixture(scope="module")
def metrics(trained_project):
    return ev.evaluate(trained_project.run, registry=registry.load(trained_project.registry),
                       corpus=_corpus(trained_project))


def _corpus(p):
    from glyph.corpus import scenes

    return scenes.load_corpus(registry.load(p.registry), p.scenes)


def test_a_trained_glyph_carries_its_scenes(metrics):
    o = metrics["overall"]
    assert o["scenes"] == 12 and metrics["glyphs"] == 3
    # disjoint vocabularies: the own glyph is the best prompt far above chance
    assert o["specificity"]["accuracy"] >= 2 * o["specificity"]["chance"]
    assert o["gain_vs_none"] > 0 and o["gain_vs_other"] > 0
    assert o["retrieval"]["recall@5"] > o["retrieval"]["chance@5"]
    # the numbers say which scene vectors made them, and so does the table's legend
    assert o["retrieval"]["scene_vectors"] == "glyph-whitened"
    assert "(glyph-whitened scene vectors)" in table(metrics)
    assert o["retrieval"]["scene_layers"] == [1]  # a one-layer base: its only layer
    deep = {**metrics, "overall": {**o, "retrieval": {**o["retrieval"],
                                                      "scene_layers": [8, 12, 16, 24]}}}
    assert "(glyph-whitened scene vectors of layers 8+12+16+24)" in table(deep)
    d = metrics["diagnosis"]["glyph"]  # the diagnosis is computed from the same score table
    assert d["specificity"] == o["specificity"]["accuracy"]
    assert sum(d["winners"].values()) == o["scenes"]
    assert metrics["diagnosis"]["meaning"]["specificity"] == o["specificity"]["meaning_accuracy"]
    for g, m in metrics["per_glyph"].items():
        assert m["compression"].endswith(":1") and m["meaning_tokens"] > 1
        assert m["nll"]["own"] < m["nll"]["other"], g


def test_light_measures_score_nlls_only_and_still_report(trained_project, metrics, tmp_path):
    """What tools/compare_objectives.py asks for on a real base: NLL metrics only."""
    from glyph.evaluation.report import write_report

    light = ev.evaluate(trained_project.run, registry=registry.load(trained_project.registry),
                        corpus=_corpus(trained_project),
                        measures=ev.Measures(kl=False, preservation=False, retrieval=False))
    o, full = light["overall"], metrics["overall"]
    assert o["specificity"] == full["specificity"] and o["nll"] == full["nll"]
    assert "base_preservation" not in o and not o.get("retrieval")
    ev.write_metrics(light, tmp_path)
    report = write_report(light, tmp_path, command="compare")
    assert "specificity" in report.read_text(encoding="utf-8").lower()


def test_base_preservation_is_exactly_zero(metrics):
    bp = metrics["overall"]["base_preservation"]
    assert bp["kl_routed_vs_base"] == 0.0 and bp["max_abs_logprob_diff"] == 0.0
    assert bp["kl_if_adapter_forced"] > 0  # what routing prevents


def test_base_preservation_catches_broken_routing(trained_project, monkeypatch):
    from glyph.serving.routing import GlyphModel

    gm = GlyphModel.load(trained_project.run, registry=registry.load(trained_project.registry))

    def always_adapter(text, ids=None):  # a routing bug: the adapter leaks into plain text
        with torch.no_grad(), gm.adapters("body"):
            return gm.model(input_ids=ids).logits

    monkeypatch.setattr(gm, "route_logits", always_adapter)
    scorer = ev.Scorer(gm)
    scenes_ = _corpus(trained_project).select(split="heldout")
    bp = ev.base_preservation(gm, scorer, scenes_, ["🫁"])
    assert bp["kl_routed_vs_base"] > 0


def test_cli_eval_writes_report_and_is_reproducible(project, tmp_path):
    out = tmp_path / "eval"
    r = CliRunner().invoke(main, ["eval", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "chance: spec" in r.stdout and "overall" in r.stdout
    m1 = json.loads((out / "metrics.json").read_text())
    for g, pg in m1["per_glyph"].items():  # the compression ratio is shown per glyph
        line = next(x for x in r.stdout.splitlines() if x.startswith(f"{g} "))
        assert f"{pg['meaning_tokens']}:1" in line
    for png in ("loss.png", "per_glyph.png", "conditions.png", "map.png"):
        assert (out / png).stat().st_size > 5000
        assert f"]({png})" in (out / "report.md").read_text()
    assert "glyph eval --out" in (out / "report.md").read_text()  # names its command
    assert "## Where specificity is lost" in (out / "report.md").read_text()
    r = CliRunner().invoke(main, ["eval", "--out", str(tmp_path / "again"), "--json"])
    m2 = json.loads(r.stdout)
    assert m2["overall"]["nll"] == m1["overall"]["nll"]  # same run, same numbers
    assert m2["overall"]["specificity"] == m1["overall"]["specificity"]
    r = CliRunner().invoke(main, ["eval", "--split", "bogus"])
    assert r.exit_code == 2
