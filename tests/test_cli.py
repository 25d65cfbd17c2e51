"""CLI-level checks: tokenizer build/tokenize, README ↔ CI, error translation."""
from __future__ import annotations

import json
import re

from click.testing import CliRunner

from glyph.vocab import registry
from glyph.cli import main

from .conftest import REPO


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    main_job, tests = blocks[0].strip(), blocks[1].strip()
    assert "glyph demo" in main_job and "pytest" in tests
    assert "-c constraints/cpu.txt" in main_job and "-c constraints/cpu.txt" in tests
    assert tests in (REPO / ".ci" / "run").read_text()
    assert "torch==2.13.0" in (REPO / "constraints" / "cpu.txt").read_text()


def test_tokenizer_build_prints_costs_and_writes_a_hf_dir(starter_registry, tmp_path):
    out = tmp_path / "tok"
    r = run("tokenizer", "build", "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line.split() for line in r.output.splitlines()[1:-1]}
    assert rows["⟁"][2:] == ["2", "151669", "added"]   # 2 byte-level tokens before, 1 after
    assert rows["🜂"][2:] == ["3", "151670", "added"]
    assert rows["☿"][2:] == ["1", "149053", "claimed"]
    meta = json.loads((out / "glyph_tokens.json").read_text())
    assert len(meta["glyphs"]) == len(registry.load().active())
    # a second build over its own output is fine; a foreign directory is refused
    assert run("tokenizer", "build", "--out", str(out)).exit_code == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("keep")
    r = run("tokenizer", "build", "--out", str(foreign))
    assert r.exit_code == 1 and "choose an empty --out" in r.output
    assert (foreign / "x.txt").read_text() == "keep"


def test_tokenize_shows_one_token_per_glyph(starter_registry):
    r = run("tokenize", "⟁🜂\nbreathe 🫁", "--json")
    assert r.exit_code == 0, r.output
    ids = [t["id"] for t in json.loads(r.output)]
    assert ids[:2] == [151669, 151670] and 151671 in ids
    r = run("tokenize", "⟁ x")
    assert "⟁[151669]" in r.output


def test_tokenizer_build_with_a_bad_base_is_one_line(starter_registry, tmp_path):
    r = run("tokenizer", "build", "--base", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.exit_code == 1 and r.output.startswith("error:") and r.output.count("\n") == 1
