"""Registry: add / list / show / remove / validate, atomicity, locking, corruption, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from glyph.vocab import registry
from glyph.cli import main
from glyph.errors import NotFound, RegistryCorrupt, RegistryError

from .test_unicode import HOSTILE


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---------------------------------------------------------------- the library
def test_add_assigns_sequential_ids_and_roundtrips(empty_registry):
    a = registry.add("⟁", name="ascent", meaning="(heat + fear + emptiness) → a step up",
                     archetype="initiation", trigger="initiation", registers=["poetry", "logic"])
    b = registry.add("🜂", name="fire", meaning="alchemical fire", trigger="initiation")
    assert (a.glyph.id, b.glyph.id) == (151669, 151670)
    reg = registry.load()
    assert reg.get("⟁") == a.glyph and reg.get("fire") == b.glyph
    assert reg.get("ascent").registers == ("poetry", "logic")
    assert b.glyph.registers == tuple(registry.DEFAULT_REGISTERS)  # default: all registers
    assert reg.next_id == 151671


def test_symbol_already_one_qwen_token_claims_its_id_and_says_so(empty_registry):
    res = registry.add("☿", name="mercury", meaning="the messenger")
    assert res.glyph.id == 149053 and res.glyph.kind == "claimed"
    assert any("already one Qwen token (id 149053)" in n for n in res.notes)
    assert registry.load().next_id == 151669  # no new id consumed


def test_presentation_selector_is_not_identity(empty_registry):
    res = registry.add("🜂\ufe0f", name="fire", meaning="fire")
    assert res.glyph.symbol == "🜂"
    assert registry.load().get("🜂\ufe0f").name == "fire"


def test_remove_retires_and_never_reuses_the_id(empty_registry):
    registry.add("⟁", name="ascent", meaning="m")
    gone = registry.remove("⟁")
    assert gone.status == "retired" and gone.id == 151669
    new = registry.add("🜂", name="fire", meaning="m")
    assert new.glyph.id == 151670
    with pytest.raises(RegistryError, match="retired"):
        registry.add("⟁", name="ascent2", meaning="m")
    with pytest.raises(RegistryError, match="already retired"):
        registry.remove("ascent")


def test_duplicates_are_refused_with_the_fix(empty_registry):
    registry.add("⟁", name="ascent", meaning="m")
    with pytest.raises(RegistryError, match=r"⟁ is already registered as 'ascent'.*glyph remove"):
        registry.add("⟁", name="other", meaning="m")
    with pytest.raises(RegistryError, match="name 'ascent' is already used"):
        registry.add("🜂", name="ascent", meaning="m")
    with pytest.raises(RegistryError, match="unknown register 'dance'"):
        registry.add("🜂", name="fire", meaning="m", registers=["dance"])


def test_unknown_glyph_lookup():
    with pytest.raises(RegistryError):
        registry.load()  # no file yet
    registry.init(Path(os.environ["GLYPH_REGISTRY"]))
    with pytest.raises(NotFound, match="glyph list"):
        registry.load().get("nope")


def test_starter_registry_is_valid_and_meets_the_brief(starter_registry):
    reg = registry.load()
    assert len(reg.active()) >= 12
    assert reg.get("⟁").trigger == "initiation" and reg.get("🜂").trigger == "initiation"
    assert reg.get("🫁").trigger == "body"
    assert {"poetry", "logic", "interface", "body"} <= set(reg.registers)
    assert all(len(g.registers) >= 4 for g in reg.active())
    assert len({g.id for g in reg.glyphs}) == len(reg.glyphs)


# ---------------------------------------------------------------- corruption and validation
CORRUPT = [
    ("version: 1\nglyphs: [\n", 3, "not valid YAML"),
    ("version: 1\nnext_id: 151669\n  bad: indent\n", 3, "not valid YAML"),
    ("version: 2\nglyphs: []\n", 1, "version 2 is not supported"),
    ("version: 1\nglyphs:\n- symbol: ⟁\n  id: 151669\n  name: a\n  meaning: m\n  trigger: t\n"
     "  status: active\n- symbol: ⟁\n  id: 151670\n  name: b\n  meaning: m\n  trigger: t\n"
     "  status: active\n", 9, "symbol '⟁' is also used at line 3"),
    ("version: 1\nglyphs:\n- symbol: A\n  id: 151669\n  name: a\n  meaning: m\n  trigger: t\n"
     "  status: active\n", 3, "ASCII"),
    ("version: 1\nglyphs:\n- symbol: ⟁\n  id: 151650\n  name: a\n  meaning: m\n  trigger: t\n"
     "  status: active\n", 3, "Qwen3's added tokens"),
    ("version: 1\nglyphs:\n- symbol: ⟁\n  id: 5\n  name: a\n  meaning: m\n  trigger: t\n"
     "  status: active\n", 3, "is not Qwen token 5"),
    ("version: 1\nglyphs:\n- symbol: ⟁\n  id: 151669\n  name: ../x\n  meaning: m\n  trigger: t\n"
     "  status: active\n", 3, "not a slug"),
    ("version: 1\nnext_id: 151669\nglyphs:\n- symbol: ⟁\n  id: 151669\n  name: a\n  meaning: m\n"
     "  trigger: t\n  status: active\n", 1, "next_id 151669 is not above"),
    ("version: 1\nglyphs:\n- symbol: ⟁\n  id: 151669\n  name: a\n  meaning: m\n  trigger: t\n"
     "  status: maybe\n", 3, "status 'maybe'"),
    ("version: 1\nglyphs:\n- symbol: ⟁\n  idd: 151669\n", 3, "unknown glyph key"),
    ("- just\n- a list\n", 1, "expected a mapping"),
    ("version: 1\nglyphs:\n- !!python/object:os.system {}\n", 3, "not valid YAML"),
]


@pytest.mark.parametrize("text,line,reason", CORRUPT)
def test_corrupt_registry_reports_file_line_and_is_never_overwritten(tmp_path, text, line, reason):
    p = Path(os.environ["GLYPH_REGISTRY"])
    p.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryCorrupt) as e:
        registry.load()
    assert f"{p}:{line}:" in str(e.value) and reason in str(e.value)
    r = run("add", "🜂", "--name", "fire", "--meaning", "m")
    assert r.exit_code == 1 and f"{p}:{line}:" in r.output
    assert p.read_text(encoding="utf-8") == text


# ---------------------------------------------------------------- the CLI
def test_cli_add_list_show_remove_validate(empty_registry):
    r = run("add", "⟁", "--name", "ascent", "--meaning", "(heat + fear + emptiness) → a step up",
            "--archetype", "initiation", "--trigger", "initiation", "--register", "poetry")
    assert r.exit_code == 0, r.output
    assert "added ⟁ 'ascent' id 151669" in r.output
    r = run("add", "☿", "--name", "mercury", "--meaning", "messenger")
    assert r.exit_code == 0 and "already one Qwen token (id 149053)" in r.output
    listed = json.loads(run("list", "--json").output)
    assert [g["symbol"] for g in listed] == ["⟁", "☿"]
    assert listed[0]["codepoints"] == "U+27C1 WHITE TRIANGLE CONTAINING SMALL WHITE TRIANGLE"
    shown = json.loads(run("show", "ascent", "--json").output)
    assert shown["id"] == 151669 and shown["registers"] == ["poetry"]
    assert "151669" in run("show", "⟁").output
    assert run("remove", "⟁").exit_code == 0
    assert [g["symbol"] for g in json.loads(run("list", "--json").output)] == ["☿"]
    assert len(json.loads(run("list", "--json", "--all").output)) == 2
    r = run("validate")
    assert r.exit_code == 0 and "1 active glyphs, 1 retired" in r.output


def test_cli_unknown_glyph_is_one_line_and_nonzero(empty_registry):
    r = run("show", "⟡")
    assert r.exit_code == 1 and r.output.count("\n") == 1 and r.output.startswith("error:")


@pytest.mark.parametrize("text,reason", [h for h in HOSTILE if h[0]],
                         ids=[repr(t) for t, _ in HOSTILE if t])
def test_cli_hostile_add_fails_cleanly_and_leaves_file_byte_identical(empty_registry, text, reason):
    registry.add("⟁", name="ascent", meaning="m")
    before = empty_registry.read_bytes()
    r = CliRunner().invoke(main, ["add", text, "--name", "x", "--meaning", "m"])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1
    assert reason in r.output
    assert empty_registry.read_bytes() == before


@pytest.mark.parametrize("args,reason", [
    (["--name", "../../etc/passwd", "--meaning", "m"], "not a slug"),
    (["--name", "ok", "--meaning", "  "], "meaning is empty"),
    (["--name", "ok", "--meaning", "a\nb"], "one line"),
    (["--name", "ok", "--meaning", "m", "--trigger", "Bad Name"], "not a slug"),
    (["--name", "ok", "--meaning", "m", "--register", "dance"], "unknown register"),
])
def test_cli_bad_fields_fail_cleanly(empty_registry, args, reason):
    before = empty_registry.read_bytes()
    r = CliRunner().invoke(main, ["add", "🜂", *args])
    assert r.exit_code == 1 and reason in r.output
    assert empty_registry.read_bytes() == before


def test_registry_found_by_walking_up_from_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("GLYPH_REGISTRY")
    registry.init(tmp_path / "glyphs_registry.yaml")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert run("add", "⟁", "--name", "ascent", "--meaning", "m").exit_code == 0
    assert registry.load(tmp_path / "glyphs_registry.yaml").get("⟁").id == 151669


# ---------------------------------------------------------------- concurrency and speed
ADDER = """
import sys
from glyph.vocab import registry
sym, name = sys.argv[1], sys.argv[2]
registry.add(sym, name=name, meaning="concurrent " + name)
"""
SYMBOLS = ["⟁", "🜂", "🫁", "🜄", "🜁", "🜃", "🜍", "🜔", "⟐", "🫀", "🦴", "🝊"]


def test_concurrent_adds_lose_nothing(empty_registry):
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, s, f"g{i}"], env=os.environ.copy())
             for i, s in enumerate(SYMBOLS)]
    assert [p.wait(timeout=120) for p in procs] == [0] * len(SYMBOLS)
    reg = registry.load()
    assert sorted(g.symbol for g in reg.glyphs) == sorted(SYMBOLS)
    assert sorted(g.id for g in reg.glyphs) == list(range(151669, 151669 + len(SYMBOLS)))
    assert not list(empty_registry.parent.glob(".glyphs_registry.yaml.tmp-*"))  # temp naming


def test_registry_commands_never_import_heavy_modules(starter_registry):
    code = (
        "import sys\nfrom glyph.cli import main\n"
        "for args in (['list'], ['add', '⟡', '--name', 'spark', '--meaning', 'm'], ['show', '⟁'],"
        " ['validate'], ['remove', 'spark']):\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n        assert not e.code, e\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'faiss', 'accelerate')"
        " if m in sys.modules]\nprint('HEAVY', heavy)\n"
    )
    env = {**os.environ, "GLYPH_SCENES": str(starter_registry.parent / "no-scenes")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


# ---------------------------------------------------------------- property: write/read round trip
slugs = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
symbols = st.sampled_from(SYMBOLS + ["△", "☉", "⊙", "∴", "◯", "✶"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(st.lists(st.tuples(symbols, slugs, st.text(min_size=1, max_size=40)), max_size=6,
                unique_by=(lambda t: t[0], lambda t: t[1])))
def test_registry_yaml_roundtrip(tmp_path, entries):
    """Any meaning `glyph add` accepts survives write → read unchanged (incl. NEL-like text)."""
    from glyph.errors import GlyphError
    from glyph.vocab.qwen import existing_token_id
    from glyph.vocab.unicode import validate_line

    reg = registry.Registry(path=tmp_path / "r.yaml")
    for sym, name, meaning in entries:
        try:
            meaning = validate_line("meaning", meaning)
        except GlyphError:
            assume(False)  # refused at the door: covered by the hostile-meaning test
        gid = existing_token_id(sym)
        if gid is None:
            gid, reg.next_id = reg.next_id, reg.next_id + 1
        reg.glyphs.append(registry.Glyph(symbol=sym, id=gid, name=name, meaning=meaning,
                                         trigger=name, registers=("poetry",)))
    again = registry.parse(reg.to_yaml(), reg.path)
    assert again.glyphs == reg.glyphs and again.next_id == reg.next_id
    assert again.fingerprint() == reg.fingerprint()


@pytest.mark.parametrize("meaning", ["two\nlines", "next\x85line", "line\u2028sep", "para\u2029sep",
                                     "bell\x07", "rtl\u202eoverride", "   "])
def test_cli_meaning_must_be_one_clean_line(empty_registry, meaning):
    before = empty_registry.read_bytes()
    r = CliRunner().invoke(main, ["add", "⟁", "--name", "ascent", "--meaning", meaning])
    assert r.exit_code != 0
    assert r.output.count("\n") == 1 and "meaning" in r.output
    assert empty_registry.read_bytes() == before


def test_hand_edited_meaning_with_a_line_separator_is_reported(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("version: 1\nnext_id: 151670\nregisters: {poetry: images}\nglyphs:\n"
                 "- {symbol: ⟁, id: 151669, name: a, meaning: \"x\\u2028y\", trigger: a, "
                 "status: active}\n", encoding="utf-8")
    with pytest.raises(RegistryCorrupt, match=r"r.yaml:5: meaning must be one line"):
        registry.load(p)
