"""Compare training objectives on a real base: train each, score held-out scenes, one table.

Each condition is a ``glyph train`` run on the same base, data, seed and step budget; each is
scored on the same held-out scenes with the NLL metrics of ``glyph eval`` (specificity of the
glyph and of its written meaning, specific gains). Results go to a markdown file with the
commands that produced them, and each run directory is kept for a full ``glyph eval``.

    GLYPH_HOME=… python tools/compare_objectives.py --base model.gguf --steps 60 \\
        --levels micro,meso --eval-scenes 56 --out benchmarks/objectives.md \\
        --condition "lm" --condition "lm --init meaning" \\
        --condition "distill --init meaning" --condition "distill --contrast 1 --init meaning"
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def train(a, cond: str, out: Path) -> dict:
    if a.reuse and (out / "manifest.json").exists():  # trained by an earlier call: same command
        manifest = json.loads((out / "manifest.json").read_text())
        written = out / ".command"  # absent when the run was trained by hand, not by this tool
        return {"command": written.read_text() if written.exists() else f"(trained by hand: {out})",
                "minutes": 0.0,
                "train_seconds": manifest["metrics"]["seconds"],
                "heldout_loss": manifest["metrics"]["heldout_loss"]}
    cmd = ["glyph", "train", "--base", a.base, "--out", str(out), "--steps", str(a.steps),
           "--batch-size", str(a.batch), "--seed", str(a.seed), "--overwrite"]
    if a.levels:
        cmd += ["--levels", a.levels]
    words = shlex.split(cond)
    cmd += (["--objective", words[0]] if words and not words[0].startswith("--") else []) + \
        [w for i, w in enumerate(words) if not (i == 0 and not w.startswith("--"))]
    t0 = time.time()
    subprocess.run([str(Path(sys.executable).with_name("glyph")), *cmd[1:]], check=True)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / ".command").write_text(" ".join(shlex.quote(w) for w in cmd))
    return {"command": " ".join(shlex.quote(w) for w in cmd), "minutes": (time.time() - t0) / 60,
            "train_seconds": manifest["metrics"]["seconds"],
            "heldout_loss": manifest["metrics"]["heldout_loss"]}


def score(run: Path, eval_scenes: int, levels: str | None) -> dict:
    from glyph.corpus import scenes
    from glyph.evaluation.metrics import Measures, evaluate
    from glyph.vocab import registry

    reg = registry.load()
    corpus = scenes.load_corpus(reg)
    if levels:  # held-out scenes of the levels trained on
        keep = set(levels.split(","))
        corpus = scenes.Corpus([s for s in corpus.scenes if s.level in keep], corpus.files)
    t0 = time.time()
    # what depends on how the run trained: the glyphs' NLLs (the meanings' are the base's,
    # computed once per base); KL, base preservation and the index are left to `glyph eval`
    m = evaluate(run, registry=reg, corpus=corpus, max_scenes=eval_scenes,
                 measures=Measures(kl=False, preservation=False, retrieval=False))
    # the whole evaluation too (per glyph, per register, plots): run/eval-compare/
    from glyph.evaluation.metrics import write_metrics
    from glyph.evaluation.report import write_report

    write_metrics(m, run / "eval-compare")
    write_report(m, run / "eval-compare", command=f"tools/compare_objectives.py (scoring {run}, "
                 f"{eval_scenes} held-out scenes of levels {levels or 'all'})")
    o = m["overall"]
    return {"scenes": o["scenes"], "spec": o["specificity"]["accuracy"],
            "spec_meaning": o["specificity"]["meaning_accuracy"],
            "chance": o["specificity"]["chance"], "gain": o["specific_gain"]["glyph"],
            "gain_meaning": o["specific_gain"]["meaning"], "own": o["nll"]["own"],
            "none": o["nll"]["none"], "meaning": o["nll"]["meaning"],
            "eval_minutes": (time.time() - t0) / 60}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--condition", action="append", required=True,
                    help="objective and extra train options, e.g. 'distill --contrast 1'")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--levels", default=None)
    ap.add_argument("--eval-scenes", type=int, default=56)
    ap.add_argument("--runs", default="runs/objectives")
    ap.add_argument("--out", default="benchmarks/objectives.md")
    ap.add_argument("--reuse", action="store_true", help="keep runs an earlier call trained")
    a = ap.parse_args()
    results = []
    for i, cond in enumerate(a.condition):
        run = Path(a.runs) / f"{i}-{cond.split()[0] if cond.split() else 'lm'}"
        row = {"condition": cond, **train(a, cond, run), **score(run, a.eval_scenes, a.levels)}
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        write(Path(a.out), results, a)


def write(path: Path, results: list[dict], a) -> None:
    me = " ".join(shlex.quote(w) for w in ["python", "tools/compare_objectives.py", *sys.argv[1:]])
    lines = ["# Objectives on a real base", "",
             f"Command: `{me}`", "",
             f"Base `{a.base}`; {a.steps} steps of {a.batch} scenes"
             + (f" (levels {a.levels})" if a.levels else "") + f", seed {a.seed}; each run "
             f"scored on the same {results[0]['scenes']} held-out scenes. spec / spec·m: how often "
             "the own glyph (with its adapter) / its written meaning (on the base) gives a "
             f"scene the lowest NLL of all {round(1 / results[0]['chance'])} glyphs' (chance "
             f"{results[0]['chance']:.3f}); gain / gain·m: specific gain (another − own, nats "
             "per token).", "",
             "| condition | train min | spec | spec·m | gain | gain·m | NLL own | none | "
             "meaning | held-out loss |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| `{r['condition']}` | {r['train_seconds'] / 60:.1f} | {r['spec']:.2f} | "
                     f"{r['spec_meaning']:.2f} | {r['gain']:.3f} | {r['gain_meaning']:.3f} | "
                     f"{r['own']:.3f} | {r['none']:.3f} | {r['meaning']:.3f} | "
                     f"{r['heldout_loss']:.3f} |")
    lines += ["", "Train commands:", ""] + [f"- `{r['command']}`" for r in results] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
