"""Shared fixtures: every test gets its own registry, scene dir and GLYPH_HOME under tmp_path."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the caller's own GLYPH_HOME, before any test points it elsewhere: opt-in real-base tests
# keep their (large, slow to build) GGUF conversion there across sessions
CALLER_GLYPH_HOME = os.environ.get("GLYPH_HOME")
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
    # Library code must never leave autograd switched off behind it (a ``yield`` inside
    # ``torch.no_grad()`` once did, and training in a later test could not backpropagate).
    torch = sys.modules.get("torch")
    if torch is not None:
        assert torch.is_grad_enabled(), "a test or library call left torch grad mode disabled"


@pytest.fixture
def empty_registry(tmp_path) -> Path:
    from glyph.vocab import registry

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


# ---------------------------------------------------------------- tiny projects and models
# A mini project: 3 glyphs (2 triggers) whose scenes use disjoint word lists, so a trained
# glyph provably helps its own scenes; 14 scenes each, 4 of them held out explicitly.
WORDS = {
    "⟁": "stairs heat fear empty floor step climb upward rung ladder summit",
    "🜂": "fire ash flame smoke kiln burn ember purify coal furnace",
    "🫁": "breath lungs inhale exhale ribs air chest slow pause body",
}
REGISTERS = ["poetry", "logic"]
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16)


def scene_text(sym: str, k: int) -> str:
    w = WORDS[sym].split()
    return " ".join(w[(k + j) % len(w)] for j in range(12)) + "."


def write_mini_project(reg_path: Path, scene_dir: Path) -> None:
    """Write the mini project's registry and corpus at the given paths."""
    import yaml

    from glyph.corpus import edit
    from glyph.vocab import registry

    registry.init(reg_path)
    registry.add("⟁", name="ascent", meaning="heat and fear become a step up",
                 trigger="initiation", path=reg_path)
    registry.add("🜂", name="fire", meaning="alchemical fire purifies", trigger="initiation",
                 path=reg_path)
    registry.add("🫁", name="breath", meaning="breath of the body", trigger="body", path=reg_path)
    reg = registry.load(reg_path)
    n = 0
    for sym in WORDS:
        for k in range(14):
            n += 1
            edit.add(reg, glyphs=[sym], register=REGISTERS[k % 2], level="micro",
                       tier="core" if k < 10 else "orbit", lang="en", text=scene_text(sym, k),
                       scene_id=f"Δ{n}", directory=scene_dir)
    for f in scene_dir.glob("*.yaml"):  # an explicit split: tests never depend on the id hash
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        for i, s in enumerate(data["scenes"]):
            s["split"] = "heldout" if i % 7 == 3 or i % 7 == 6 else "train"
        f.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture
def mini_project(tmp_path: Path) -> Path:
    """The mini project in this test's registry and scene dir (GLYPH_REGISTRY/GLYPH_SCENES)."""
    import os

    write_mini_project(Path(os.environ["GLYPH_REGISTRY"]), Path(os.environ["GLYPH_SCENES"]))
    return tmp_path


def _build_base(tmp_path_factory, glyph_home, name: str, **kw) -> Path:
    import os

    os.environ["GLYPH_HOME"] = str(glyph_home)
    from glyph.model.tiny import build_tiny_base

    texts = [scene_text(s, k) for s in WORDS for k in range(14)] * 2
    out = tmp_path_factory.mktemp("bases") / name
    return build_tiny_base(out, texts, config_overrides=TINY, **kw)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, glyph_home) -> Path:
    """A tiny Qwen3 (hidden 32, 1 layer, tied) with the real tokenizer, briefly warmed up."""
    return _build_base(tmp_path_factory, glyph_home, "tiny-tied", steps=30)


@pytest.fixture(scope="session")
def tiny_untied_base(tmp_path_factory, glyph_home) -> Path:
    return _build_base(tmp_path_factory, glyph_home, "tiny-untied", steps=10, tied=False)


def train_config(out: Path, base: Path, **kw):
    from glyph.training.config import TrainConfig

    # adapters per trigger: the mini registry's ⟁ and 🜂 share one, which many tests rely on
    args = dict(out=str(out), base=str(base), steps=24, batch_size=4, lr=5e-3, embedding_lr=5e-2,
                eval_every=8, save_every=8, lora_r=4, lora_alpha=8, max_len=64,
                adapters="trigger")
    args.update(kw)
    return TrainConfig(**args)


class Project:
    """A trained mini project shared by the tests of one session (read-only for them)."""

    def __init__(self, root: Path, run: Path):
        self.root, self.run = root, run
        self.registry = root / "glyphs_registry.yaml"
        self.scenes = root / "glyphs"


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, glyph_home, tiny_base) -> Project:
    """The mini project trained once (60 steps) with its scene index built."""
    import os

    from glyph.corpus import scenes
    from glyph.serving.service import GlyphService
    from glyph.training.recipe import train
    from glyph.vocab import registry

    root = tmp_path_factory.mktemp("project")
    write_mini_project(root / "glyphs_registry.yaml", root / "glyphs")
    saved = {k: os.environ.get(k) for k in ("GLYPH_REGISTRY", "GLYPH_SCENES", "GLYPH_HOME")}
    os.environ.update(GLYPH_REGISTRY=str(root / "glyphs_registry.yaml"),
                      GLYPH_SCENES=str(root / "glyphs"), GLYPH_HOME=str(glyph_home))
    try:
        # init "meaning": each glyph starts from its own topic words, so 60 steps on a barely
        # warmed-up base make a case where each glyph provably helps its own scenes
        res = train(train_config(root / "run", tiny_base, steps=60, init="meaning"),
                    log=lambda m: None, progress=False)
        reg = registry.load()
        GlyphService.load(res.out, registry=reg, with_index=False).build_index(
            scenes.load_corpus(reg))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Project(root, res.out)


@pytest.fixture
def project(trained_project, monkeypatch) -> Project:
    """Point GLYPH_REGISTRY / GLYPH_SCENES / GLYPH_RUN at the shared trained project."""
    monkeypatch.setenv("GLYPH_REGISTRY", str(trained_project.registry))
    monkeypatch.setenv("GLYPH_SCENES", str(trained_project.scenes))
    monkeypatch.setenv("GLYPH_RUN", str(trained_project.run))
    return trained_project
