"""Issue 11 (hardening), run directories and tokenizer output: damaged or foreign files are one
line (exit 1, no traceback), never loaded by accident, and nothing a user put there is lost."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from glyph.cli import main
from glyph.errors import ModelError
from glyph.run import Run

from .conftest import REPO


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(r, *needles: str) -> None:
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ") and len(lines) == 1, r.output[-800:]
    assert "Traceback" not in r.output and "internal error" not in r.output
    for n in needles:
        assert n in r.output, r.output


@pytest.fixture
def run_copy(project, tmp_path) -> Path:
    """A copy of the trained mini run that a test may damage."""
    out = tmp_path / "run"
    shutil.copytree(project.run, out)
    return out


def edit_manifest(run: Path, change) -> None:
    p = run / "manifest.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    change(data)
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def neighbors(run: Path):
    return cli("neighbors", "⟁", "--run", str(run))


class Payload:
    """A pickle that would create ``marker`` when unpickled without ``weights_only``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ---------------------------------------------------------------- the manifest
@pytest.mark.parametrize("content,reason", [
    ("{not json", "manifest.json:1: not valid JSON"),
    ("[1, 2]", "the manifest must be a JSON object"),
    ('{"version": 1}', "glyphs must be a non-empty list"),
    ("\xff", "not UTF-8 text"),
    ('{"version": 1, "glyphs": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
    ('{"version": ' + "1" * 5000 + "}", "an integer of 5000 digits"),
])
def test_manifest_that_is_not_a_manifest_is_one_line(run_copy, content, reason):
    (run_copy / "manifest.json").write_bytes(content.encode("latin-1") if content == "\xff"
                                              else content.encode())
    one_line_error(neighbors(run_copy), reason)


@pytest.mark.parametrize("change,reason", [
    (lambda m: m.pop("base"), "base must be a JSON object"),
    (lambda m: m["base"].pop("path"), "base.path must be present"),
    (lambda m: m["glyphs"][0].update(id="151669"), "glyphs[0].id must be a JSON number"),
    (lambda m: m["glyphs"][0].update(symbol=["⟁"]), "glyphs[0].symbol must be a JSON str"),
    (lambda m: m.update(triggers=["initiation"]), "triggers must be an object"),
    (lambda m: m.update(tokenizer=7), "tokenizer must be a JSON string"),
    (lambda m: m.update(tokenizer="../../.."), "tokenizer must be a directory inside the run"),
    (lambda m: m.update(tokenizer="/etc"), "tokenizer must be a directory inside the run"),
    (lambda m: m.update(tokenizer="adapters"), "no tokenizer at"),
    (lambda m: m["triggers"].update(initiation="/etc"), "triggers.initiation must be a directory"),
    (lambda m: m["triggers"].update(initiation="adapters/nope"), "adapter 'initiation' is missing"),
    (lambda m: m.update(triggers={**m["triggers"], "../x": "adapters/body"}),
     "triggers must be keyed by trigger names"),
])
def test_manifest_with_missing_keys_wrong_types_or_wrong_paths_is_one_line(run_copy, change,
                                                                          reason):
    edit_manifest(run_copy, change)
    one_line_error(neighbors(run_copy), reason)


def test_manifest_pointing_at_another_base_is_refused(run_copy, tiny_untied_base):
    """The stored base fingerprint was never checked: a run loaded onto any base."""
    edit_manifest(run_copy, lambda m: m["base"].update(path=str(tiny_untied_base)))
    one_line_error(neighbors(run_copy), "is not the one run", "restore that base or retrain")


@pytest.mark.parametrize("where", ["no/such/base", "Qwen/Qwen3-0.6B"])
def test_manifest_pointing_at_a_hub_id_it_was_not_trained_on_is_refused(run_copy, where):
    edit_manifest(run_copy, lambda m: m["base"].update(path=where))
    one_line_error(neighbors(run_copy), "is not the one run")  # before any network access


def test_base_without_a_readable_config_is_one_line(run_copy, tmp_path):
    empty = tmp_path / "empty-base"
    empty.mkdir()
    edit_manifest(run_copy, lambda m: m["base"].update(path=str(empty)))
    one_line_error(neighbors(run_copy), "cannot be read (FileNotFoundError)")


def test_manifest_that_is_a_directory_is_one_line(run_copy):
    (run_copy / "manifest.json").unlink()
    (run_copy / "manifest.json").mkdir()
    with pytest.raises(ModelError, match="is a directory"):
        Run(run_copy).manifest()


# ---------------------------------------------------------------- weights that are pickles
def test_adapter_weights_that_are_a_pickle_are_refused_and_never_run(run_copy, tmp_path):
    marker = tmp_path / "pwned"
    adapter = run_copy / "adapters" / "initiation"
    (adapter / "adapter_model.safetensors").unlink()
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    one_line_error(neighbors(run_copy), "adapter 'initiation'", "weights-only loader refuses")
    assert not marker.exists()
    # the real command: the library's warning about the refused file is not printed either
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "glyph.cli", "neighbors", "⟁", "--run",
                        str(run_copy)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: ") and not marker.exists()


def test_base_weights_that_are_a_pickle_are_refused_and_never_run(run_copy, tiny_base, tmp_path):
    from glyph.model.base import fingerprint_dir

    marker = tmp_path / "pwned"
    base = tmp_path / "pickled-base"
    shutil.copytree(tiny_base, base)
    for f in base.glob("*.safetensors"):
        f.unlink()
    (base / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    edit_manifest(run_copy, lambda m: m["base"].update(path=str(base),
                                                       fingerprint=fingerprint_dir(base)))
    one_line_error(neighbors(run_copy), "cannot load base")
    assert not marker.exists()


# ---------------------------------------------------------------- the index and logs
@pytest.mark.parametrize("damage,reason", [
    (lambda d: (d / "scenes.faiss").write_bytes(b"IxFI" + bytes(40)), "scenes.faiss: cannot be read"),
    (lambda d: (d / "scenes.faiss").write_bytes(b""), "scenes.faiss: cannot be read"),
    (lambda d: (d / "scenes.faiss").unlink(), "scenes.faiss is missing"),
    (lambda d: (d / "vectors.safetensors").write_bytes(b"junk" * 10), "vectors.safetensors: cannot"),
    (lambda d: (d / "meta.json").write_text("{"), "meta.json:1: not valid JSON"),
    (lambda d: (d / "meta.json").write_text("[]"), "written by another glyph version"),
    (lambda d: _edit_json(d / "meta.json", lambda m: m["scenes"].pop()), "do not agree"),
    (lambda d: _edit_json(d / "meta.json", lambda m: m["scenes"][0].pop("text")),
     "not the shape glyph writes"),
])
def test_damaged_index_is_one_error(run_copy, damage, reason):
    from glyph.serving.index import SceneIndex

    damage(run_copy / "index")
    with pytest.raises(ModelError, match=re.escape(reason)) as e:
        SceneIndex.load(run_copy)
    assert "glyph index build" in str(e.value)


def test_corrupt_scenes_faiss_through_the_command_is_one_line(run_copy):
    (run_copy / "index" / "scenes.faiss").write_bytes(b"IxFI" + bytes(40))
    one_line_error(neighbors(run_copy), "scenes.faiss: cannot be read", "glyph index build")


def _edit_json(p: Path, change) -> None:
    data = json.loads(p.read_text(encoding="utf-8"))
    change(data)
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def test_damaged_loss_log_is_one_error(run_copy):
    (run_copy / "loss.jsonl").write_text('{"step": 1, "loss": NaN}\n[1]\n', encoding="utf-8")
    with pytest.raises(ModelError, match="each line must be a JSON object"):
        Run(run_copy).loss_log()
    (run_copy / "loss.jsonl").write_text('{"step": 1, "loss": NaN}\n{"step"\n', encoding="utf-8")
    with pytest.raises(ModelError, match=r"loss.jsonl:2: not valid JSON"):
        Run(run_copy).loss_log()


# ---------------------------------------------------------------- tokenizer build --out
@pytest.mark.parametrize("out,reason", [
    ("/proc/glyph-tok", "cannot write /proc/glyph-tok"),
    ("/proc/self/status/tok", "cannot write /proc/self/status/tok"),
])
def test_tokenizer_out_on_a_pseudo_filesystem_is_one_line(starter_registry, out, reason):
    one_line_error(cli("tokenizer", "build", "--out", out), reason)


def test_tokenizer_out_under_a_file_is_one_line(starter_registry, tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    one_line_error(cli("tokenizer", "build", "--out", str(f / "tok")), f"{f} is a file")
    r = cli("tokenizer", "build", "--out", str(f))  # click's own usage error (exit 2)
    assert r.exit_code == 2 and "is a file" in r.output and "Traceback" not in r.output
    assert f.read_text() == "mine"


def test_tokenizer_rebuild_never_deletes_files_a_user_put_there(starter_registry, tmp_path):
    out = tmp_path / "tok"
    assert cli("tokenizer", "build", "--out", str(out)).exit_code == 0
    assert "files" in json.loads((out / "glyph_tokens.json").read_text())
    (out / "my-notes.txt").write_text("keep me")
    one_line_error(cli("tokenizer", "build", "--out", str(out)),
                   "holds files glyph did not write (my-notes.txt)")
    assert (out / "my-notes.txt").read_text() == "keep me"
    (out / "my-notes.txt").unlink()
    assert cli("tokenizer", "build", "--out", str(out)).exit_code == 0  # its own files: fine


# ---------------------------------------------------------------- resuming a damaged run
def _crash_after(n: int):
    def hook(stats) -> None:
        if stats.step >= n:
            raise KeyboardInterrupt
    return hook


@pytest.fixture
def crashed(mini_project, tiny_base) -> Path:
    from glyph.training.recipe import train

    from .conftest import train_config

    out = mini_project / "crashed"
    with pytest.raises(KeyboardInterrupt):
        train(train_config(out, tiny_base, steps=8, save_every=2), log=lambda m: None,
              progress=False, on_step=_crash_after(3))
    return out


@pytest.mark.parametrize("damage,reason", [
    (lambda r: (r / "checkpoints" / "latest").write_text("../../../etc\n"), "names no checkpoint"),
    (lambda r: (r / "checkpoints" / "step-000002" / "state.json").write_text("[]"),
     "not a glyph checkpoint state"),
    (lambda r: (r / "checkpoints" / "step-000002" / "params.safetensors").write_bytes(b"\0" * 9),
     "cannot read its weights"),
    (lambda r: (r / "train_config.json").write_text("{"), "train_config.json:1: not valid JSON"),
])
def test_resuming_a_damaged_run_is_one_line(crashed, tiny_base, damage, reason):
    from glyph.errors import TrainingError
    from glyph.training.recipe import train

    from .conftest import train_config

    damage(crashed)
    with pytest.raises(TrainingError, match=reason):
        train(train_config(crashed, tiny_base, steps=8, save_every=2), resume=True,
              log=lambda m: None, progress=False)


# ---------------------------------------------------------------- a setup that fails
def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_failed_setup_leaves_no_run_directory_behind(project, tmp_path):
    out = tmp_path / "new-run"
    r = cli("train", "--base", str(tmp_path), "--steps", "1", "--out", str(out))
    one_line_error(r, "not a model directory")
    assert not out.exists()


def test_overwrite_with_a_bad_base_keeps_the_old_run(run_copy, tmp_path):
    before = _tree(run_copy)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00 truncated")
    r = cli("train", "--base", str(bad), "--steps", "1", "--out", str(run_copy), "--overwrite")
    one_line_error(r, "GGUF header")
    assert _tree(run_copy) == before          # every file of the old run, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
