"""The house rules: layers, one owner per concept, no hidden global state — each as a test."""
from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

SRC = Path(__file__).resolve().parents[1] / "src" / "glyph"
# data-flow order: a module may import its own layer and the ones before it, never after
LAYERS = ["limits", "errors", "display", "paths", "readers", "locks", "files", "gguf", "vocab",
          "corpus", "model", "run", "training", "serving", "evaluation", "demo", "cli"]


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else "__init__"


def _glyph_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, top-level glyph layer)`` of every import of a glyph module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = path.relative_to(SRC).parent.parts
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(pkg[: len(pkg) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.startswith("glyph."):
                names = [node.module.split(".")[1]]
            else:
                continue
            out += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[1]) for a in node.names
                    if a.name.startswith("glyph.")]
    return out


def test_no_module_imports_a_later_layer():
    bad = []
    for f in SRC.rglob("*.py"):
        own = _layer(f)
        if own == "__init__":
            continue
        for line, target in _glyph_imports(f):
            target = target.removesuffix(".py")
            if target in LAYERS and LAYERS.index(target) > LAYERS.index(own):
                bad.append(f"{f.relative_to(SRC)}:{line} imports {target}")
    assert not bad, bad


def test_token_ids_are_spelled_only_by_the_family_spec():
    """No Qwen id literal (1516xx / 1519xx) outside vocab/qwen.py and vocab/family.py."""
    allowed = {SRC / "vocab" / "qwen.py", SRC / "vocab" / "family.py"}
    found = []
    for f in SRC.rglob("*.py"):
        if f in allowed:
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and type(node.value) is int \
                    and 151_000 <= node.value < 152_000:
                found.append(f"{f.relative_to(SRC)}:{node.lineno}: {node.value}")
    assert not found, found


def test_modules_and_functions_stay_small():
    big = [f"{f.relative_to(SRC)} ({n} lines)" for f in SRC.rglob("*.py")
           if (n := len(f.read_text(encoding="utf-8").splitlines())) > 400]
    assert not big, big
    long = []
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 70:
                    long.append(f"{f.relative_to(SRC)}:{node.name} ({n} lines)")
    assert not long, long


def test_docstring_examples_run():
    """Every module's ``>>>`` examples hold; those that need a trained run say ``+SKIP``."""
    import doctest
    import importlib

    failed, ran = [], 0
    for f in sorted(SRC.rglob("*.py")):
        if f.name == "__main__.py":  # importing it runs the CLI
            continue
        name = ".".join(("glyph",) + f.relative_to(SRC).with_suffix("").parts)
        module = importlib.import_module(name.removesuffix(".__init__"))
        res = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        ran += res.attempted
        if res.failed:
            failed.append(f"{name}: {res.failed} of {res.attempted} failed (printed above)")
    assert not failed, failed
    assert ran >= 40, f"only {ran} examples ran: were the modules found?"


# ---------------------------------------------------------------- scoped adapters and RNG
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def gm(trained_project):
    from glyph.serving.routing import GlyphModel
    from glyph.vocab import registry

    return GlyphModel.load(trained_project.run, registry=registry.load(trained_project.registry))


def test_active_adapters_are_scoped_and_restored(gm):
    from glyph.model.adapters import active, active_names

    before = active_names(gm.model)
    with active(gm.model, "body"):
        assert active_names(gm.model) == ["body"]
        with active(gm.model, ["initiation", "body"]):
            assert all(set(m.active_adapters) == {"initiation", "body"}
                       for m in gm.model.modules() if hasattr(m, "lora_A") and m.lora_A)
        assert active_names(gm.model) == ["body"]
    assert active_names(gm.model) == before
    with pytest.raises(KeyError):
        with active(gm.model, "initiation" if before != ["initiation"] else "body"):
            raise KeyError("the block fails")
    assert active_names(gm.model) == before  # restored on the way out of an exception
    ids = torch.tensor([[151669, 5, 6]])
    with torch.no_grad(), active(gm.model, None):
        plain = gm.model(input_ids=ids).logits
    with torch.no_grad():
        base_logits = gm.run.load_base()(input_ids=ids).logits
    assert torch.equal(plain, base_logits)  # None = the untouched base


def test_generation_and_loading_leave_the_global_rng_alone(gm, trained_project):
    state = torch.get_rng_state()
    gm.generate(["⟁ stairs"], temperature=1.0, max_new_tokens=4, seed=3)
    gm.run.load_base()
    assert torch.equal(torch.get_rng_state(), state)
    a = gm.generate(["⟁ stairs"], temperature=1.0, max_new_tokens=6, seed=3)[0].text
    torch.manual_seed(12345)  # whatever the caller's state, the seed decides
    assert gm.generate(["⟁ stairs"], temperature=1.0, max_new_tokens=6, seed=3)[0].text == a


def test_fast_rows_checks_peft_internals_loudly(monkeypatch):
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    from glyph.serving import fast_rows

    fast_rows.check_peft_internals()  # the installed peft has what the patch uses
    monkeypatch.delattr(TrainableTokensLayer, "_check_overlapping_tokens")
    with pytest.raises(RuntimeError, match="peft changed: .*_check_overlapping_tokens"):
        fast_rows.check_peft_internals()


# ---------------------------------------------------------------- the run directory
@pytest.mark.parametrize("edit, says", [
    (lambda m: "[1, 2]", "must be a JSON object"),
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: json.dumps({**m, "triggers": []}), "triggers must be"),
    (lambda m: json.dumps({**m, "base": {**m["base"], "rows": "many"}}), "base.rows must be"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "glyphs"}), "glyphs must be"),
    (lambda m: json.dumps({**m, "version": 99}), "run format 99 is not supported"),
    (lambda m: json.dumps({**m, "prompt_lead": "ignore the glyph"}), "prompt_lead must be"),
    (lambda m: json.dumps({**m, "prompt_lead": 1}), "prompt_lead must be a JSON string"),
])
def test_a_damaged_manifest_is_one_clear_error(trained_project, tmp_path, edit, says):
    from glyph.errors import ModelError
    from glyph.run import Run

    run = tmp_path / "run"
    shutil.copytree(trained_project.run, run)
    m = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(edit(m))
    with pytest.raises(ModelError, match=says) as e:
        Run(run).manifest()
    assert "\n" not in str(e.value)


def test_a_run_refuses_a_base_that_changed(trained_project, tmp_path):
    from glyph.errors import ModelError
    from glyph.run import Run

    run, base = tmp_path / "run", tmp_path / "base"
    shutil.copytree(trained_project.run, run, ignore=shutil.ignore_patterns("index", "eval"))
    m = json.loads((run / "manifest.json").read_text())
    shutil.copytree(m["base"]["path"], base)
    m["base"]["path"] = str(base)
    (run / "manifest.json").write_text(json.dumps(m))
    Run(run).base_dir()  # a copy of the same base: accepted
    cfg = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 1e-5}))
    with pytest.raises(ModelError, match="not the one run .* was trained on"):
        Run(run).load_model()


# ---------------------------------------------------------------- config as validated data
def test_train_options_come_from_the_config():
    from dataclasses import fields

    from glyph.cli import main
    from glyph.training.config import TrainConfig

    help_text = CliRunner().invoke(main, ["train", "--help"], terminal_width=200).output
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert (flag in help_text) == f.metadata.get("cli", False) or f.name == "out", flag
    assert "[default: 8]" in help_text and "LoRA alpha (default: 2 × rank)" in help_text
    assert TrainConfig(out=Path("x"), lora_r=4).lora_alpha == 8


@pytest.mark.parametrize("kw, says", [
    (dict(steps=3, epochs=1.0), "either --steps or --epochs"), (dict(lr=0), "--lr must be"),
    (dict(batch_size=0), "--batch-size must be"), (dict(tiers=("moon",)), "unknown tier"),
    (dict(fraction=1.5), "--fraction 1.5"), (dict(init="zeros"), "unknown --init"),
    (dict(adapters="scene"), "unknown --adapters 'scene'; use auto, trigger, glyph"),
])
def test_train_config_is_checked_when_made(kw, says):
    from glyph.errors import ConfigError
    from glyph.training.config import TrainConfig

    with pytest.raises(ConfigError, match=says):
        TrainConfig(out=Path("x"), **kw)
