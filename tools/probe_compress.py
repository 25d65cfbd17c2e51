"""How often `glyph compress` names a held-out scene's own glyph first → benchmarks/compress.md.

Each held-out scene's text goes through ``GlyphService.compress`` (the base embeds it, the
index's saved projection brings it into the index's space) read three ways:

- **style known** (register, level and language given): the scene lands on its own index
  vector, so this must equal the per-scene retrieval ``glyph eval`` reports — a check;
- **register unknown** (level and language given): every register, averaged;
- **nothing known**: language guessed by script, level by length, every register.

Also: how often the guessed language and level are the scene's own, and seconds per text.

    python tools/probe_compress.py [--run RUN] [--max-scenes N] [--out benchmarks/compress.md]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

READINGS = {"style known": ("register", "level", "lang"), "register unknown": ("level", "lang"),
            "nothing known": ()}


def measure(svc, scene_list) -> dict:
    """Top-1 and top-3 rates per reading, the guesses' accuracy and the time per call."""
    rows = {name: [] for name in READINGS}
    guessed = {"lang": [], "level": []}
    seconds = {name: 0.0 for name in READINGS}
    for s in scene_list:
        for name, given in READINGS.items():
            t0 = time.perf_counter()
            out = svc.compress(s.text, k=3, **{k: getattr(s, k) for k in given})
            seconds[name] += time.perf_counter() - t0
            ranked = [g.symbol for g in out.glyphs]
            rows[name].append((ranked[0] == s.glyph, s.glyph in ranked))
            if not given:
                guessed["lang"].append(out.lang == s.lang)
                guessed["level"].append(out.level == s.level)
    n = max(1, len(scene_list))
    return {"readings": {name: {"top1": sum(a for a, _ in r) / n, "top3": sum(b for _, b in r) / n,
                                "seconds": seconds[name] / n} for name, r in rows.items()},
            "guess": {k: sum(v) / n for k, v in guessed.items()}, "scenes": len(scene_list)}


def report(run: Path, res: dict, retrieval: float | None) -> str:
    g = res["guess"]
    lines = [f"## `{run.name}` ({res['scenes']} held-out scenes)", "",
             "```bash", "python " + " ".join(sys.argv), "```", "",
             f"{platform.processor() or platform.machine()}, "
             f"{time.strftime('%Y-%m-%d')}; per-scene retrieval from the index "
             f"(`glyph eval`'s measure, same scenes): "
             f"{'–' if retrieval is None else f'{retrieval:.3f}'}", "",
             "| reading | own glyph first | own glyph in top 3 | s per call |",
             "|---|---:|---:|---:|"]
    for name, r in res["readings"].items():
        lines.append(f"| {name} | {r['top1']:.3f} | {r['top3']:.3f} | {r['seconds']:.2f} |")
    lines += ["", f"Guessed language right: {g['lang']:.3f}; level right: {g['level']:.3f}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="default: the default run")
    ap.add_argument("--max-scenes", type=int, default=None,
                    help="held-out scenes, the same share of every glyph (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="append the section to this file")
    args = ap.parse_args()

    from glyph.corpus import scenes
    from glyph.evaluation.metrics import _scenes, scene_retrieval
    from glyph.paths import default_run
    from glyph.serving.service import GlyphService
    from glyph.vocab import registry

    run = args.run or default_run()
    reg = registry.load()
    svc = GlyphService.load(run, registry=reg)
    scene_list = _scenes(scenes.load_corpus(reg), set(svc.model.glyphs), "heldout",
                         args.max_scenes)
    res = measure(svc, scene_list)
    ret = scene_retrieval(svc.index, scene_list, list(svc.model.glyphs))["overall"]["accuracy"]
    text = report(Path(run), res, ret)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
