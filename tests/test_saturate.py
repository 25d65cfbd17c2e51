"""`glyph saturate`: the plan, and a tiny end-to-end run."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from glyph.cli import main
from glyph.errors import ConfigError
from glyph.evaluation.saturate import plan


def test_plan_covers_tiers_fractions_and_mixes():
    pts = plan(fractions=(0.5, 1.0), mixes=[("micro",), ("micro", "meso")])
    assert [p.label for p in pts if p.family == "tiers"] == [
        "core", "core+orbit", "core+orbit+fractal"]
    assert [p.fraction for p in pts if p.family == "fractions"] == [0.5, 1.0]
    assert [p.levels for p in pts if p.family == "mix"] == [("micro",), ("micro", "meso")]
    with pytest.raises(ConfigError, match="levels must be among"):
        plan(mixes=[("mega",)])
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        plan(fractions=(1.5,))


def test_saturate_end_to_end(mini_project, tiny_base, tmp_path):
    out = tmp_path / "sat"
    r = CliRunner().invoke(main, ["saturate", "--base", str(tiny_base), "--out", str(out),
                                  "--fractions", "0.5,1", "--mix", "micro", "--epochs", "1",
                                  "--max-scenes", "6"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "saturation.json").read_text())
    by = {(p["family"], p["label"]): p for p in res["points"]}
    core = by[("tiers", "core")]["train_scenes"]
    both = by[("tiers", "core+orbit")]["train_scenes"]
    half = by[("fractions", "50% of scenes")]["train_scenes"]
    full = by[("fractions", "100% of scenes")]["train_scenes"]
    assert core < both == full == 30 and 0 < half < full  # the mini corpus: 30 train scenes
    assert by[("tiers", "core+orbit+fractal")]["metrics"] == by[("fractions", "100% of scenes")][
        "metrics"]  # the same condition is trained once
    assert all(p["metrics"]["heldout_scenes"] == 6 for p in res["points"])
    assert (out / "saturation.png").stat().st_size > 5000
    assert "--mix micro" in res["command"] and "saturation.png" in (out / "saturation.md").read_text()
    r = CliRunner().invoke(main, ["saturate", "--fractions", "x"])
    assert r.exit_code == 1 and "--fractions" in r.output
