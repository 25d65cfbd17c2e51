"""Property-based fuzzing of the command line and of a run's scene index.

Arbitrary argv for the registry, scene and tokenizer commands: exit 0, 1 (one ``error:`` line)
or 2 (click's usage error) — never a traceback or an internal error, and the registry and
corpus byte for byte unchanged whenever a command fails. And arbitrary damage to the files of
a built scene index: a clean error or an index that answers queries.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import event, given
from hypothesis import strategies as st

from glyph.cli import main

from .conftest import STARTER_SCENES
from .support.fuzzing import (PLAIN_TEXT, SECONDS, TRICKY_TEXT, bounded, count, fuzz_settings,
                              message_class, outcome, write_tally)


@pytest.fixture(scope="module", autouse=True)
def tally_report():
    yield
    if os.environ.get("GLYPH_FUZZ_REPORT"):
        write_tally(os.environ["GLYPH_FUZZ_REPORT"])


@pytest.fixture
def small_project(starter_registry) -> Path:
    d = Path(os.environ["GLYPH_SCENES"])
    d.mkdir()
    for name in ("ascent.yaml", "fire.yaml", "breath.yaml"):
        shutil.copy(STARTER_SCENES / name, d / name)
    return starter_registry.parent


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file glyph might write (lock files aside: they hold no data)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


ARG = st.one_of(
    TRICKY_TEXT,
    st.sampled_from(["⟁", "⟁\ufe0f", "🜂", "ascent", "fire", "breath", "poetry", "body",
                     "micro", "core", "en", "Δ101", "-", "--json", "--help", "", " ",
                     "x" * 300, "glyphs_registry.yaml", "glyphs/ascent.yaml", "/dev/zero",
                     "/proc/self/status", "missing.jsonl", "a.csv", "\udcff", "--", "-1"]))
KNOWN = st.sampled_from(["⟁", "🜂", "🫁", "fire", "ascent", "breath"])
COMMANDS = {"add", "show", "remove", "list", "validate", "tokenize"}
NEW_SYMBOL = st.one_of(st.sampled_from(["⟡", "🜔", "🝊", "⚗", "🜍\ufe0f", "🜃", "⟐"]), TRICKY_TEXT)


@st.composite
def argv(draw) -> list[str]:
    a = draw
    templates = [
        lambda: ["add", a(NEW_SYMBOL), "--name", a(ARG | st.from_regex(r"[a-z][a-z0-9-]{0,8}",
                                                                     fullmatch=True)),
                 "--meaning", a(ARG | PLAIN_TEXT), *a(st.sampled_from([[], ["--scene", a(ARG)],
                                                           ["--register", a(ARG)],
                                                           ["--trigger", a(ARG)]]))],
        lambda: ["show", a(KNOWN | ARG), *a(st.sampled_from([[], ["--json"]]))],
        lambda: ["remove", a(KNOWN | ARG)],
        lambda: ["list", *a(st.sampled_from([[], ["--json"], ["--all"]]))],
        lambda: ["validate"],
        lambda: ["scenes", "add", "--glyph", a(KNOWN | ARG), "--register",
                 a(st.sampled_from(["body", "poetry", "logic"]) | ARG), "--level",
                 a(st.sampled_from(["micro", "meso", "x"])), "--text",
                 a(ARG | TRICKY_TEXT | PLAIN_TEXT),
                 *a(st.sampled_from([[], ["--id", a(ARG)], ["--lang", a(ARG)]]))],
        lambda: ["scenes", "list", *a(st.sampled_from([[], ["--glyph", a(ARG)],
                                                       ["--register", a(ARG)], ["--json"]]))],
        lambda: ["scenes", "import", a(ARG)],
        lambda: ["scenes", "validate"],
        lambda: ["tokenize", a(ARG | TRICKY_TEXT), *a(st.sampled_from([[], ["--json"]]))],
        lambda: a(st.lists(ARG, max_size=5)),
    ]
    return a(st.sampled_from(templates))()


@fuzz_settings(250)
@given(args=argv(), stdin=st.sampled_from([b"", b"scene from stdin", b"\xff\xfe", b"a\x1bb"]))
def test_commands_fail_cleanly_and_change_nothing_on_error(small_project, args, stdin):
    before = snapshot(small_project)
    t0 = time.perf_counter()
    with bounded():
        r = CliRunner().invoke(main, args, input=stdin)
    target = "cli: " + (" ".join(args[:2]) if args[:1] == ["scenes"] else
                        args[0] if args[:1] and args[0] in COMMANDS else "random argv")
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 1, 2), r.output
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    assert "\x1b" not in r.output  # nothing a terminal would act on
    SECONDS[target] += time.perf_counter() - t0
    if r.exit_code == 1:
        errors = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: "), r.stderr
        count(target, f"exit 1: {message_class(errors[0])}")
    else:
        count(target, "ok" if r.exit_code == 0 else "exit 2: click usage error")
    event(f"exit {r.exit_code}")
    if r.exit_code != 0:
        assert snapshot(small_project) == before


# ---------------------------------------------------------------- a built scene index
@pytest.fixture(scope="module")
def index_files(trained_project) -> dict[str, bytes]:
    d = trained_project.run / "index"
    return {p.name: p.read_bytes() for p in d.iterdir()}


@st.composite
def damage(draw, files: dict[str, bytes]) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(files)))
    data = bytearray(files[name])
    how = draw(st.sampled_from(["flip", "flip", "truncate", "junk", "json"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif how == "truncate":
        del data[draw(st.integers(0, len(data))):]
    elif how == "junk":
        data = bytearray(draw(st.binary(max_size=200)))
    elif name == "meta.json":
        meta = json.loads(bytes(data))
        key = draw(st.sampled_from(["version", "info", "scenes"]))
        meta[key] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                   st.just(meta[key][:-1] if isinstance(meta[key], list)
                                           else {})))
        data = bytearray(json.dumps(meta).encode())
    return name, bytes(data)


@fuzz_settings(120)
@given(data=st.data())
def test_damaged_index_files(index_files, tmp_path, data):
    from glyph.serving.index import SceneIndex

    name, content = data.draw(damage(index_files))
    run = tmp_path / "run"
    (run / "index").mkdir(parents=True, exist_ok=True)
    for n, b in index_files.items():
        (run / "index" / n).write_bytes(content if n == name else b)
    status, idx = outcome(f"index: load ({name})", lambda: SceneIndex.load(run))
    if status == "ok":  # a flip inside the numbers loads: it must still answer
        key = next(k for k in idx.vectors if not k.startswith("__"))
        hits = idx.search(idx.vectors[key], k=3)
        assert len(hits) <= 3
