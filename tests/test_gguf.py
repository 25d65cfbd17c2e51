"""GGUF bases and padded vocabularies, offline.

A tiny but real qwen2 GGUF (:mod:`tests.support.tiny_gguf`: llama.cpp's tensor names and
fields, Qwen2.5's whole tokenizer with the ``[PAD151665]``… fillers, random F32 weights) is
written once per session and converted once; the tests check the conversion against
transformers' own GGUF load, the glyph tokenizer built on it, a short training run, and that
every kind of bad file is one clear line with nothing cached. A padded tokenizer *directory*
(Qwen2.5's layout, no GGUF) checks the filler rules on their own.

transformers' GGUF loading dominates the time here (it parses the 300k-string vocabulary
several times per load), so it happens twice per session: our conversion and the reference.
"""
from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from glyph import gguf as glyph_gguf
from glyph.cli import main
from glyph.errors import ModelError, TokenizerError
from glyph.vocab import sources
from glyph.vocab import tokenizer as tk

from .conftest import WORDS, train_config, write_mini_project
from .support import samples
from .support.tiny_gguf import (EMBEDDING_ROWS, FILLERS, FIRST_FILLER, filler,
                                tensor_data_span, truncated_copy, write_tiny_gguf)

SYMBOLS = list(WORDS)                    # the mini project's glyphs: ⟁ 🜂 🫁
GLYPH_IDS = [151669, 151670, 151671]     # their registry ids (registry.add gives them in order)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """The tiny qwen2 GGUF, alone in its directory (transformers loads ``dir`` + file name)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-qwen2.gguf", seed=7)


@pytest.fixture(scope="session")
def reference(tiny_gguf):
    """transformers' own load of the tiny GGUF: ``(tokenizer, model)``, independent of glyph."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(gguf_file=tiny_gguf.name)
    tok = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), dtype=torch.float32, **kw)
    return tok, model.eval()


@pytest.fixture(scope="session")
def converted_dir(tiny_gguf, glyph_home) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLYPH_HOME", str(glyph_home))
        return glyph_gguf.converted(tiny_gguf)


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


# ================================================================ the tiny GGUF itself
def test_transformers_loads_the_tiny_gguf_as_qwen25(reference):
    tok, model = reference
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.get_input_embeddings().weight.shape == (EMBEDDING_ROWS, 32)
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    assert len(tok) == EMBEDDING_ROWS
    assert tok.encode("Hello world", add_special_tokens=False) == [9707, 1879]
    assert tok.convert_ids_to_tokens([151643, 151645, FIRST_FILLER, EMBEDDING_ROWS - 1]) == [
        "<|endoftext|>", "<|im_end|>", "[PAD151665]", "[PAD151935]"]
    assert tok.eos_token == "<|im_end|>"


# ================================================================ conversion
def test_converted_dir_is_a_base_with_the_ggufs_logits(converted_dir, reference, tiny_gguf):
    import torch

    from glyph.model.base import check_base, load_pretrained

    check_base(converted_dir)  # a causal LM with a Qwen-family tokenizer
    marker = json.loads((converted_dir / glyph_gguf.MARKER).read_text())
    assert marker["architecture"] == "qwen2" and marker["sha256"] == glyph_gguf._sha256(tiny_gguf)
    assert converted_dir.name == f"gguf-{marker['sha256'][:16]}-v{glyph_gguf.CONVERTER_VERSION}"
    model = load_pretrained(converted_dir)
    assert model.get_input_embeddings().weight.shape[0] == EMBEDDING_ROWS
    assert model.get_output_embeddings().weight.shape[0] == EMBEDDING_ROWS
    # ordinary ids, added tokens and fillers: every row of both matrices takes part
    ids = torch.tensor([[9707, 1879, 151643, 151644, FIRST_FILLER, 151800, EMBEDDING_ROWS - 1]])
    with torch.no_grad():
        ours = model(ids).logits
        theirs = reference[1](ids).logits
    assert ours.shape == (1, ids.shape[1], EMBEDDING_ROWS)
    assert torch.equal(ours, theirs)


def test_converted_tokenizer_reads_alike_in_tokenizers_and_transformers(converted_dir):
    from transformers import AutoTokenizer

    # glyph trains through ``tokenizers`` and serves through transformers
    nfd = unicodedata.normalize("NFD", "Ёжик café naïve 가나다")
    hf = AutoTokenizer.from_pretrained(str(converted_dir))
    ids = sources.load(converted_dir).encode(nfd, add_special_tokens=False).ids
    assert ids == hf.encode(nfd, add_special_tokens=False)
    assert ids == hf.encode(unicodedata.normalize("NFC", nfd), add_special_tokens=False)


def test_converting_again_hits_the_cache(converted_dir, tiny_gguf, tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(glyph_gguf, "_convert_into", never)
    files = {f.name: f.stat().st_mtime_ns for f in converted_dir.iterdir()}
    assert glyph_gguf.converted(tiny_gguf) == converted_dir
    # the key is the content: the same file under another name is the same conversion
    copy = shutil.copy(tiny_gguf, tmp_path / "renamed.gguf")
    assert glyph_gguf.converted(copy) == converted_dir
    assert {f.name: f.stat().st_mtime_ns for f in converted_dir.iterdir()} == files


# ================================================================ the glyph tokenizer on it
@pytest.fixture(scope="session")
def gguf_glyph_dir(tiny_gguf, converted_dir, glyph_home, tmp_path_factory) -> Path:
    """``glyph tokenizer build --base tiny.gguf`` with the mini project's registry (built once)."""
    root = tmp_path_factory.mktemp("gguf-project")
    write_mini_project(root / "glyphs_registry.yaml", root / "glyphs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLYPH_HOME", str(glyph_home))
        mp.setenv("GLYPH_REGISTRY", str(root / "glyphs_registry.yaml"))
        mp.setenv("GLYPH_SCENES", str(root / "glyphs"))
        r = cli("tokenizer", "build", "--base", str(tiny_gguf), "--out", str(root / "tok"))
    assert r.exit_code == 0, r.output
    assert [line.split()[:3] for line in r.output.splitlines()[1:4]] == [
        [s, name, cost] for s, name, cost in zip(SYMBOLS, ["ascent", "fire", "breath"],
                                                 ["2", "3", "3"])]
    return root / "tok"


def test_glyphs_take_the_fillers_at_their_registry_ids(gguf_glyph_dir):
    from glyph.vocab import registry

    reg = registry.load(gguf_glyph_dir.parent / "glyphs_registry.yaml")
    assert [(g.symbol, g.id) for g in reg.active()] == list(zip(SYMBOLS, GLYPH_IDS))
    tok = sources.load(gguf_glyph_dir)
    for sym, gid in zip(SYMBOLS, GLYPH_IDS):
        assert tok.encode(sym, add_special_tokens=False).ids == [gid]
        assert tok.id_to_token(gid) == sym
    assert tok.get_vocab_size(with_added_tokens=True) == EMBEDDING_ROWS  # nothing appended
    untouched = [i for i in FILLERS if i not in GLYPH_IDS]
    assert [tok.id_to_token(i) for i in untouched] == [filler(i) for i in untouched]
    meta = json.loads((gguf_glyph_dir / "glyph_tokens.json").read_text())
    assert meta["took_fillers"] == GLYPH_IDS and meta["reserved"] == []


def test_nothing_else_about_the_tokenizer_changes(gguf_glyph_dir, converted_dir):
    base = json.loads((converted_dir / "tokenizer.json").read_text(encoding="utf-8"))
    ours = json.loads((gguf_glyph_dir / "tokenizer.json").read_text(encoding="utf-8"))
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        assert ours[key] == base[key], key
    assert ours["model"]["merges"] == base["model"]["merges"]
    renamed = {filler(i): s for s, i in zip(SYMBOLS, GLYPH_IDS)}
    assert ours["model"]["vocab"] == {renamed.get(t, t): i for t, i in base["model"]["vocab"].items()}
    added = ours["added_tokens"]
    assert added[:-3] == base["added_tokens"]
    assert [(a["id"], a["content"], a["special"], a["normalized"]) for a in added[-3:]] == [
        (i, s, False, False) for s, i in zip(SYMBOLS, GLYPH_IDS)]


def test_glyph_free_text_encodes_as_the_ggufs_own_tokenizer(gguf_glyph_dir, reference):
    # GGUF records no normaliser, so transformers' GGUF tokenizer has none; Qwen's tokenizer
    # (and so the converted directory) reads text as NFC: compare on the text it normalised
    # (its own NFC: Python's unicodedata may know an older Unicode)
    tok = sources.load(gguf_glyph_dir)
    texts = samples.sample_corpus(3000, seed=20261129, avoid=SYMBOLS)
    nfc = [tok.normalizer.normalize_str(t) for t in texts]
    assert nfc != texts  # the corpus holds text that is not NFC
    ours = tok.encode_batch(texts, add_special_tokens=False)
    theirs = reference[0].backend_tokenizer.encode_batch(nfc, add_special_tokens=False)
    bad = [t for t, a, b in zip(texts, ours, theirs) if a.ids != b.ids]
    assert not bad, f"{len(bad)} of {len(texts)} differ; first: {bad[0]!r}"
    assert sum(len(e.ids) for e in ours) > 100_000  # the corpus really is a corpus


def test_glyphs_round_trip_and_auto_tokenizer_loads_the_result(gguf_glyph_dir):
    from transformers import AutoTokenizer

    tok = sources.load(gguf_glyph_dir)
    hf = AutoTokenizer.from_pretrained(str(gguf_glyph_dir))
    texts = samples.sample_corpus(300, seed=5, glyphs=SYMBOLS, glyph_rate=0.15)
    assert sum(t.count(s) for t in texts for s in SYMBOLS) > 300
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert hf.encode(text, add_special_tokens=False) == ids
        for sym, gid in zip(SYMBOLS, GLYPH_IDS):
            assert ids.count(gid) == text.count(sym)
        norm = tok.normalizer.normalize_str(text) if tok.normalizer else text
        assert tok.decode(ids, skip_special_tokens=True) == norm
        assert hf.decode(ids, skip_special_tokens=True) == norm


# ================================================================ training on it
def test_training_on_a_gguf_base_runs_and_serves(mini_project, tiny_gguf, converted_dir,
                                                 tmp_path):
    from glyph.serving.routing import GlyphModel
    from glyph.training.recipe import train
    from glyph.vocab import registry

    res = train(train_config(tmp_path / "run", tiny_gguf, steps=2, eval_every=2, save_every=2),
                log=lambda m: None, progress=False)
    run_tok = sources.load(res.out / "tokenizer")
    assert [run_tok.encode(s, add_special_tokens=False).ids for s in SYMBOLS] == [
        [i] for i in GLYPH_IDS]
    gm = GlyphModel.load(res.out, registry=registry.load())
    assert gm.model.get_input_embeddings().weight.shape[0] == EMBEDDING_ROWS  # no growth
    out = gm.generate(["⟁ stairs", "🫁 breath"], temperature=0, max_new_tokens=3)
    assert [g.triggers for g in out] == [["initiation"], ["body"]]
    assert all(isinstance(g.text, str) for g in out)


# ================================================================ bad files
SMALL_VOCAB = (["a", "b", "ab"], [1, 1, 1], ["a b"])


def _not_gguf(d: Path, tiny: Path) -> Path:
    import random

    p = d / "x.gguf"
    p.write_bytes(random.Random(0).randbytes(4096))
    return p


def _cut_in_data(d: Path, tiny: Path) -> Path:
    start, end = tensor_data_span(tiny)
    return truncated_copy(tiny, d / "cut-data.gguf", (start + end) // 2)


def _cut_in_header(d: Path, tiny: Path) -> Path:
    return truncated_copy(tiny, d / "cut-header.gguf", 100_000)  # inside the token list


def _foreign_arch(d: Path, tiny: Path) -> Path:
    return write_tiny_gguf(d / "foreign.gguf", arch="glyph-test-arch", vocabulary=SMALL_VOCAB)


def _damaged_header(d: Path, tiny: Path) -> Path:
    p = write_tiny_gguf(d / "damaged.gguf", vocabulary=SMALL_VOCAB)
    with p.open("r+b") as f:  # the version field, right after the magic
        f.seek(4)
        f.write((7).to_bytes(4, "little"))
    return p


def _missing(d: Path, tiny: Path) -> Path:
    return d / "missing.gguf"


BAD = {  # how to make it, what the one line must say
    "not gguf": (_not_gguf, "not a GGUF file"),
    "cut in its tensor data": (_cut_in_data, "truncated ("),
    "cut in its header": (_cut_in_header, "its GGUF header runs past the end of the file"),
    "damaged header": (_damaged_header, "header is damaged (GGUF version 7 is not supported"),
    "foreign architecture": (_foreign_arch, "'glyph-test-arch' cannot be loaded"),
    "missing": (_missing, "no such file"),
}


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """A GLYPH_HOME of this test alone, so "nothing cached" can be checked exactly."""
    home = tmp_path / "home"
    monkeypatch.setenv("GLYPH_HOME", str(home))
    return home


def _cached(home: Path) -> list[str]:
    d = home / "models"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_gguf_is_one_line_and_caches_nothing(case, tiny_gguf, fresh_home, tmp_path,
                                                    empty_registry):
    make, says = BAD[case]
    path = make(tmp_path, tiny_gguf)
    with pytest.raises(ModelError) as e:
        glyph_gguf.converted(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path.resolve()) in msg and says in msg, msg
    assert _cached(fresh_home) == []

    r = cli("tokenizer", "build", "--base", str(path), "--out", str(tmp_path / "tok"))
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert r.output.count("\n") == 1 and r.output.startswith("error: ") and says in r.output
    assert "Traceback" not in r.output
    assert _cached(fresh_home) == [] and not (tmp_path / "tok").exists()


def test_truncated_data_names_the_sizes(tiny_gguf, fresh_home, tmp_path):
    path = _cut_in_data(tmp_path, tiny_gguf)
    with pytest.raises(ModelError, match=rf"truncated \({path.stat().st_size:,} bytes, its "
                                         rf"tensors need {tiny_gguf.stat().st_size:,}\)"):
        glyph_gguf.inspect(path)


def test_training_refuses_a_bad_gguf_in_one_line(mini_project, tiny_gguf, fresh_home,
                                                 tmp_path):
    path = _cut_in_data(tmp_path, tiny_gguf)
    r = cli("train", "--base", str(path), "--out", str(tmp_path / "run"), "--steps", "1")
    assert r.exit_code == 1 and "truncated" in r.output and "Traceback" not in r.output, r.output
    assert _cached(fresh_home) == []


# ================================================================ a padded tokenizer directory
def G(symbol: str, id: int, name: str, active: bool = True) -> SimpleNamespace:
    return SimpleNamespace(symbol=symbol, id=id, name=name, active=active)


PADDED_GLYPHS = [G("⟁", 151669, "ascent"), G("🜂", 151670, "fire"), G("🫁", 151671, "breath"),
                 G("☿", 149053, "mercury")]


def _padded_copy(base_dir: Path, out: Path, *, real_at: int | None = None) -> Path:
    """``base_dir`` in the layout of Qwen2.5 converted from GGUF: added tokens up to 151664,
    each also a vocabulary entry (as transformers builds it from GGUF's one token list), and
    ``[PAD…]`` fillers in the BPE vocabulary from 151665 to 151935 — and, if ``real_at``, a
    real added token at that id instead of its filler."""
    shutil.copytree(base_dir, out)
    data = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    data["added_tokens"] = [a for a in data["added_tokens"] if a["id"] < FIRST_FILLER]
    if real_at is not None:
        data["added_tokens"].append({"id": real_at, "content": "<|extra_0|>", "single_word": False,
                                     "lstrip": False, "rstrip": False, "normalized": False,
                                     "special": True})
    vocab = data["model"]["vocab"]
    vocab.update({filler(i): i for i in FILLERS if i != real_at})
    vocab.update({a["content"]: a["id"] for a in data["added_tokens"]})
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    cfg = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["added_tokens_decoder"] = {k: v for k, v in cfg["added_tokens_decoder"].items()
                                   if int(k) < FIRST_FILLER}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False),
                                               encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def rebuilt_base(glyph_home) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLYPH_HOME", str(glyph_home))
        return sources.base_tokenizer_dir()


@pytest.fixture(scope="session")
def padded_base(rebuilt_base, tmp_path_factory) -> Path:
    return _padded_copy(rebuilt_base, tmp_path_factory.mktemp("padded") / "qwen25-padded")


def test_filler_ids_are_exactly_the_padding(padded_base, rebuilt_base):
    padded = sources.load(padded_base)
    assert padded.get_vocab_size(with_added_tokens=True) == EMBEDDING_ROWS
    assert sources.filler_ids(padded) == {i: filler(i) for i in FILLERS}
    assert sources.filler_ids(sources.load(rebuilt_base)) == {}  # Qwen3's own: no padding


def test_glyphs_take_the_fillers_of_a_padded_directory(padded_base, tmp_path):
    out = tmp_path / "tok"
    report = tk.build_glyph_tokenizer(PADDED_GLYPHS, out, base=str(padded_base))
    assert [(r.symbol, r.id, r.kind) for r in report.rows] == [
        ("⟁", 151669, "added"), ("🜂", 151670, "added"), ("🫁", 151671, "added"),
        ("☿", 149053, "claimed")]
    assert report.reserved == []
    tok, base = sources.load(out), sources.load(padded_base)
    for g in PADDED_GLYPHS:
        assert tok.encode(g.symbol, add_special_tokens=False).ids == [g.id]
    taken = {g.id for g in PADDED_GLYPHS}
    assert all(tok.id_to_token(i) == filler(i) for i in FILLERS if i not in taken)
    assert tok.get_vocab_size(with_added_tokens=True) == EMBEDDING_ROWS
    texts = samples.sample_corpus(1000, seed=3, avoid=[g.symbol for g in PADDED_GLYPHS])
    assert [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)] == [
        e.ids for e in base.encode_batch(texts, add_special_tokens=False)]


def test_an_id_held_by_a_real_added_token_is_still_taken(rebuilt_base, tmp_path):
    base = _padded_copy(rebuilt_base, tmp_path / "base", real_at=151670)
    assert 151670 not in sources.filler_ids(sources.load(base))
    with pytest.raises(TokenizerError, match=r"🜂 'fire' has id 151670, but the base tokenizer "
                                             r"already has 151936 tokens .* so that id is taken"):
        tk.build_glyph_tokenizer(PADDED_GLYPHS, tmp_path / "tok", base=str(base))
    assert not (tmp_path / "tok").exists()
