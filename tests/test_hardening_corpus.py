"""Issue 11 (hardening), the scene corpus side: textual append, JSONL/CSV import, scene values."""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from glyph.corpus import edit, scenes
from glyph.errors import SceneError
from glyph.vocab import registry

from .conftest import STARTER_SCENES
from .support.cli import cli, one_line_error


@pytest.fixture
def corpus(starter_registry) -> Path:
    d = Path(os.environ["GLYPH_SCENES"])
    shutil.copytree(STARTER_SCENES, d)
    return d


def snapshot(d: Path) -> dict[str, bytes]:
    """Every file of the corpus (the lock file glyph keeps beside it aside)."""
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())
            if p.is_file() and not p.name.endswith(".lock")}


def is_one_insertion(old: str, new: str) -> bool:
    """``new`` is ``old`` with one piece of text inserted somewhere."""
    return any(new.startswith(old[:i]) and new.endswith(old[i:]) and len(new) > len(old)
               for i in range(len(old) + 1))


ADD = ["scenes", "add", "--glyph", "⟁", "--register", "body", "--level", "micro", "--text"]


# ---------------------------------------------------------------- scenes add appends as text
def test_add_appends_textually_keeping_comments_and_formatting(corpus):
    """A one-scene add used to rewrite the whole file (534 changed lines, comments lost)."""
    f = corpus / "ascent.yaml"
    old = "# hand-written notes stay\n" + f.read_text(encoding="utf-8").replace(
        "- id: Δ102\n", "# the meso one\n- id: Δ102\n", 1)
    f.write_text(old, encoding="utf-8")
    r = cli(*ADD, "Heat in the soles, a step up.\nThen the rung.")
    assert r.exit_code == 0, r.output
    new = f.read_text(encoding="utf-8")
    assert new.startswith(old)
    added = new[len(old):]
    assert added.startswith("- id: Δ") and "text: |-\n    Heat in the soles" in added
    assert len(added.splitlines()) == 10
    assert scenes.parse_file(f, registry.load())[-1].text.endswith("Then the rung.")


def test_add_inserts_inside_the_list_before_what_follows_it(corpus):
    f = corpus / "ascent.yaml"
    text = f.read_text(encoding="utf-8")
    head, rest = text.split("scenes:\n", 1)
    old = head.replace("glyph: ascent\n", "") + "scenes:\n" + rest + "\n# trailing notes\n" \
        + "glyph: ascent   # moved below the list\n"
    f.write_text(old, encoding="utf-8")
    assert cli(*ADD, "Step.").exit_code == 0
    new = f.read_text(encoding="utf-8")
    ops = [op for op in difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(),
                                               autojunk=False).get_opcodes() if op[0] != "equal"]
    assert [op[0] for op in ops] == ["insert"]  # nothing of the old file changed or moved
    assert new.endswith("\n# trailing notes\nglyph: ascent   # moved below the list\n")


@pytest.mark.parametrize("old", [
    "version: 1\r\nscenes: [{id: F1, glyphs: [⟁], register: body, level: micro, tier: core, "
    "lang: en, text: hot}]   # flow list\r\n",
    "version: 1\nscenes: []\n",
    "version: 1\nscenes:\n  - id: 'X1'     # indented list, quoted id\n    glyphs: [⟁]\n"
    "    register: poetry\n    level: micro\n    tier: core\n    lang: en\n    text: no newline",
])
def test_add_appends_to_other_layouts(empty_registry, old):
    registry.add("⟁", name="ascent", meaning="m")
    d = Path(os.environ["GLYPH_SCENES"])
    d.mkdir()
    (d / "ascent.yaml").write_bytes(old.encode("utf-8"))
    assert cli(*ADD, "δ two: [lines]\nand more", "--id", "N1").exit_code == 0
    new = (d / "ascent.yaml").read_bytes().decode("utf-8")
    assert is_one_insertion(old, new)  # not one old byte changed
    got = scenes.load_corpus(registry.load()).get("N1")
    assert got.text == "δ two: [lines]\nand more" and got.register == "body"


def test_add_refuses_a_layout_it_cannot_append_to_and_writes_nothing(empty_registry):
    registry.add("⟁", name="ascent", meaning="m")
    d = Path(os.environ["GLYPH_SCENES"])
    d.mkdir()
    odd = ("version: 1\nscenes:\n-\n  id: X1\n  glyphs: [⟁]\n  register: poetry\n"
           "  level: micro\n  tier: core\n  lang: en\n  text: t\n")
    (d / "ascent.yaml").write_text(odd, encoding="utf-8")
    one_line_error(cli(*ADD, "x"), "cannot append a scene as text", "nothing was written")
    assert (d / "ascent.yaml").read_text(encoding="utf-8") == odd


def test_add_reads_stdin_as_utf8_or_refuses(corpus):
    before = snapshot(corpus)
    one_line_error(cli(*ADD, "-", input=b"abc\xff\n"), "stdin:1: not UTF-8 text (byte 0xFF")
    assert snapshot(corpus) == before
    assert cli(*ADD, "-", input="Жар в ступнях.\n".encode()).exit_code == 0


# ---------------------------------------------------------------- scene values
@pytest.mark.parametrize("args,reason", [
    (["--id", "\x1b[31mred"], "scene id '\\x1b[31mred' must be"),
    (["--id", "a\u202eb"], "scene id"),
    (["--id", "x" * 41], "scene id"),
])
def test_scene_ids_must_be_visible(corpus, args, reason):
    before = snapshot(corpus)
    one_line_error(cli(*ADD, "t", *args), reason)
    assert snapshot(corpus) == before


@pytest.mark.parametrize("text,reason", [
    ("red \x1b[31m alert", "U+001B <control> on its line 1"),
    ("clear\n\x1b[2J", "on its line 2"),
    ("tro\u202ejan", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("lone \udcff", "a lone surrogate"),
    ("x" * 10_000_000, "is 10,000,000 characters, over the limit of 20,000"),
])
def test_scene_texts_refuse_controls_surrogates_and_megabytes(corpus, text, reason):
    before = snapshot(corpus)
    r = cli(*ADD, text)
    one_line_error(r, reason)
    assert len(r.output) < 400 and "\x1b" not in r.output
    assert snapshot(corpus) == before


def test_right_to_left_marks_and_crlf_are_fine_in_scene_text(corpus):
    r = cli(*ADD, "שלום\u200f עולם\r\nline two", "--id", "RTL1", "--lang", "he")
    assert r.exit_code == 0, r.output
    assert scenes.load_corpus(registry.load()).get("RTL1").text == "שלום\u200f עולם\nline two"


@pytest.mark.parametrize("value,reason", [
    ("true", "scene id True must be text"),
    (".nan", "scene id nan must be text"),
    ("41", "scene id 41 must be text"),
    ("[a, b]", "scene id ['a', 'b'] must be text"),
])
def test_scene_ids_that_are_not_text_are_refused_not_stringified(corpus, value, reason):
    """`id: true` / `id: NaN` used to become the scenes "True" / "nan"."""
    f = corpus / "ascent.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("- id: Δ101", f"- id: {value}", 1),
                 encoding="utf-8")
    with pytest.raises(SceneError, match=re.escape(f"ascent.yaml:4: {reason}")):
        scenes.load_corpus(registry.load())
    one_line_error(cli("scenes", "list"), "ascent.yaml:4:")


def test_hand_written_escape_in_a_scene_is_refused_with_its_line(corpus):
    f = corpus / "ascent.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace(
        "The floor goes hot", "The floor \\e[2J goes hot", 1).replace("text: |-\n    The floor",
                                                                      "text: \"The floor", 1)
                 .replace("your hand.\n- id: Δ102", "your hand.\"\n- id: Δ102", 1),
                 encoding="utf-8")
    r = cli("scenes", "list")
    one_line_error(r, "ascent.yaml:4: text contains U+001B")
    assert "\x1b" not in r.output


@pytest.mark.parametrize("value", ['"en\\n"', "[en]", "EN"])
def test_lang_must_be_exactly_two_letters(corpus, value):
    f = corpus / "ascent.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("lang: en", f"lang: {value}", 1),
                 encoding="utf-8")
    one_line_error(cli("scenes", "list"), "ascent.yaml:4: lang")


def test_scene_file_past_its_size_limit_is_refused(corpus, monkeypatch):
    import glyph.corpus.scenes as sc

    monkeypatch.setattr(sc, "MAX_SCENE_FILE_BYTES", 50_000)
    one_line_error(cli("scenes", "list"), "over the 50,000 bytes limit for a scene file")


def test_add_refuses_to_grow_a_scene_file_past_its_limit(corpus, monkeypatch):
    size = (corpus / "ascent.yaml").stat().st_size
    monkeypatch.setattr(edit, "MAX_SCENE_FILE_BYTES", size + 50)
    monkeypatch.setattr(scenes, "MAX_SCENE_FILE_BYTES", size + 50)
    before = snapshot(corpus)
    one_line_error(cli(*ADD, "a longer text than fifty bytes, to cross the line"),
                   f"over the {size + 50:,} bytes limit of a scene file")
    assert snapshot(corpus) == before


# ---------------------------------------------------------------- import: CSV and JSONL
ROW = {"glyphs": "⟁", "register": "body", "level": "micro", "tier": "core", "lang": "en"}


def test_csv_unquoted_comma_is_an_error_not_a_cut_text(corpus, tmp_path):
    """`text` used to end at the comma and the rest of the line was silently dropped."""
    f = tmp_path / "more.csv"
    f.write_text("id,glyphs,register,level,tier,lang,text\n"
                 "C1,⟁,body,micro,core,en,\"quoted, fine\"\n"
                 "C2,⟁,body,micro,core,en,heat, then a step\n", encoding="utf-8")
    before = snapshot(corpus)
    one_line_error(cli("scenes", "import", str(f)),
                   "more.csv:3: 8 fields but the header names 7", "double quotes")
    assert snapshot(corpus) == before


def test_csv_with_a_bom_imports(corpus, tmp_path):
    """A UTF-8 BOM used to make the first column `\\ufeffid`: unknown key."""
    f = tmp_path / "bom.csv"
    f.write_bytes("\ufeffid,glyphs,register,level,tier,lang,text\n"
                  "B1,⟁,body,micro,core,en,\"multi\nline, with comma\"\n".encode("utf-8"))
    r = cli("scenes", "import", str(f))
    assert r.exit_code == 0, r.output
    assert scenes.load_corpus(registry.load()).get("B1").text == "multi\nline, with comma"


@pytest.mark.parametrize("content,reason", [
    ("id,id,text\nx,y,z\n", "more.csv:1: column(s) 'id' appear twice"),
    ("id,glyphs,register,level,tier,lang,text\nC1,⟁,body,micro,core,en,\"a\0b\"\n",
     "more.csv:2: text contains U+0000"),
    ("id,glyphs,register,level,tier,lang,text\nC1,⟁,body,micro,core,en,\"" + "x" * 200_000
     + "\"\n", "more.csv:2: not valid CSV (field larger than field limit"),
    ("id,glyphs,register,level,tier,lang,text\nC1,⟁,body,micro,core\n",
     "more.csv:2: 5 fields but the header names 7"),
])
def test_bad_csv_is_one_line_with_its_line(corpus, tmp_path, content, reason):
    f = tmp_path / "more.csv"
    f.write_text(content, encoding="utf-8")
    one_line_error(cli("scenes", "import", str(f)), reason)


def test_jsonl_with_a_raw_line_separator_inside_a_string_imports(corpus, tmp_path):
    """Valid JSONL was rejected: the file was split with str.splitlines (at U+2028)."""
    f = tmp_path / "more.jsonl"
    rows = [{**ROW, "id": "J1", "text": "first\u2028still first"},
            {**ROW, "id": "J2", "text": "next\u2029paragraph"}]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                 encoding="utf-8")
    r = cli("scenes", "import", str(f))
    assert r.exit_code == 0, r.output
    c = scenes.load_corpus(registry.load())
    assert c.get("J1").text == "first\u2028still first"


@pytest.mark.parametrize("line,reason", [
    ('{"id": "J1", "glyphs": "⟁", "register": "body", "level": "micro", "tier": "core", '
     '"lang": "en", "text": "\\ud800"}', "more.jsonl:2: text contains U+D800"),
    ('{"id": NaN}', "more.jsonl:2: NaN is not a JSON number"),
    ('{"id": true, "glyphs": "⟁", "register": "body", "level": "micro", "tier": "core", '
     '"lang": "en", "text": "t"}', "more.jsonl:2: scene id True must be text"),
    ('{"id": ' + "9" * 5000 + "}", "more.jsonl:2: an integer of 5000 digits"),
    ("[" * 100_000 + "]" * 100_000, "more.jsonl:2: nested too deeply"),
    ('{"id": "J1", "glyphs": "⟁", "register": "body", "level": "micro", "tier": "core", '
     '"lang": "en", "text": ["a", "list"]}', "more.jsonl:2: text must be text"),
    ('{"id": "J1", "glyphs": [["⟁"]], "register": "body", "level": "micro", "tier": "core", '
     '"lang": "en", "text": "t"}', "more.jsonl:2: glyphs must be a list"),
    ('{"id": "J1", "glyphs": "⟁", "register": ["body"], "level": "micro", "tier": "core", '
     '"lang": "en", "text": "t"}', "more.jsonl:2: unknown register ['body']"),
    ('"just a string"', "more.jsonl:2: each line must be a JSON object"),
    ('{"id": "J1"', "more.jsonl:2: not valid JSON"),
])
def test_bad_jsonl_is_one_line_with_its_line_and_writes_nothing(corpus, tmp_path, line, reason):
    f = tmp_path / "more.jsonl"
    f.write_text(json.dumps({**ROW, "id": "J0", "text": "fine"}) + "\n" + line + "\n",
                 encoding="utf-8")
    before = snapshot(corpus)
    r = cli("scenes", "import", str(f))
    one_line_error(r, reason)
    assert len(r.output) < 600
    assert snapshot(corpus) == before


def test_import_of_a_non_utf8_file_names_the_line(corpus, tmp_path):
    f = tmp_path / "more.jsonl"
    f.write_bytes(b'{"id": "a"}\n{"id": "b\xff"}\n')
    one_line_error(cli("scenes", "import", str(f)), "more.jsonl:2: not UTF-8 text (byte 0xFF")
