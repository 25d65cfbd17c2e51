"""Scene corpus: loader errors as file:line, add/import/list/validate, the starter corpus."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from glyph.corpus import scenes
from glyph.vocab import registry
from glyph.cli import main
from glyph.errors import SceneError

from .conftest import STARTER_SCENES

GOOD = """version: 1
scenes:
- id: Δ1
  glyphs: [⟁]
  register: poetry
  level: micro
  tier: core
  lang: en
  text: |-
    Heat below, fear around, nothing inside: the next stair.
- id: Δ2
  glyphs: [⟁, 🜂]
  register: logic
  level: macro
  tier: orbit
  lang: ru
  text: |-
    [THEME] Жар и страх.
    [SYNTHESIS] Шаг вверх.
"""


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def project(empty_registry) -> Path:
    registry.add("⟁", name="ascent", meaning="a step up", trigger="initiation")
    registry.add("🜂", name="fire", meaning="fire", trigger="initiation")
    d = Path(os.environ["GLYPH_SCENES"])
    d.mkdir()
    (d / "ascent.yaml").write_text(GOOD, encoding="utf-8")
    return d


def test_loads_valid_corpus(project):
    c = scenes.load_corpus(registry.load())
    assert [s.id for s in c.scenes] == ["Δ1", "Δ2"]
    assert c.get("Δ2").glyphs == ("⟁", "🜂") and c.get("Δ2").markers == ["THEME", "SYNTHESIS"]
    assert len(c.select(glyph="🜂")) == 1 and len(c.select(registers=["poetry"])) == 1


@pytest.mark.parametrize("edit,line,reason", [
    (lambda t: t.replace("[⟁]", "[⟡]", 1), 3, "unknown glyph '⟡'"),
    (lambda t: t.replace("id: Δ2", "id: Δ1"), 11, "duplicate scene id 'Δ1'"),
    (lambda t: t.replace("register: poetry", "register: dance"), 3, "unknown register 'dance'"),
    (lambda t: t.replace("level: micro", "level: nano"), 3, "level 'nano'"),
    (lambda t: t.replace("tier: core", "tier: halo"), 3, "tier 'halo'"),
    (lambda t: t.replace("[THEME]", "[THESIS]"), 11, "bad section marker [THESIS]"),
    (lambda t: t.replace("lang: en", "lang: english"), 3, "lang 'english'"),
    (lambda t: t.replace("    Heat below, fear around, nothing inside: the next stair.\n",
                         "    \n"), 3, "empty text"),
    (lambda t: t.replace("  tier: core\n", "  tier: core\n  mood: dark\n"), 3, "unknown key"),
    (lambda t: t.replace("scenes:\n- id", "scenes:\n  - id", 1), 4, "not valid YAML"),
])
def test_loader_rejects_with_file_and_line(project, edit, line, reason):
    f = project / "ascent.yaml"
    f.write_text(edit(GOOD), encoding="utf-8")
    with pytest.raises(SceneError) as e:
        scenes.load_corpus(registry.load())
    assert f"{f}:{line}:" in str(e.value) and reason in str(e.value)
    r = run("scenes", "validate")
    assert r.exit_code == 1 and reason in r.output


def test_heldout_split_is_deterministic_by_id():
    ids = [f"Δ{i}" for i in range(2000)]
    held = [i for i in ids if scenes.heldout_by_id(i)]
    assert held == [i for i in ids if scenes.heldout_by_id(i)]
    assert 0.15 < len(held) / len(ids) < 0.25


def test_cli_add_list_and_explicit_split(project):
    r = run("scenes", "add", "--glyph", "fire", "--register", "body", "--level", "meso",
            "--lang", "en", "--text", "Warmth spreads from the belly outward. So rest.")
    assert r.exit_code == 0, r.output
    assert "added scene Δ3" in r.output
    listed = json.loads(run("scenes", "list", "--glyph", "🜂", "--json").output)
    assert {s["id"] for s in listed} == {"Δ2", "Δ3"}
    assert (project / "fire.yaml").exists()
    assert scenes.load_corpus(registry.load()).get("Δ3").register == "body"
    r = run("scenes", "add", "--glyph", "fire", "--register", "dance", "--level", "meso",
            "--text", "x")
    assert r.exit_code == 1 and "unknown register" in r.output


def test_import_is_all_or_nothing(project, tmp_path):
    good = {"id": "Δ10", "glyphs": ["⟁"], "register": "body", "level": "micro", "tier": "core",
            "lang": "en", "text": "Knees bend, breath holds, then the climb."}
    bad = {**good, "id": "Δ11", "register": "dance"}
    f = tmp_path / "batch.jsonl"
    f.write_text(json.dumps(good, ensure_ascii=False) + "\n" + json.dumps(bad, ensure_ascii=False)
                 + "\n", encoding="utf-8")
    before = sorted(p.name for p in project.iterdir() if not p.name.startswith("."))
    r = run("scenes", "import", str(f))
    assert r.exit_code == 1 and f"{f}:2: unknown register 'dance'" in r.output
    assert sorted(p.name for p in project.iterdir() if not p.name.startswith(".")) == before
    f.write_text(json.dumps(good, ensure_ascii=False) + "\n", encoding="utf-8")
    assert run("scenes", "import", str(f)).exit_code == 0
    assert scenes.load_corpus(registry.load()).get("Δ10").lang == "en"
    csv_file = tmp_path / "more.csv"
    csv_file.write_text("id,glyphs,register,level,tier,lang,text\n"
                        "Δ12,⟁ 🜂,logic,meso,orbit,en,\"Heat plus fear; therefore a step.\"\n",
                        encoding="utf-8")
    assert run("scenes", "import", str(csv_file)).exit_code == 0
    assert scenes.load_corpus(registry.load()).get("Δ12").glyphs == ("⟁", "🜂")
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps(good, ensure_ascii=False) + "\n", encoding="utf-8")
    r = run("scenes", "import", str(dup))
    assert r.exit_code == 1 and "duplicate scene id 'Δ10'" in r.output


# ---------------------------------------------------------------- the starter corpus
@pytest.fixture
def starter(starter_registry, monkeypatch):
    monkeypatch.setenv("GLYPH_SCENES", str(STARTER_SCENES))
    reg = registry.load()
    return reg, scenes.load_corpus(reg)


def test_starter_corpus_meets_the_brief(starter):
    reg, corpus = starter
    assert len(corpus) >= 400
    for g in reg.active():
        own = [s for s in corpus.scenes if s.glyph == g.symbol]
        assert len({s.register for s in own}) >= 4, g.name
        assert {s.level for s in own} == set(scenes.LEVELS), g.name
        assert {"en", "ru"} <= {s.lang for s in own}, g.name
        assert any(s.split == "heldout" for s in own), g.name
        assert not any(x.symbol in s.text for s in own for x in reg.active()), g.name
    assert {s.tier for s in corpus.scenes} == set(scenes.TIERS)
    macro = [s for s in corpus.scenes if s.level == "macro"]
    assert all({"THEME", "ERROR", "SYNTHESIS"} <= set(s.markers) for s in macro)


def test_validate_reports_starter_project(starter):
    r = run("validate")
    assert r.exit_code == 0, r.output
    assert "14 active glyphs" in r.output and "scenes in" in r.output
    assert "warning" not in r.output
