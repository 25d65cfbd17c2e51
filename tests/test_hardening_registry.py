"""Issue 11 (hardening), the registry side: every case the hostile probe found, pinned.

Each test names the probe class it pins. "One line" means: exit code 1, a single
``error: …`` line, no traceback, and the registry byte for byte as it was.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glyph import limits
from glyph.errors import GlyphError, RegistryCorrupt
from glyph.vocab import registry

from .conftest import REPO
from .support.cli import cli, one_line_error

SRC = str(REPO / "src")


def glyph_subprocess(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a child process; the timeout only fails a hang."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "glyph.cli", *args], capture_output=True,
                          env=env, timeout=timeout)


@pytest.fixture
def reg_path(starter_registry) -> Path:
    return starter_registry


# ---------------------------------------------------------------- data loss and hangs
def test_duplicate_top_level_key_is_refused_and_never_overwritten(reg_path):
    """`glyphs:` twice used to load the last list only; the next add wiped the others."""
    text = reg_path.read_text(encoding="utf-8") + "glyphs: []\n"
    reg_path.write_text(text, encoding="utf-8")
    dup_line = text.count("\n")
    with pytest.raises(RegistryCorrupt, match=rf"glyphs_registry.yaml:{dup_line}: key 'glyphs' "
                       r"appears twice in one mapping \(first at line \d+\)"):
        registry.load()
    one_line_error(cli("add", "⟡", "--name", "spark", "--meaning", "m"), "appears twice")
    assert reg_path.read_text(encoding="utf-8") == text


def test_duplicate_key_inside_a_glyph_is_refused(reg_path):
    text = reg_path.read_text(encoding="utf-8").replace("  name: fire\n",
                                                        "  name: fire\n  name: flame\n", 1)
    reg_path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryCorrupt, match="key 'name' appears twice"):
        registry.load()


def alias_bomb(levels: int = 12) -> str:
    """A glyph entry whose value is 9^levels values once its aliases are expanded."""
    lines = ["version: 1", "glyphs:", "- - &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", [["list"], ["validate"]])
def test_alias_bomb_is_refused_in_a_moment(reg_path, command):
    """A 5 KB file of nested aliases expands to 9^12 values; it used to hang list/validate."""
    bomb = alias_bomb()
    assert len(bomb) < 5000
    reg_path.write_text(bomb, encoding="utf-8")
    r = glyph_subprocess(*command, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "aliases expand to more than 1,000,000 values" in err


CORRUPT = [
    # (what, replace this, with this, line, reason)
    ("an over-long integer", "next_id: 151680", "next_id: " + "9" * 5000, 6,
     "an integer of 5000 digits"),
    ("an impossible date", "next_id: 151680", "next_id: 2001-13-45", 6, "cannot read this value"),
    ("deep nesting", "next_id: 151680", "next_id: " + "[" * 3000 + "]" * 3000, 6,
     "not valid YAML"),
    ("nesting past the limit", "next_id: 151680", "next_id: " + "[" * 30 + "]" * 30, 6,
     "nested 21 levels deep"),
    ("a list as the family", "family: qwen", "family: [qwen]", 4, "family ['qwen'] is not"),
    ("a list as a symbol", "- symbol: ⟁", "- symbol: [⟁]", 13, "symbol must be text"),
    ("a list as a meaning", "meaning: alchemical fire; heat, purification, compression, "
     "catharsis", "meaning: [a, b]", 22, "meaning must be text, not ['a', 'b']"),
    ("nested registers", "registers: [poetry, logic, interface, body]\n  scenes: [Δ203",
     "registers: [[poetry]]\n  scenes: [Δ203", 22, "registers must be a list of names"),
    ("a number as unicode_exceptions", "  trigger: body\n", "  trigger: body\n  "
     "unicode_exceptions: 5\n", 31, "unicode_exceptions must be a list"),
    ("a mapping key that is a list", "version: 1", "version: 1\n? [a]\n: b", 5,
     "a mapping key must be a plain value"),
    ("a terminal escape in a scene id", "scenes: [Δ203,", "scenes: [\"\\e[31mred\",", 22,
     "scene id '\\x1b[31mred' must be"),
    ("a bidi mark in a meaning", "meaning: alchemical fire; heat, purification, compression, "
     "catharsis", "meaning: \"alch\\u200Femical fire\"", 22,
     "U+200F RIGHT-TO-LEFT MARK, a bidi control"),
    ("a 10 MB meaning", "meaning: alchemical fire; heat, purification, compression, catharsis",
     "meaning: " + "x" * 600, 22, "meaning is 600 characters"),
    ("an id past the last glyph slot", "id: 151670", "id: 999999999", 22,
     "id must be an integer from 0 to"),
    ("a slug with a trailing newline", "  name: fire\n", "  name: \"fire\\n\"\n", 22,
     "is not a slug"),
]


@pytest.mark.parametrize("what,old,new,line,reason", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_hand_broken_registry_is_one_line_and_never_overwritten(reg_path, what, old, new, line,
                                                                reason):
    text = reg_path.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    reg_path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryCorrupt) as e:
        registry.load()
    assert f"{reg_path}:{line}:" in str(e.value) and reason in str(e.value)
    assert len(str(e.value)) < 600  # values are quoted at a bounded size
    for args in (["list"], ["validate"], ["add", "⟡", "--name", "spark", "--meaning", "m"],
                 ["remove", "fire"]):
        one_line_error(cli(*args), f"{reg_path}:{line}:")
    assert reg_path.read_text(encoding="utf-8") == text


def test_registry_past_its_size_limit_is_refused_before_parsing(reg_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_REGISTRY_BYTES", 1000)
    monkeypatch.setattr(registry, "MAX_REGISTRY_BYTES", 1000)
    one_line_error(cli("list"), "over the 1,000 bytes limit for a registry")


def test_registry_that_is_a_directory_or_a_fifo_is_one_line(tmp_path, monkeypatch):
    d = tmp_path / "dir.yaml"
    d.mkdir()
    monkeypatch.setenv("GLYPH_REGISTRY", str(d))
    one_line_error(cli("list"), "is a directory")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    monkeypatch.setenv("GLYPH_REGISTRY", str(fifo))
    one_line_error(cli("list"), "not a regular file")  # opening it would block forever


# ---------------------------------------------------------------- writing
def test_unwritable_registry_location_is_one_line(tmp_path):
    """A registry where glyph cannot create its lock or temp file: one line, nothing half-done."""
    one_line_error(cli("init", "--path", "/proc/glyphs_registry.yaml"), "cannot lock")
    under_a_file = tmp_path / "file"
    under_a_file.write_text("x")
    one_line_error(cli("init", "--path", str(under_a_file / "glyphs_registry.yaml")),
                   f"{under_a_file} is a file, not a directory")


def test_failed_rename_leaves_the_registry_and_no_temporary(reg_path, monkeypatch):
    import glyph.files as files

    before = reg_path.read_bytes()

    def deny(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.os, "replace", deny)
    one_line_error(cli("add", "⟡", "--name", "spark", "--meaning", "m"),
                   f"cannot write {reg_path}: Permission denied")
    assert reg_path.read_bytes() == before
    assert not [p for p in reg_path.parent.iterdir() if ".tmp-" in p.name]


def test_lock_file_that_cannot_be_opened_is_one_line(reg_path):
    (reg_path.parent / (reg_path.name + ".lock")).mkdir()
    one_line_error(cli("add", "⟡", "--name", "spark", "--meaning", "m"), "cannot lock")


def test_leftover_temporary_of_a_killed_writer_is_swept(reg_path):
    """`kill -9` during the fsync left `.glyphs_registry.yaml.*.tmp` forever."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = reg_path.parent / f".{reg_path.name}.tmp-{dead.pid}-0123abcd"
    stale.write_text("half a registry")
    mine = reg_path.parent / f".{reg_path.name}.tmp-{os.getpid()}-89abcdef"  # a live writer
    mine.write_text("being written")
    assert cli("add", "⟡", "--name", "spark", "--meaning", "m").exit_code == 0
    assert not stale.exists() and mine.exists()


HOLDER = """
import sys, time
from pathlib import Path
from glyph.locks import locked
with locked(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_stuck_lock_holder_is_named_and_the_lock_file_never_blamed(reg_path):
    from glyph.locks import locked

    env = {**os.environ, "PYTHONPATH": SRC}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(reg_path)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(GlyphError) as e:
            with locked(reg_path, stall=1.0):
                pass
        msg = str(e.value)
        assert f"glyph process {holder.pid}" in msg and f"kill {holder.pid}" in msg
        assert "delete" not in msg and "remove" not in msg
    finally:
        holder.kill()
        holder.wait()
    with locked(reg_path, stall=1.0):  # released by the OS when its holder died
        pass


CHAIN = """
import sys, time
from pathlib import Path
from glyph.locks import locked
for _ in range(int(sys.argv[2])):
    with locked(Path(sys.argv[1])):
        time.sleep(0.2)
"""


def test_waiting_outlasts_the_stall_limit_while_writers_make_progress(reg_path):
    """Many queued writers are not a stuck one: the wait ends only when the lock is free."""
    from glyph.locks import locked

    env = {**os.environ, "PYTHONPATH": SRC}
    chain = [subprocess.Popen([sys.executable, "-c", CHAIN, str(reg_path), "8"], env=env)
             for _ in range(2)]
    try:
        time.sleep(1.0)  # let them start (a 0.5 s stall limit is far below their 3.2 s chain)
        with locked(reg_path, stall=0.5):
            pass
    finally:
        assert [p.wait(timeout=120) for p in chain] == [0, 0]


ADDER = """
import sys
import unicodedata2 as ud
from glyph.vocab import registry
w, n = int(sys.argv[1]), int(sys.argv[2])
free = [chr(c) for c in range(0x1F300, 0x1FAFF) if ud.category(chr(c)) == "So"][200:]
for i in range(n):
    registry.add(free[w * n + i], name=f"w{w}-{i}", meaning="concurrent")
"""


def test_concurrent_writers_in_loops_all_land(empty_registry):
    """Writers that re-take the lock at once (the case that starved a waiter) all land."""
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, str(w), "8"], env=env)
             for w in range(6)]
    assert [p.wait(timeout=600) for p in procs] == [0] * 6
    reg = registry.load()
    assert len(reg.glyphs) == 48 and len({g.id for g in reg.glyphs}) == 48


# ---------------------------------------------------------------- symbols and fields
@pytest.mark.parametrize("symbol,reason", [
    ("⟁\u034f", "U+034F COMBINING GRAPHEME JOINER is invisible"),
    ("⟁\u180b", "U+180B MONGOLIAN FREE VARIATION SELECTOR ONE is invisible"),
    ("⟁\u17b4", "U+17B4 KHMER VOWEL INHERENT AQ is invisible"),
    ("\u2800", "U+2800 BRAILLE PATTERN BLANK renders as blank space"),
    ("\u3164", "U+3164 HANGUL FILLER is invisible"),
])
def test_invisible_look_alikes_are_refused(reg_path, symbol, reason):
    before = reg_path.read_bytes()
    one_line_error(cli("add", symbol, "--name", "twin", "--meaning", "m"), reason)
    assert reg_path.read_bytes() == before


@pytest.mark.parametrize("symbol,reason", [
    ("⟁" + "\u0301" * 50_000, "is 50,001 code points; a glyph has at most 16"),
    ("👁" + "\u200d👁" * 14_000, "is 28,001 code points"),
])
def test_oversized_symbols_are_refused_in_a_short_line(reg_path, symbol, reason):
    r = cli("add", symbol, "--name", "big", "--meaning", "m")
    one_line_error(r, reason)
    assert len(r.output) <= limits.MAX_ERROR_CHARS + 40


def test_ten_megabyte_meaning_is_refused_in_a_short_line(reg_path):
    r = cli("add", "⟡", "--name", "spark", "--meaning", "x" * 10_000_000)
    one_line_error(r, "meaning is 10,000,000 characters")
    assert len(r.output) < 300


@pytest.mark.parametrize("meaning,code", [("a\u200fb", "U+200F"), ("a\u200eb", "U+200E"),
                                          ("a\u061cb", "U+061C"), ("a\u2067b", "U+2067"),
                                          ("a\ufeffb", "U+FEFF"), ("a\udcffb", "U+DCFF")])
def test_invisible_controls_in_a_meaning_are_refused(reg_path, meaning, code):
    one_line_error(cli("add", "⟡", "--name", "spark", "--meaning", meaning), code)


@pytest.mark.parametrize("scene", ["\x1b[31mred", "a b", "a\u202eb", "x" * 41, "a/b"])
def test_scene_ids_given_to_add_must_be_visible(reg_path, scene):
    before = reg_path.read_bytes()
    one_line_error(cli("add", "⟡", "--name", "spark", "--meaning", "m", "--scene", scene),
                   "scene id")
    assert reg_path.read_bytes() == before


def test_doubled_selector_names_the_code_point_not_a_missing_line(reg_path):
    """It used to be blamed on a registry line that did not exist, naming no code point."""
    r = cli("add", "⟡\ufe0f\ufe0f", "--name", "spark", "--meaning", "m")
    one_line_error(r, "U+FE0F VARIATION SELECTOR-16 at position 2 is a second")
    assert "glyphs_registry.yaml" not in r.output


def test_a_change_that_would_not_read_back_is_not_written_nor_blamed_on_a_line(reg_path,
                                                                              monkeypatch):
    before = reg_path.read_bytes()
    monkeypatch.setattr(registry.Registry, "to_yaml", lambda self: "version: 9\n")
    r = cli("remove", "fire")
    one_line_error(r, "refusing to write", "glyph bug")
    assert not re.search(r"glyphs_registry.yaml:\d+:", r.output)
    assert reg_path.read_bytes() == before


# ---------------------------------------------------------------- output
def test_tokenize_text_that_is_not_utf8_is_one_line(reg_path):
    # how Python hands a command line with the byte 0xFF to glyph (surrogateescape)
    text = b"ab\xff".decode("utf-8", "surrogateescape")
    one_line_error(cli("tokenize", text), "not valid Unicode at character 3 (U+DCFF")


def test_error_lines_are_bounded(reg_path):
    r = cli("show", "x" * 1_300_000)
    one_line_error(r, "no glyph")
    assert len(r.output) < 400


def test_every_command_prints_through_the_escaping_output_path():
    """One output path: no command module calls click.echo itself."""
    for f in (REPO / "src" / "glyph" / "cli").glob("*.py"):
        if f.name != "app.py":
            assert "click.echo" not in f.read_text(encoding="utf-8"), f.name


def test_output_path_escapes_terminal_controls(capsys):
    from glyph.cli.app import echo, echo_json

    echo("red \x1b[31m\u202eevil\x9b \udcff\nnext line\tkept")
    echo_json({"t": "a\x1bb\u2066c\udcff"})
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\x9b" not in out
    assert "\\x1b[31m\\u202eevil\\x9b \\udcff\nnext line\tkept" in out
    assert '"a\\u001bb\\u2066c\\udcff"' in out


def test_an_unexpected_exception_is_one_line_with_its_own_exit_code(reg_path, monkeypatch):
    from glyph.cli.app import INTERNAL_ERROR

    def boom(*a, **k):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(registry, "load", boom)
    r = cli("list")
    assert r.exit_code == INTERNAL_ERROR and r.output.count("\n") == 1
    assert "internal error (ValueError: boom)" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("args", [["scenes", "import", "a\x00.csv"], ["init", "--path", "r\x00.yaml"],
                                  ["tokenizer", "build", "--out", "t\x00k"]])
def test_a_nul_byte_in_a_path_is_a_usage_error(reg_path, args):
    """Found by the CLI fuzz test: click.Path's os.stat raised ValueError on a NUL byte."""
    r = cli(*args)
    assert r.exit_code == 2 and "holds a NUL byte" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("args", [["scenes", "import", "\udd00"], ["tokenizer", "build", "--out", "t\ud800"]])
def test_a_path_no_file_system_can_encode_is_a_usage_error(reg_path, args):
    """Found by the randomized CLI fuzz run: a lone surrogate (not one of surrogateescape's
    \\udc80-\\udcff, which stand for real bytes) made os.stat raise UnicodeEncodeError."""
    r = cli(*args)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "is not a file name this system can encode" in r.output


def test_a_nul_byte_in_a_path_given_to_the_library_is_one_error(tmp_path):
    from glyph.corpus import edit
    from glyph.errors import FileError, SceneError
    from glyph.files import atomic_write

    with pytest.raises(SceneError, match="NUL byte"):
        edit.read_rows(Path("a\0.csv"))
    with pytest.raises(FileError, match="NUL byte"):
        atomic_write(tmp_path / "a\0b", "x")
