"""The saturation experiment: how much data does a glyph need before it carries its scene?

Three families of runs, all on the same base, seed and held-out set, each evaluated with the
NLL metrics of :mod:`glyph.evaluate` (held-out NLL with the own glyph / no glyph / another
glyph, and specificity):

- **tiers** — core → core + orbit → core + orbit + fractal (the mission's corpus tiers);
- **fractions** — growing, nested shares of all training scenes (25 % ⊂ 50 % ⊂ 100 %);
- **mix** (optional) — the micro / meso / macro mix, e.g. ``micro`` vs ``micro,meso`` vs all.

Every run trains for the same number of epochs, so bigger data means more steps, as in a
real sweep. Results: ``saturation.json``, ``saturation.png`` (held-out NLL and specificity
against the number of training scenes) and ``saturation.md``, each naming the command.

Example::

    >>> res = saturate(Path("runs/saturation"), fractions=(0.25, 1.0))  # doctest: +SKIP
    >>> [p["train_scenes"] for p in res["points"]]                    # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError

TIER_STAGES = (("core",), ("core", "orbit"), ("core", "orbit", "fractal"))


@dataclass
class Point:
    """One run of the experiment and its held-out metrics."""

    family: str
    label: str
    tiers: tuple[str, ...]
    levels: tuple[str, ...]
    fraction: float
    train_scenes: int = 0
    steps: int = 0
    metrics: dict = field(default_factory=dict)


def plan(fractions=(0.25, 0.5, 1.0), mixes=(), tiers: bool = True) -> list[Point]:
    """The runs of an experiment (a condition already planned is not repeated)."""
    from ..corpus import scenes

    points: list[Point] = []
    if tiers:
        for stage in TIER_STAGES:
            points.append(Point("tiers", "+".join(stage), stage, (), 1.0))
    for f in fractions:
        if not 0 < f <= 1:
            raise ConfigError(f"--fractions: {f} must be in (0, 1]")
        points.append(Point("fractions", f"{f:.0%} of scenes", scenes.TIERS, (), f))
    for mix in mixes:
        bad = [lv for lv in mix if lv not in scenes.LEVELS]
        if bad or not mix:
            raise ConfigError(f"--mix {','.join(mix)}: levels must be among "
                              f"{', '.join(scenes.LEVELS)}")
        points.append(Point("mix", ",".join(mix), scenes.TIERS, tuple(mix), 1.0))
    return points


def _key(p: Point) -> tuple:
    return (tuple(p.tiers), tuple(p.levels) or None, p.fraction)


def saturate(out: Path, *, base: str | None = None, fractions=(0.25, 0.5, 1.0), mixes=(),
             tiers: bool = True, epochs: float = 2.0, seed: int = 0, max_scenes: int | None = 112,
             command: str = "glyph saturate", log: Callable[[str], None] = print) -> dict:
    """Train and evaluate every planned run under ``out/runs/``; write the results; return them."""
    from ..corpus import scenes
    from ..training.config import TrainConfig
    from ..training.recipe import train
    from ..vocab import registry
    from .metrics import evaluate

    out = Path(out)
    points = plan(fractions, mixes, tiers)
    reg = registry.load()
    corpus = scenes.load_corpus(reg)
    done: dict[tuple, Point] = {}
    t0 = time.time()
    for i, p in enumerate(points, 1):
        if _key(p) in done:  # e.g. all tiers == 100 % of scenes: one run serves both
            prev = done[_key(p)]
            p.train_scenes, p.steps, p.metrics = prev.train_scenes, prev.steps, prev.metrics
            continue
        run = out / "runs" / f"{p.family}-{i}"
        log(f"[{i}/{len(points)}] {p.family}: {p.label} → {run}")
        cfg = TrainConfig(out=run, base=base, tiers=p.tiers, levels=p.levels,
                          fraction=p.fraction, epochs=epochs, seed=seed,
                          save_every=10 ** 9, eval_every=10 ** 9)
        res = train(cfg, overwrite=True, log=lambda m: None, progress=False)
        m = evaluate(res.out, registry=reg, corpus=corpus, max_scenes=max_scenes, light=True)
        p.train_scenes, p.steps = res.metrics["train_examples"], res.steps
        p.metrics = {"nll": m["overall"]["nll"], "specificity": m["overall"]["specificity"],
                     "gain_vs_none": m["overall"]["gain_vs_none"],
                     "gain_vs_other": m["overall"]["gain_vs_other"],
                     "heldout_scenes": m["overall"]["scenes"]}
        done[_key(p)] = p
        log(f"    {p.train_scenes} scenes, {p.steps} steps: held-out NLL own "
            f"{m['overall']['nll']['own']:.3f} (none {m['overall']['nll']['none']:.3f}), "
            f"specificity {m['overall']['specificity']['accuracy']:.2f}")
    result = {"version": 1, "command": command, "base": base or "tiny-qwen3 (embedded default)",
              "seed": seed, "epochs": epochs, "max_scenes": max_scenes,
              "seconds": round(time.time() - t0, 1), "points": [asdict(p) for p in points]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "saturation.json").write_text(json.dumps(result, ensure_ascii=False, indent=2),
                                         encoding="utf-8")
    plot(result, out / "saturation.png")
    (out / "saturation.md").write_text(markdown(result), encoding="utf-8")
    return result


def plot(result: dict, path: Path) -> Path:
    """Held-out NLL (own / none / other) and specificity against training scenes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"tiers": ("o", "-"), "fractions": ("s", "--"), "mix": ("^", ":")}
    for fam, (mk, ls) in styles.items():
        pts = sorted((p for p in result["points"] if p["family"] == fam),
                     key=lambda p: p["train_scenes"])
        if not pts:
            continue
        x = [p["train_scenes"] for p in pts]
        a.plot(x, [p["metrics"]["nll"]["own"] for p in pts], marker=mk, ls=ls,
               label=f"own glyph ({fam})")
        a.plot(x, [p["metrics"]["nll"]["other"] for p in pts], marker=mk, ls=ls, alpha=0.5,
               label=f"other glyph ({fam})")
        b.plot(x, [p["metrics"]["specificity"]["accuracy"] for p in pts], marker=mk, ls=ls,
               label=fam)
        dy = {"tiers": 4, "fractions": -10, "mix": 12}[fam]  # shared points: labels apart
        for p in pts:
            b.annotate(p["label"], (p["train_scenes"], p["metrics"]["specificity"]["accuracy"]),
                       fontsize=6.5, xytext=(3, dy), textcoords="offset points", ha="right"
                       if p["train_scenes"] == max(x) else "left")
    none = [p["metrics"]["nll"]["none"] for p in result["points"]]
    if none:
        a.axhline(none[0], color="k", lw=0.8, ls="-.", label="no glyph (base)")
    chance = result["points"][0]["metrics"]["specificity"]["chance"] if result["points"] else 0
    b.axhline(chance, color="k", lw=0.8, ls="-.", label="chance")
    a.set_xlabel("training scenes")
    a.set_ylabel("held-out NLL (nats / token)")
    a.set_title("Saturation: held-out NLL")
    a.legend(fontsize=6.5)
    b.set_xlabel("training scenes")
    b.set_ylabel("specificity accuracy")
    b.set_title("Saturation: does the own glyph fit best?")
    b.legend(fontsize=7)
    fig.text(0.01, 0.005, f"base {result['base']} · seed {result['seed']} · {result['epochs']} "
             f"epochs · `{result['command']}`", fontsize=6.5, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def markdown(result: dict) -> str:
    lines = [f"# Saturation — `{result['command']}`", "",
             f"Base {result['base']}, seed {result['seed']}, {result['epochs']} epochs per run, "
             f"held-out set: {result['points'][0]['metrics']['heldout_scenes']} scenes "
             f"(every run the same); {result['seconds']} s in all.", "",
             "| family | condition | training scenes | steps | NLL own | NLL none | NLL other | "
             "specificity |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for p in result["points"]:
        m = p["metrics"]
        lines.append(f"| {p['family']} | {p['label']} | {p['train_scenes']} | {p['steps']} | "
                     f"{m['nll']['own']:.3f} | {m['nll']['none']:.3f} | {m['nll']['other']:.3f} | "
                     f"{m['specificity']['accuracy']:.2f} (chance "
                     f"{m['specificity']['chance']:.2f}) |")
    lines += ["", "![saturation](saturation.png)", ""]
    return "\n".join(lines)
