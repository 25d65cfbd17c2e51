"""`glyph export --multi-lora`: one base with every glyph row, plain LoRA adapters, exact
combinations, routing — reloaded here with plain transformers + peft, independently of the
export's own check; and `glyph route`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from glyph.cli import main  # noqa: E402
from glyph.serving.multilora import _combined  # noqa: E402
from glyph.serving.routes import Routing  # noqa: E402
from glyph.serving.routing import GlyphModel  # noqa: E402

from .conftest import train_config  # noqa: E402


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def _reload(out: Path):
    """The export through plain transformers + peft only: base, tokenizer, every adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    routing = json.loads((out / "routing.json").read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(out / "base")
    base = AutoModelForCausalLM.from_pretrained(out / "base").eval()
    pm = None
    for name, path in routing["adapters"].items():
        if pm is None:
            pm = PeftModel.from_pretrained(base, out / path, adapter_name=name).eval()
        else:
            pm.load_adapter(out / path, adapter_name=name)
    return routing, tok, pm


def _check(run_dir: Path, out: Path, tied: bool) -> dict:
    """Every adapter of the export against the run's own routed model; return max |Δ| each."""
    gm = GlyphModel.load(run_dir)
    routing, tok, pm = _reload(out)
    diffs = {}
    for name in routing["adapters"]:
        triggers = routing["combinations"].get(name, [name])
        text = "".join(s for s, t in routing["glyphs"].items() if t in triggers) + " fire and stairs"
        assert gm.triggers_in(text) and Routing.read(out).model_for(text) == name
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        pm.set_adapter(name)
        with torch.no_grad():
            got = pm(input_ids=ids).logits
        want = gm.route_logits(text, ids=ids)
        foreign = [g.id for g in gm.manifest.glyphs if g.trigger not in triggers]
        keep = torch.ones(got.shape[-1], dtype=torch.bool)
        if tied and foreign:  # other triggers' glyph rows are output rows of the one base
            keep[torch.tensor(foreign)] = False
        diffs[name] = (got - want)[..., keep].abs().max().item()
    return diffs


def test_multi_lora_export_tied_with_a_combination(project, tmp_path):
    out = tmp_path / "ml"
    r = run("export", str(project.run), "--multi-lora", str(out), "--combine", "initiation+body",
            "--model-name", "mini")
    assert r.exit_code == 0, r.output
    assert "vllm serve" in r.output and "--lora-modules" in r.output
    assert sorted(p.name for p in (out / "adapters").iterdir()) == ["body", "body+initiation",
                                                                    "initiation"]
    for a in (out / "adapters").iterdir():  # plain LoRA: what vLLM's and peft's loaders read
        cfg = json.loads((a / "adapter_config.json").read_text())
        assert cfg["trainable_token_indices"] is None and cfg["modules_to_save"] is None
        from safetensors.torch import load_file

        keys = load_file(str(a / "adapter_model.safetensors"))
        assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    combo = json.loads((out / "adapters/body+initiation/adapter_config.json").read_text())
    assert combo["r"] == 8 and combo["lora_alpha"] == 8  # 4 + 4, scale folded into B
    diffs = _check(project.run, out, tied=True)
    assert set(diffs) == {"body", "initiation", "body+initiation"}
    assert max(diffs.values()) <= 1e-4
    report = json.loads((out / "glyph_export.json").read_text())
    free = report["glyph_free"]  # tied: glyph-free text differs only in glyph-token logits
    assert not free["exact"] and free["max_abs_logit_diff_glyph_columns"] > 0
    assert free["kl_original_vs_export_per_token"] > 0  # measured and reported, not hidden
    from transformers import AutoModelForCausalLM

    manifest = json.loads((project.run / "manifest.json").read_text())
    original = AutoModelForCausalLM.from_pretrained(manifest["base"]["path"]).eval()
    exported = AutoModelForCausalLM.from_pretrained(out / "base").eval()
    ids = _reload(out)[1]("the floor is warm and the stairs go up", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = original(input_ids=ids).logits, exported(input_ids=ids).logits
    glyph_cols = torch.tensor([g["id"] for g in manifest["glyphs"]])
    keep = torch.ones(a.shape[-1], dtype=torch.bool)
    keep[glyph_cols] = False
    assert torch.equal(a[..., keep], b[..., keep]) and not torch.equal(a, b)
    r = run("export", str(project.run), "--multi-lora", str(out))
    assert r.exit_code == 1 and "--overwrite" in r.output


def test_multi_lora_export_untied_is_exact_on_glyph_free_text(mini_project, tiny_untied_base,
                                                             tmp_path):
    from transformers import AutoModelForCausalLM

    from glyph.training.recipe import train

    res = train(train_config(mini_project / "run-u", tiny_untied_base, steps=6),
                log=lambda m: None, progress=False)
    out = tmp_path / "ml-u"
    r = run("export", str(res.out), "--multi-lora", str(out))
    assert r.exit_code == 0, r.output
    assert max(_check(res.out, out, tied=False).values()) <= 1e-4
    _, tok, _ = _reload(out)
    ids = tok("the floor is warm and the stairs go up", return_tensors="pt")["input_ids"]
    exported = AutoModelForCausalLM.from_pretrained(out / "base").eval()
    original = AutoModelForCausalLM.from_pretrained(tiny_untied_base).eval()
    with torch.no_grad():
        assert torch.equal(exported(input_ids=ids).logits, original(input_ids=ids).logits)
    assert json.loads((out / "glyph_export.json").read_text())["glyph_free"]["exact"]


def test_a_combined_adapter_is_the_exact_sum_of_its_parts():
    g = torch.Generator().manual_seed(0)
    mods = ["m.q_proj", "m.v_proj"]

    def part(r: int, alpha: int, skip: str | None = None):
        w = {}
        for m in mods:
            if m != skip:
                w[f"{m}.lora_A.weight"] = torch.randn(r, 6, generator=g)
                w[f"{m}.lora_B.weight"] = torch.randn(5, r, generator=g)
        return {"r": r, "lora_alpha": alpha, "target_modules": ["q_proj", "v_proj"]}, w

    a, b = part(4, 8), part(2, 7, skip="m.v_proj")  # another rank; one module not adapted
    cfg, w = _combined([a, b], "base")
    assert cfg["r"] == cfg["lora_alpha"] == 6
    for m in mods:
        want = sum((c["lora_alpha"] / c["r"]) * p[f"{m}.lora_B.weight"] @ p[f"{m}.lora_A.weight"]
                   for c, p in (a, b) if f"{m}.lora_A.weight" in p)
        got = w[f"{m}.lora_B.weight"] @ w[f"{m}.lora_A.weight"]
        assert torch.allclose(got, want, atol=1e-5)


def test_route_names_the_adapter_a_prompt_needs(project, tmp_path):
    for text, want in (("plain words", "run"), ("⟁ stairs", "initiation"),
                       ("🫁 slow", "body"), ("🫁 and 🜂\ufe0f", "body+initiation")):
        r = run("route", text)
        assert r.exit_code == 0 and r.output.strip() == want, r.output
    rules = Routing(model="mini", glyphs={"⟁": "initiation", "🫁": "body"})
    with pytest.raises(Exception, match="--combine body\\+initiation"):
        rules.model_for("⟁ and 🫁")
    r = run("route", "x", "--export", str(tmp_path / "none"))
    assert r.exit_code == 1 and "glyph export" in r.output and r.output.count("\n") == 1
    (tmp_path / "damaged").mkdir()
    for content in ("[]", "{bad", '{"version": 1}', '{"version": 1, "model": "m", "glyphs": {"⟁": 3}}'):
        (tmp_path / "damaged" / "routing.json").write_text(content, encoding="utf-8")
        r = run("route", "⟁", "--export", str(tmp_path / "damaged"))
        assert r.exit_code == 1 and r.output.startswith("error: ") and "export again" in r.output
        assert r.output.count("\n") == 1 and "internal error" not in r.output, r.output


def test_multi_lora_refuses_bad_requests(project, tmp_path):
    for args, msg in ((["--combine", "body+dance"], "two or more of the run's triggers"),
                      (["--combine", "body"], "two or more"),):
        r = run("export", str(project.run), "--multi-lora", str(tmp_path / "x"), *args)
        assert r.exit_code == 1 and msg in r.output and r.output.count("\n") == 1
    r = run("export", str(project.run))
    assert r.exit_code == 1 and "--merged OUT or --multi-lora OUT" in r.output
    assert not (tmp_path / "x").exists()
