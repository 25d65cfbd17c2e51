"""Property-based fuzzing of every reader glyph has: arbitrary bytes, mutated YAML, JSON, CSV.

For every input: a clean :class:`GlyphError` or a success — never another exception, never a
hang (bounded), never a changed file on error; and where a reader succeeds, what it read is
what was written (no silent loss). Examples per test are stated in ``fuzz_settings(...)``
(scaled by ``GLYPH_FUZZ_EXAMPLES``); figures of a long run: ``benchmarks/fuzz.md``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
import unicodedata2 as ud
from hypothesis import event, given
from hypothesis import strategies as st

from glyph.corpus import edit, scenes
from glyph.limits import MAX_SYMBOL_CODEPOINTS
from glyph.run.manifest import Manifest
from glyph.vocab import registry
from glyph.vocab.unicode import validate_line, validate_scene_id, validate_symbol, validate_text

from .conftest import STARTER_REGISTRY, STARTER_SCENES
from .support.fuzzing import (JSONISH, PLAIN_TEXT, TRICKY_TEXT, duplicate_keys, fuzz_settings,
                              mutated_yaml, outcome, text_or_bytes, write_tally)

STARTER_TEXT = STARTER_REGISTRY.read_text(encoding="utf-8")
SCENE_TEXT = "\n".join((STARTER_SCENES / "ascent.yaml").read_text(encoding="utf-8")
                       .splitlines()[:40]) + "\n"


@pytest.fixture(scope="module", autouse=True)
def tally_report():
    yield
    if os.environ.get("GLYPH_FUZZ_REPORT"):
        write_tally(os.environ["GLYPH_FUZZ_REPORT"])


# ---------------------------------------------------------------- the registry
@fuzz_settings(300)
@given(content=text_or_bytes(st.one_of(mutated_yaml(STARTER_TEXT), mutated_yaml(STARTER_TEXT, 12),
                                       TRICKY_TEXT)))
def test_registry_file(tmp_path, content):
    p = tmp_path / "fuzz_registry.yaml"
    p.write_bytes(content)
    status, _ = outcome("registry: load", lambda: registry.load(p))
    event(f"load: {status}")
    if duplicate_keys(content.decode("utf-8", "replace")):
        assert status == "error"  # never read half of a file with a key given twice
    status_add, _ = outcome("registry: add", lambda: registry.add(
        "⟡", name="fuzzed", meaning="a fuzzed glyph", path=p))
    if status == "error":
        assert status_add == "error" and p.read_bytes() == content  # never overwritten
    if status_add == "ok":
        assert registry.load(p).get("⟡").name == "fuzzed"
        for g in registry.load(p).glyphs:  # nothing lost: every old glyph is still there
            assert g.name == "fuzzed" or g.symbol in content.decode("utf-8-sig")


@fuzz_settings(200)
@given(field=st.sampled_from(["symbol", "id", "name", "meaning", "archetype", "registers",
                              "scenes", "trigger", "status", "unicode_exceptions", "extra"]),
       value=st.one_of(JSONISH, TRICKY_TEXT))
def test_registry_glyph_field_of_any_type(field, value):
    import yaml

    data = yaml.safe_load(STARTER_TEXT)
    data["glyphs"][1][field] = value
    text = yaml.safe_dump(data, allow_unicode=True)
    outcome("registry: typed fields", lambda: registry.parse(text, Path("fuzz.yaml")))


# ---------------------------------------------------------------- the scene corpus
@pytest.fixture
def corpus_dir(tmp_path, starter_registry) -> Path:
    d = Path(os.environ["GLYPH_SCENES"])
    d.mkdir()
    return d


def one_insertion(old: str, new: str) -> bool:
    return any(new.startswith(old[:i]) and new.endswith(old[i:]) for i in range(len(old) + 1))


@fuzz_settings(250)
@given(content=text_or_bytes(st.one_of(mutated_yaml(SCENE_TEXT), TRICKY_TEXT)))
def test_scene_file_and_textual_append(corpus_dir, content):
    reg = registry.load()
    f = corpus_dir / "ascent.yaml"
    f.write_bytes(content)
    status, old_scenes = outcome("scenes: parse file", lambda: scenes.parse_file(f, reg))
    if duplicate_keys(content.decode("utf-8", "replace")):
        assert status == "error"
    status_add, new = outcome("scenes: add (append)", lambda: edit.add(
        reg, glyphs=["⟁"], register="body", level="micro", tier="core", lang="en",
        text="fuzzed scene", scene_id="FZ1", directory=corpus_dir))
    event(f"parse {status}, add {status_add}")
    if status_add == "error":
        assert f.read_bytes() == content
        return
    after = f.read_bytes().decode("utf-8")
    assert scenes.parse_file(f, reg) == old_scenes + [new]  # the old scenes, then the new one
    assert one_insertion(content.decode("utf-8-sig"), after)  # not one old byte changed


SCENE = {"id": "Δ1", "glyphs": ["⟁"], "register": "body", "level": "micro", "tier": "core",
         "lang": "en", "text": "heat in the soles"}


@fuzz_settings(200)
@given(key=st.sampled_from([*SCENE, "split", "extra"]), drop=st.booleans(),
       value=st.one_of(JSONISH, TRICKY_TEXT, st.sampled_from(["⟁", "body", "micro", "core", "en",
                                                             "Δ1", "heldout", ["⟁", "🜂"]])))
def test_scene_of_any_shape(starter_registry, key, drop, value):
    reg = registry.load()
    item = dict(SCENE)
    if drop:
        item.pop(key, None)
    else:
        item[key] = value
    status, s = outcome("scenes: typed fields", lambda: scenes.parse_scene(item, "f:1", reg))
    if status == "ok":
        assert isinstance(s.id, str) and isinstance(s.text, str) and s.text == s.text.strip()
        validate_text("text", s.text)


# ---------------------------------------------------------------- JSONL and CSV import
ROW_KEYS = ["id", "glyphs", "register", "level", "tier", "lang", "text"]
ROW_VALUES = {"glyphs": ["⟁", "🜂 ⟁", "⟁,🜂"], "register": ["body", "poetry"],
              "level": ["micro", "macro"], "tier": ["core", "orbit"], "lang": ["en", "ru"]}
SPOILED = {"glyphs": ["", "x", "⟁⟁"], "register": ["dance", ""], "level": ["x", "MICRO"],
           "lang": ["e", "EN"], "id": ["", "a b", "I0"]}


@st.composite
def import_rows(draw) -> list[dict]:
    """1–4 rows, valid but for at most one spoiled field (half the time none)."""
    rows = []
    for n in range(draw(st.integers(1, 4))):
        row = {k: draw(st.sampled_from(v)) for k, v in ROW_VALUES.items()}
        row["id"] = f"I{n}"
        row["text"] = draw(PLAIN_TEXT | TRICKY_TEXT.map(
            lambda t: "quoted, \"text\"\nwith\u2028breaks " + t))
        rows.append(row)
    spoil = draw(st.sampled_from([None, None, None, *SPOILED, "text"]))
    if spoil is not None:
        row = draw(st.sampled_from(rows))
        row[spoil] = draw(TRICKY_TEXT if spoil == "text" else st.sampled_from(SPOILED[spoil]))
    return rows


def as_csv(rows: list[dict], quoting: int) -> str:
    out = io.StringIO()
    w = csv.writer(out, quoting=quoting, lineterminator="\n")
    w.writerow(ROW_KEYS)
    for r in rows:
        w.writerow([r[k] for k in ROW_KEYS])
    return out.getvalue()


@fuzz_settings(300)
@given(rows=import_rows(), kind=st.sampled_from(["jsonl", "jsonl-ascii", "csv", "csv-all",
                                                  "csv-raw", "bytes"]),
       junk=st.binary(max_size=200))
def test_import_jsonl_and_csv(corpus_dir, rows, kind, junk):
    reg = registry.load()
    src = corpus_dir.parent / f"fuzz.{'csv' if kind.startswith('csv') else 'jsonl'}"
    if kind.startswith("jsonl"):  # JSON holds the glyphs as a list
        text = "\n".join(json.dumps({**r, "glyphs": r["glyphs"].replace(",", " ").split()},
                                    ensure_ascii=kind.endswith("ascii")) for r in rows)
        src.write_bytes(text.encode("utf-8", "surrogatepass"))
    elif kind == "csv-raw":  # written by hand, no quoting: commas and quotes break rows
        text = ",".join(ROW_KEYS) + "\n" + "\n".join(",".join(r[k] for k in ROW_KEYS)
                                                      for r in rows)
        src.write_bytes(text.encode("utf-8", "surrogatepass"))
    elif kind.startswith("csv"):
        text = as_csv(rows, csv.QUOTE_ALL if kind == "csv-all" else csv.QUOTE_MINIMAL)
        src.write_bytes(text.encode("utf-8", "surrogatepass"))
    else:
        src.write_bytes(junk)
    status, new = outcome(f"import: {kind.split('-')[0]}",
                          lambda: edit.import_file(reg, src, directory=corpus_dir))
    event(f"{kind}: {status}")
    written = sorted(p.name for p in corpus_dir.glob("*.yaml"))
    if status == "error":
        assert written == []
        return
    assert written == ["fuzz.yaml"]
    if kind != "csv-raw" and kind != "bytes":  # written properly: every text comes back whole
        for row, s in zip(rows, new):
            assert s.text == ud.normalize("NFC", validate_text("text", row["text"]))
    for p in corpus_dir.glob("*.yaml"):
        p.unlink()


# ---------------------------------------------------------------- run directories
MANIFEST = {
    "version": 1, "glyphs": [{"symbol": "⟁", "id": 151669, "name": "ascent",
                              "trigger": "initiation"}],
    "triggers": {"initiation": "adapters/initiation"},
    "base": {"name": "b", "path": "/nonexistent/base", "fingerprint": "0" * 16, "tied": True,
             "rows": 151936, "original_rows": 151936, "hidden": 32},
    "tokenizer": "tokenizer", "registers": ["poetry"], "metrics": {"loss": 1.0},
}
PATHS = [("version",), ("glyphs",), ("glyphs", 0), ("glyphs", 0, "id"), ("glyphs", 0, "symbol"),
         ("triggers",), ("triggers", "initiation"), ("base",), ("base", "path"),
         ("base", "rows"), ("base", "tied"), ("base", "family"), ("tokenizer",),
         ("registers",), ("metrics",)]


@fuzz_settings(250)
@given(where=st.sampled_from(PATHS), value=st.one_of(JSONISH, TRICKY_TEXT),
       raw=st.none() | text_or_bytes(TRICKY_TEXT))
def test_manifest(tmp_path, where, value, raw):
    from glyph.run import Run

    data = json.loads(json.dumps(MANIFEST))
    node = data
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "manifest.json").write_bytes(raw if raw is not None else json.dumps(data).encode())
    status, m = outcome("run: manifest", lambda: Run(run).manifest())
    if status == "ok":
        assert isinstance(m, Manifest)
        outcome("run: base check", lambda: Run(run).base_dir())


@fuzz_settings(150)
@given(content=text_or_bytes(st.one_of(TRICKY_TEXT, st.lists(JSONISH, max_size=4).map(
    lambda xs: "\n".join(json.dumps(x) for x in xs)))))
def test_batch_prompts_and_loss_log(tmp_path, content):
    from glyph.run import Run
    from glyph.serving.expand import read_batch

    f = tmp_path / "prompts.txt"
    f.write_bytes(content)
    outcome("expand: --batch file", lambda: read_batch(f))
    (tmp_path / "loss.jsonl").write_bytes(content)
    outcome("run: loss log", lambda: Run(tmp_path).loss_log())


# ---------------------------------------------------------------- the Unicode rules
SYMBOLISH = st.text(alphabet=st.sampled_from("⟁🜂☿👁🗨🏳🌈\u200d\ufe0f\ufe0e\u034f\u180b\u0301"
                                             "\u20dd\U0001f3fb\u2800\u200b\ufe00") | st.characters(),
                    min_size=0, max_size=20)


@fuzz_settings(400)
@given(text=st.one_of(SYMBOLISH, TRICKY_TEXT))
def test_symbol_rules_are_total_and_idempotent(text):
    status, v = outcome("unicode: symbol", lambda: validate_symbol(text))
    if status == "ok":
        s = v.symbol
        assert 1 <= len(s) <= MAX_SYMBOL_CODEPOINTS
        assert validate_symbol(s).symbol == s  # what glyph stores, glyph reads back the same
    for kind, check in (("unicode: meaning line", lambda: validate_line("meaning", text)),
                        ("unicode: scene text", lambda: validate_text("text", text)),
                        ("unicode: scene id", lambda: validate_scene_id(text))):
        status, got = outcome(kind, check)
        if status == "ok":
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in got)
            assert all(ud.category(c) != "Cc" or c in "\n\t" for c in got)
