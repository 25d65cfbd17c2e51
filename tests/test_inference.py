"""Index, neighbors, expand (single, free text, batch), routing and merged export."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from glyph.cli import main  # noqa: E402
from glyph.errors import ConfigError, NotFound  # noqa: E402
from glyph.serving import faiss_index, index, vectors, whitening  # noqa: E402
from glyph.serving.service import GlyphService  # noqa: E402
from glyph.vocab import registry  # noqa: E402

from .conftest import train_config  # noqa: E402


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def svc(trained_project):
    return GlyphService.load(trained_project.run,
                             registry=registry.load(trained_project.registry))


@pytest.fixture
def gm(svc):
    """The shared model; each test must leave its adapter state as it found it."""
    from glyph.model.adapters import active_names

    before = active_names(svc.model.model)
    yield svc.model
    assert active_names(svc.model.model) == before, "a test left other adapters active"


# ---------------------------------------------------------------- index and neighbors
def test_index_files_and_metadata(project):
    d = index.SceneIndex.directory(project.run)
    assert {p.name for p in d.iterdir()} == {"scenes.faiss", "vectors.safetensors", "meta.json",
                                             "projection.safetensors"}
    idx = index.SceneIndex.load(project.run)
    assert idx.index.ntotal == len(idx.meta) == 42  # every scene of the 3 glyphs
    assert idx.info["kind"] == "flat" and idx.info["glyph_vectors"] == "centroid"
    assert idx.info["scene_vectors"] == "glyph-whitened"  # the default, and how it was chosen
    assert idx.info["whitening"]["shrinkage"] in whitening.SHRINKAGE
    v = idx.glyph_vector("⟁")
    assert abs(float((v ** 2).sum()) - 1) < 1e-5


@pytest.mark.parametrize("sym", ["⟁", "🜂", "🫁"])
def test_neighbors_are_the_glyphs_own_scenes(svc, sym):
    hits = svc.neighbors(sym, k=5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert sum(h.glyphs == sym for h in hits) >= 4  # disjoint vocabularies: clear clusters


def test_neighbors_register_filter_and_errors(svc):
    hits = svc.neighbors("🫁", k=4, register="logic")
    assert len(hits) == 4 and all(h.register == "logic" for h in hits)
    with pytest.raises(ConfigError, match="unknown register 'dance'"):
        svc.neighbors("🫁", register="dance")
    with pytest.raises(NotFound, match="not a glyph of run"):
        svc.neighbors("☉")


def test_cli_neighbors_json_and_one_line_errors(project):
    r = run("neighbors", "fire", "--k", "3", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert len(hits) == 3 and hits[0]["glyphs"] == "🜂"
    r = run("neighbors", "☉")
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "not a glyph of run" in r.output


def test_run_without_index_is_one_clear_line(project, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(project.run, bare, ignore=shutil.ignore_patterns("index"))
    r = run("neighbors", "⟁", "--run", str(bare))
    assert r.exit_code == 1 and "glyph index build" in r.output and r.output.count("\n") == 1


# ---------------------------------------------------------------- compress (text → glyphs)
def test_compress_reads_a_scene_where_the_index_put_it(svc):
    """A corpus scene read in its own style lands on its index vector, so compress ranks the
    glyphs as per-scene retrieval does; with no style given, it still finds its glyph."""
    idx = svc.index
    for m in idx.meta[::7]:
        out = svc.compress(m["text"], register=m["register"], level=m["level"],
                           lang=m["lang"], k=3)
        want = idx.rank_glyphs(idx.scene_vector(m["id"]))[:3]
        assert out.guessed == [] and [g.symbol for g in out.glyphs] == [w[0] for w in want]
        assert [g.score for g in out.glyphs] == pytest.approx([w[1] for w in want], abs=1e-3)
        blind = svc.compress(m["text"], k=1)
        assert blind.guessed == ["register", "level", "lang"]
        assert (blind.level, blind.lang) == ("micro", "en")  # the mini corpus has no other
        assert blind.glyphs[0].symbol == m["glyphs"]          # disjoint vocabularies
        assert blind.glyphs[0].name == svc.model.glyph(m["glyphs"]).name


def test_compress_guesses_language_by_script_and_level_by_length():
    from glyph.serving.compress import guess_lang, guess_level

    meta = [{"lang": "en", "level": "micro", "text": "heat in an empty room"},
            {"lang": "ru", "level": "micro", "text": "жара в пустой комнате"},
            {"lang": "en", "level": "macro", "text": " ".join(["word"] * 120)}]
    assert guess_lang("Чайник кипит, дома никого", meta) == "ru"
    assert guess_lang("the kettle shrieks", meta) == "en"
    assert guess_level("one two three", meta) == "micro"
    assert guess_level(" ".join(["w"] * 90), meta) == "macro"


def test_compress_bad_input_and_old_index(svc, project, tmp_path):
    import shutil

    with pytest.raises(ConfigError, match="empty"):
        svc.compress("   ")
    with pytest.raises(ConfigError, match="unknown register 'dance'"):
        svc.compress("heat", register="dance")
    with pytest.raises(ConfigError, match="two-letter"):
        svc.compress("heat", lang="english")
    with pytest.raises(ConfigError, match="at most 20,000"):
        svc.compress("heat " * 5000)
    old = tmp_path / "old"
    shutil.copytree(project.run, old)
    (old / "index" / "projection.safetensors").unlink()  # as an index built by glyph < 0.x
    r = run("compress", "heat", "--run", str(old))
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert "glyph index build" in r.output
    (old / "index" / "projection.safetensors").write_bytes(b"not safetensors")
    r = run("neighbors", "⟁", "--run", str(old))
    assert r.exit_code == 1 and "projection.safetensors" in r.output and "rebuild" in r.output
    import numpy as np

    from glyph.serving.projection import Projection

    # readable, but from another build: one layer of width 3 cannot lead into this index
    Projection(np.zeros((1, 3)), [np.eye(3)]).save(old / "index" / "projection.safetensors")
    r = run("neighbors", "⟁", "--run", str(old))
    assert r.exit_code == 1 and "do not agree" in r.output and r.output.count("\n") == 1


def test_cli_compress_text_and_json(project):
    r = run("compress", "fire", "--k", "2")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("── read as every register · micro · en; guessed:")
    assert len(lines) == 3
    r = run("compress", "fire", "--register", "logic", "--json")
    out = json.loads(r.stdout)
    assert out["registers"] == ["logic"] and out["guessed"] == ["level", "lang"]
    assert len(out["glyphs"]) == 3 and out["glyphs"][0]["score"] >= out["glyphs"][1]["score"]


def _clustered(n: int, d: int = 32, clusters: int = 50, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_exact_search(kind):
    x, q = _clustered(6000), _clustered(50, seed=1)
    exact = faiss_index.make_faiss_index(x, kind="flat")
    approx = faiss_index.make_faiss_index(x, kind=kind)
    assert faiss_index.index_kind(approx) == kind
    _, want = exact.search(q, 10)
    _, got = approx.search(q, 10)
    recall = sum(len(set(a) & set(b)) for a, b in zip(want, got)) / want.size
    assert recall >= 0.9


def test_ivf_raises_nprobe_until_overlapping_data_reaches_the_target_recall():
    """Unclustered data needs many lists per query: the build measures how many."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8000, 32)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:100] + 0.05 * rng.normal(size=(100, 32)).astype("float32")
    ivf = faiss_index.make_faiss_index(x, kind="ivf")
    assert ivf.nprobe > faiss_index.IVF_NPROBE  # the fixed default would not have been enough
    exact = faiss_index.make_faiss_index(x, kind="flat")
    _, want = exact.search(q, 10)
    _, got = ivf.search(q, 10)
    recall = sum(len(set(a) & set(b)) for a, b in zip(want, got)) / want.size
    assert recall >= 0.9
    ivf.nprobe = faiss_index.IVF_NPROBE
    _, fixed = ivf.search(q, 10)
    assert sum(len(set(a) & set(b)) for a, b in zip(want, fixed)) / want.size < recall


def test_auto_index_is_exact_small_and_approximate_large():
    x = _clustered(3000)
    assert faiss_index.index_kind(faiss_index.make_faiss_index(x)) == "flat"
    assert faiss_index.index_kind(faiss_index.make_faiss_index(x, exact_limit=1000)) == "ivf"


def test_style_centring_removes_style_and_keeps_topic():
    """Vectors = a large style offset (language/register/level) + a small topic direction:
    the nearest neighbour by raw cosine is a scene of the same style, after centring by style
    it is a scene of the same topic."""
    import numpy as np
    from types import SimpleNamespace as NS

    rng = np.random.default_rng(0)
    topics, styles = rng.normal(size=(2, 16)), 10 * rng.normal(size=(2, 16))
    scenes = [NS(lang="en", register="poetry" if st == 0 else "logic", level="micro", topic=t)
              for st in range(2) for t in range(2) for _ in range(5)]
    raw = np.stack([styles[0 if s.register == "poetry" else 1] + topics[s.topic]
                    + 0.05 * rng.normal(size=16) for s in scenes])
    centred, centres = vectors.centre_by_style(raw, scenes)
    assert sorted(centres) == ["en/logic/micro", "en/poetry/micro"]
    for x, same_topic_wins in ((raw, False), (centred, True)):
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = u @ u.T
        np.fill_diagonal(sim, -np.inf)
        # compare the best scene of the same topic *in the other style* with the best of the
        # same style and the other topic
        q = 0  # poetry, topic 0
        other_style_same_topic = max(sim[q, j] for j, s in enumerate(scenes)
                                     if s.register == "logic" and s.topic == 0)
        same_style_other_topic = max(sim[q, j] for j, s in enumerate(scenes)
                                     if s.register == "poetry" and s.topic == 1)
        assert (other_style_same_topic > same_style_other_topic) == same_topic_wins


def _glyph_scenes(rng, n_per_glyph=30, glyphs=4, dim=12):
    """Glyphs told apart by a faint direction each; two loud directions vary within a glyph."""
    import numpy as np
    from types import SimpleNamespace as NS

    scenes, rows = [], []
    for g in range(glyphs):
        for i in range(n_per_glyph):
            v = 0.3 * rng.normal(size=dim)
            v[g] += 1.0                                # what the glyph is about: faint
            v[-2:] += 12 * rng.normal(size=2)          # wording, length: loud, glyph-blind
            rows.append(v)
            scenes.append(NS(glyph=f"g{g}", lang="en", register="poetry", level="micro",
                             split="heldout" if i % 5 == 0 else "train"))
    return np.stack(rows).astype("float32"), scenes


def _scene_accuracy(space, scenes, split):
    """Per scene of ``split``: is the nearest training centroid its own glyph's?"""
    import numpy as np

    u = vectors.unit(space.vectors)
    names = sorted({s.glyph for s in scenes})
    cents = vectors.unit(np.stack([u[[i for i, s in enumerate(scenes) if s.glyph == g
                                      and s.split == "train"]].mean(0) for g in names]))
    rows = [i for i, s in enumerate(scenes) if s.split == split]
    return float(np.mean([names[int(np.argmax(cents @ u[i]))] == scenes[i].glyph
                          for i in rows]))


def test_glyph_whitening_lets_the_faint_glyph_directions_decide():
    """Loud within-glyph variation drowns the glyph signal under plain cosine; whitened by the
    within-glyph spread of the training scenes, held-out scenes find their own glyph."""
    import numpy as np

    raw, scenes = _glyph_scenes(np.random.default_rng(0))
    plain = vectors.SCENE_VECTORS["style-centred"](raw, scenes)
    white = vectors.SCENE_VECTORS["glyph-whitened"](raw, scenes)
    assert white.notes["whitening"]["shrinkage"] in whitening.SHRINKAGE
    assert _scene_accuracy(plain, scenes, "heldout") < 0.6
    assert _scene_accuracy(white, scenes, "heldout") > 0.9
    # a glyph prompt vector lands in the same space as the scenes
    assert np.allclose(white.project(raw[:3]), (raw[:3] - raw.mean(0)) @ whitening.fit(
        plain.vectors, [s.glyph for s in scenes], [s.split == "train" for s in scenes]
    ).transform, atol=1e-4)


def test_glyph_whitening_learns_from_training_scenes_only():
    """Held-out labels never enter the fit: relabelling them leaves the transform unchanged."""
    import numpy as np

    raw, scenes = _glyph_scenes(np.random.default_rng(1))
    labels = [s.glyph for s in scenes]
    train = [s.split == "train" for s in scenes]
    shuffled = [g if t else "g0" for g, t in zip(labels, train)]
    a, b = whitening.fit(raw, labels, train), whitening.fit(raw, shuffled, train)
    assert np.array_equal(a.transform, b.transform) and a.shrinkage == b.shrinkage


def test_glyph_whitening_needs_two_glyphs_and_enough_scenes():
    """Nothing to learn: the vectors stay style-centred and the index says so."""
    import numpy as np

    raw, scenes = _glyph_scenes(np.random.default_rng(2), n_per_glyph=30, glyphs=1)
    space = vectors.SCENE_VECTORS["glyph-whitened"](raw, scenes)
    assert space.notes == {"whitening": None}
    assert np.allclose(space.vectors, vectors.SCENE_VECTORS["style-centred"](raw, scenes).vectors)
    assert whitening.fit(raw[:6], [0, 1] * 3, [True] * 6) is None  # 6 < 2 per fold x 5 folds


def test_glyph_whitened_joins_the_layers_each_whitened_on_its_own():
    """Scenes embedded at two layers, one glyph-blind and one that tells glyphs apart: each is
    whitened on its own, their unit vectors are joined (cosine = the mean of the layers'), the
    glyph layer carries retrieval through the join, and a prompt vector projects the same way."""
    import numpy as np

    rng = np.random.default_rng(3)
    good, scenes = _glyph_scenes(rng)
    blind = rng.normal(size=good.shape).astype("float32")
    raw = np.stack((blind, good), 1)                          # [n, 2 layers, d]
    space = vectors.scene_space(raw, scenes, "glyph-whitened", (6, 12))
    each = [vectors.SCENE_VECTORS["glyph-whitened"](raw[:, i], scenes) for i in (0, 1)]
    assert space.layers == (6, 12) and space.vectors.shape == (len(scenes), 2 * good.shape[1])
    assert np.allclose(space.vectors, np.concatenate([vectors.unit(e.vectors) for e in each], 1),
                       atol=1e-5)
    w = space.notes["whitening"]
    assert set(w["shrinkage"]) == {"6", "12"}
    assert w["cv_scene_accuracy"]["12"] > 0.9 and w["cv_scene_accuracy"]["6"] < 0.5
    assert _scene_accuracy(space, scenes, "heldout") > 0.9
    assert np.allclose(space.project(raw[:4]), space.vectors[:4], atol=1e-4)
    # centred on its own style group, a scene's raw vector lands exactly on its index vector
    assert np.allclose(space.project(raw[:4], style="en/poetry/micro"), space.vectors[:4],
                       atol=1e-5)
    assert np.allclose(space.projection.centres["en/poetry/micro"], raw.mean(0), atol=1e-4)
    # the other recipes keep the last layer, as they always did
    plain = vectors.scene_space(np.stack((good, blind), 1), scenes, "style-centred", (6, 12))
    assert plain.layers == (12,) and plain.notes == {}  # no whitening to record
    assert np.allclose(plain.vectors, vectors.SCENE_VECTORS["style-centred"](blind, scenes).vectors)


def test_candidate_layers_span_the_stack():
    assert vectors.candidate_layers(24) == (8, 12, 16, 24)
    assert vectors.candidate_layers(2) == (1, 2) and vectors.candidate_layers(1) == (1,)


def test_hidden_at_inner_layers(gm, monkeypatch):
    """``layers`` picks hidden states by layer number: the last after the final norm (what
    ``hidden`` always returned), an inner one straight from the layer's output."""
    import numpy as np
    import torch

    pairs = [("[en · poetry · micro]\n", "heat rises in the empty room"), ("x\n", "heat")]
    m_last, _ = gm.hidden(pairs)
    assert m_last.shape[:2] == (2, 1)
    with pytest.raises(ValueError, match="outside"):
        gm.hidden(pairs, layers=(gm.n_layers + 1,))
    # pretend the one-layer base has two, so layer 1 is an inner layer
    monkeypatch.setattr(type(gm), "n_layers", property(lambda self: 2))
    # (layer "2" of the pretend stack is the real last layer: its final-norm output)
    m, l_ = gm.hidden(pairs, layers=(1,))
    rows, spans = gm._hidden_rows(pairs[:1])
    with torch.no_grad(), gm.adapters(None):  # the untouched base, as hidden's default
        hs = gm.model.base_model.model.model(input_ids=torch.tensor(rows),
                                             output_hidden_states=True).hidden_states
    a, b = spans[0]
    assert np.allclose(m[0, 0], hs[1][0, a:b].mean(0).numpy(), atol=1e-5)
    assert np.allclose(l_[0, 0], hs[1][0, b - 1].numpy(), atol=1e-5)
    alone, _ = gm.hidden(pairs[1:], layers=(1,))  # batching and padding change nothing
    assert np.allclose(m[1], alone[0], atol=1e-5) and np.abs(alone).sum() > 0

# ---------------------------------------------------------------- routing and generation
def test_routing_by_glyph(gm):
    assert gm.triggers_in("🫁 then ⟁ and 🜂") == ["body", "initiation"]
    assert gm.triggers_in("no glyph here") == []
    assert gm.canonical("🜂\ufe0f fire") == "🜂 fire"  # presentation selector dropped
    assert gm.triggers_in(gm.canonical("🜂\ufe0f fire")) == ["initiation"]


def test_input_without_glyph_runs_the_untouched_base(gm, trained_project):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(gm.manifest.base.path).eval()
    text = "stairs heat fear empty floor"
    ids = gm.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        want = base(input_ids=ids).logits
    assert torch.equal(gm.route_logits(text), want)
    with_glyph = gm.route_logits("⟁ " + text)
    ids2 = gm.tokenizer("⟁ " + text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad(), gm.adapters("initiation"):
        assert torch.allclose(with_glyph, gm.model(input_ids=ids2).logits, atol=1e-5)


def test_mixed_batch_equals_one_by_one(gm):
    prompts = ["⟁\n⟨poetry · micro · en⟩\n", "plain words and", "🫁\n⟨logic · micro · en⟩\n",
               "🜂 ember"]
    batch = gm.generate(prompts, temperature=0, max_new_tokens=8)
    alone = [gm.generate([p], temperature=0, max_new_tokens=8)[0] for p in prompts]
    assert [b.triggers for b in batch] == [["initiation"], [], ["body"], ["initiation"]]
    assert [b.text for b in batch] == [a.text for a in alone]


def test_inference_token_rows_match_peft_own_path(gm):
    """The copy-free glyph rows GlyphModel serves (autograd off) equal peft's index_copy path
    (taken with autograd on): one adapter, a mixed batch, several adapters together."""
    texts = ["⟁ stairs heat", "plain words", "🫁 breath in", "🜂 and ⟁ ember"]
    enc = gm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    names = ["initiation", "__base__", "body", "initiation"]

    def both(**kw):
        with torch.no_grad():
            fast = gm.model(**enc, **kw).logits
        with torch.enable_grad():
            slow = gm.model(**enc, **kw).logits.detach()
        return fast, slow

    with gm.adapters("initiation"):
        pairs = (both(), both(adapter_names=names))
    for fast, slow in pairs:
        assert torch.allclose(fast, slow, atol=1e-5), (fast - slow).abs().max()
        assert not torch.allclose(fast[0], fast[1, : fast.shape[1]])  # rows really differ
    with gm.adapters(["initiation", "body"]):
        fast, slow = both()
    assert torch.allclose(fast, slow, atol=1e-5)


def test_several_triggers_combine_their_rows_and_loras(gm):
    assert gm.triggers_in("⟁ and 🫁") == ["initiation", "body"]
    ids = torch.tensor([[151669, 151671]])
    emb = gm.model.get_input_embeddings()
    with gm.adapters(["initiation", "body"]):
        both = emb(ids)[0]
        with torch.no_grad():
            combined = gm.model(input_ids=ids).logits
    with gm.adapters("initiation"):
        row_a = emb(ids)[0, 0]
    with gm.adapters("body"):
        row_b = emb(ids)[0, 1]
        with torch.no_grad():
            only_body = gm.model(input_ids=ids).logits
    assert torch.equal(both[0], row_a) and torch.equal(both[1], row_b)
    assert not torch.allclose(combined, only_body)
    out = gm.generate(["⟁ and 🫁"], temperature=0, max_new_tokens=4)[0]
    assert out.triggers == ["initiation", "body"]


def test_expand_protocol(svc):
    e = svc.expand("fire", register="logic", k=3, temperature=0, max_new_tokens=12)
    assert (e.glyph, e.adapter, e.register) == ("🜂", "initiation", "logic")
    assert len(e.scenes) == 3 and all(h.register == "logic" for h in e.scenes)
    assert e.level == e.scenes[0].level and e.lang == e.scenes[0].lang  # retrieval shapes it
    assert e.prompt == f"🜂\n⟨logic · {e.level} · {e.lang}⟩\n"
    again = svc.expand("🜂", register="logic", k=3, temperature=0, max_new_tokens=12)
    assert again.text == e.text
    with pytest.raises(ConfigError, match="unknown level"):
        svc.expand("🜂", level="mega")


def test_cli_expand_single_free_text_and_batch(project, tmp_path):
    r = run("expand", "⟁", "--register", "poetry", "--max-new-tokens", "8", "--json")
    assert r.exit_code == 0, r.output
    e = json.loads(r.stdout)
    assert e["adapter"] == "initiation" and e["scenes"] and e["text"] == e["text"].strip()
    r = run("expand", "the 🫁 and ⟁ meet", "--max-new-tokens", "6", "--json")
    assert json.loads(r.stdout)["triggers"] == ["body", "initiation"]
    batch = tmp_path / "prompts.txt"
    batch.write_text('⟁\nplain text\n{"prompt": "🫁 slow"}\n', encoding="utf-8")
    r = run("expand", "--batch", str(batch), "--max-new-tokens", "4", "--json")
    assert [o["triggers"] for o in json.loads(r.stdout)] == [["initiation"], [], ["body"]]
    for args, msg in [(["⟁", "--register", "dance"], "unknown register"),
                      (["☉"], "no adapter"), ([], "give one PROMPT")]:
        r = run("expand", *args)
        if msg == "no adapter":  # not a glyph: plain text continued by the base
            assert r.exit_code == 0 and "none (base model)" in r.output
            continue
        assert r.exit_code == 1 and msg in r.output and r.output.count("\n") == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "⟁"}\n{"text": "x"}\n', encoding="utf-8")
    r = run("expand", "--batch", str(bad))
    assert r.exit_code == 1 and "bad.jsonl:2:" in r.output


# ---------------------------------------------------------------- merged export
def _logits(model, tok, text):
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def _check_export(run_dir: Path, out: Path, trigger: str, text: str):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = json.loads((run_dir / "manifest.json").read_text())
    tok = AutoTokenizer.from_pretrained(out)  # the export's own tokenizer, glyphs included
    assert len(tok(text.split()[0], add_special_tokens=False)["input_ids"]) == 1
    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers
    base = AutoModelForCausalLM.from_pretrained(m["base"]["path"])
    adapter = PeftModel.from_pretrained(base, run_dir / "adapters" / trigger).eval()
    diff = (_logits(merged, tok, text) - _logits(adapter, tok, text)).abs().max().item()
    assert diff <= 1e-4
    return merged


def test_export_tied_matches_the_adapter_model(project, tmp_path):
    out = tmp_path / "exp"
    r = run("export", str(project.run), "--merged", str(out), "--trigger", "initiation")
    assert r.exit_code == 0, r.output
    merged = _check_export(project.run, out, "initiation", "⟁ stairs 🜂 ember fire")
    assert merged.config.tie_word_embeddings
    assert json.loads((out / "glyph_export.json").read_text())["trigger"] == "initiation"
    r = run("export", str(project.run), "--merged", str(out), "--trigger", "initiation")
    assert r.exit_code == 1 and "--overwrite" in r.output


def test_export_untied_every_trigger(mini_project, tiny_untied_base, tmp_path):
    from glyph.training.recipe import train

    res = train(train_config(mini_project / "run-u", tiny_untied_base, steps=6),
                log=lambda m: None, progress=False)
    out = tmp_path / "all"
    r = run("export", str(res.out), "--merged", str(out))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["body", "initiation"]
    merged = _check_export(res.out, out / "body", "body", "🫁 lungs inhale slow")
    assert not merged.config.tie_word_embeddings


def test_export_refuses_bad_targets(project, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    r = run("export", str(project.run), "--merged", str(foreign))
    assert r.exit_code == 1 and "not written by `glyph export`" in r.output
    assert (foreign / "notes.txt").read_text() == "mine"
    r = run("export", str(project.run), "--merged", str(tmp_path / "x"), "--trigger", "nope")
    assert r.exit_code == 1 and "no trigger 'nope'" in r.output
    assert not (tmp_path / "x").exists()


def test_base_vectors_are_cached_per_base_fingerprint():
    import numpy as np

    from glyph.serving.vector_cache import cached_encoder

    calls = []

    def encode(pairs, adapter=None, layers=None):
        calls.append((len(pairs), adapter, layers))
        x = np.array([[[len(p) + len(t) + k, 1.0] for k in (layers or (0,))] for p, t in pairs],
                     dtype="float32")
        return x, 2 * x

    enc = cached_encoder(encode, "base-a")
    m1, l1 = enc([("h", "x"), ("h", "yy")])
    m2, l2 = enc([("h", "yy"), ("h", "zzz"), ("h", "x")])  # one new pair
    assert calls == [(2, None, None), (1, None, None)]
    assert m2[:, 0].tolist() == [[3, 1], [4, 1], [2, 1]] and np.array_equal(l2, 2 * m2)
    enc([("h", "x")], adapter="body")                     # an adapter's vectors: not cached
    cached_encoder(encode, "base-b")([("h", "x")])        # another base: its own cache
    assert calls[2:] == [(1, "body", None), (1, None, None)]
    m3, _ = enc([("h", "x"), ("h", "yy")], layers=(1, 5))   # other layers: their own cache
    assert calls[4:] == [(2, None, (1, 5))] and m3[:, :, 0].tolist() == [[3, 7], [4, 8]]
    enc([("h", "yy")], layers=(1, 5))
    assert len(calls) == 5
