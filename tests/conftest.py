"""Shared fixtures: every test gets its own registry, scene dir and GLYPH_HOME under tmp_path."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STARTER_REGISTRY = REPO / "glyphs_registry.yaml"
STARTER_SCENES = REPO / "glyphs"


@pytest.fixture(scope="session")
def glyph_home(tmp_path_factory) -> Path:
    """One GLYPH_HOME per test session: the rebuilt Qwen tokenizer is built once per run."""
    return tmp_path_factory.mktemp("glyph-home")


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch, glyph_home):
    """Point all glyph state at tmp_path so tests never touch the user's files."""
    home = glyph_home
    monkeypatch.setenv("GLYPH_HOME", str(home))
    monkeypatch.setenv("GLYPH_REGISTRY", str(tmp_path / "glyphs_registry.yaml"))
    monkeypatch.setenv("GLYPH_SCENES", str(tmp_path / "glyphs"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
def empty_registry(tmp_path) -> Path:
    from glyph import registry

    p = tmp_path / "glyphs_registry.yaml"
    registry.init(p)
    return p


@pytest.fixture
def starter_registry(tmp_path) -> Path:
    p = tmp_path / "glyphs_registry.yaml"
    shutil.copy(STARTER_REGISTRY, p)
    return p


# Hypothesis: derandomized by default so CI is reproducible (a failure found once is found
# every time); `pytest --hypothesis-profile=explore` searches with fresh randomness.
from hypothesis import settings as _hsettings  # noqa: E402

_hsettings.register_profile("default", derandomize=True, deadline=None)
_hsettings.register_profile("explore", derandomize=False, deadline=None, max_examples=500)
_hsettings.load_profile("default")
