"""Training commands: train (options generated from TrainConfig), saturate, demo."""
from __future__ import annotations

from pathlib import Path

import click

from ..training.config import TrainConfig
from .app import SafePath, command_line, csv, echo, main
from .options import config_from_options, config_options


@main.command()
@click.option("--out", required=True, type=SafePath(file_okay=False, path_type=Path),
              help="the run directory to write")
@config_options(TrainConfig, exclude={"out"})
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--overwrite", is_flag=True, help="replace the run in --out")
def train(out: Path, resume: bool, overwrite: bool, **options) -> None:
    """Train glyph rows + one LoRA adapter per trigger into a run directory."""
    from ..training.recipe import train as run_train

    cfg = config_from_options(TrainConfig, options, out=out)
    res = run_train(cfg, resume=resume, overwrite=overwrite, log=lambda m: echo(m, err=True))
    if not res.main:
        return  # a distributed run: the main process reports
    m = res.metrics
    echo(f"trained {res.steps} steps in {m['seconds']}s: train loss {m['train_loss_last']:.3f}, "
               f"held-out loss {m['heldout_loss']:.3f} ({m['heldout_examples']} scenes) → {res.out}")


@main.command()
@click.option("--base", default=None, help="local dir or hub id (default: embedded tiny Qwen3)")
@click.option("--out", type=SafePath(file_okay=False, path_type=Path), default=None,
              help="default: $GLYPH_HOME/saturation")
@click.option("--fractions", default="0.25,0.5,1", show_default=True,
              help="nested shares of the training scenes")
@click.option("--mix", "mixes", multiple=True,
              help="a level mix to compare, e.g. --mix micro --mix micro,meso (repeat)")
@click.option("--no-tiers", is_flag=True, help="skip the core → orbit → fractal runs")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True)
@click.option("--max-scenes", type=click.IntRange(min=2), default=112, show_default=True,
              help="held-out scenes scored per run")
@click.option("--seed", type=int, default=0, show_default=True)
def saturate(base, out, fractions, mixes, no_tiers, epochs, max_scenes, seed) -> None:
    """Train on growing data (tiers, fractions, level mixes) and plot the saturation curve."""
    from .. import paths
    from ..errors import ConfigError
    from ..evaluation.saturate import saturate as run

    try:
        fr = tuple(float(f) for f in csv(fractions))
    except ValueError:
        raise ConfigError(f"--fractions {fractions!r}: write numbers such as 0.25,0.5,1") from None
    out = out or paths.home() / "saturation"
    res = run(out, base=base, fractions=fr, mixes=tuple(csv(m) for m in mixes),
              tiers=not no_tiers, epochs=epochs, seed=seed, max_scenes=max_scenes,
              command=command_line(), log=lambda m: echo(m, err=True))
    echo((out / "saturation.md").read_text(encoding="utf-8"))
    echo(f"{len(res['points'])} conditions in {res['seconds']}s → {out}", err=True)


@main.command()
@click.option("--out", type=SafePath(file_okay=False, path_type=Path), default=None,
              help="the run directory (default: $GLYPH_RUN or $GLYPH_HOME/runs/default)")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="training steps (default: 3 epochs)")
@click.option("--eval-scenes", type=click.IntRange(min=0), default=112, show_default=True,
              help="held-out scenes for the closing evaluation (0 skips it)")
def demo(out: Path | None, steps: int | None, eval_scenes: int) -> None:
    """Run the whole default pipeline: tokenizer → base → train → index → expand → eval."""
    from ..demo import run

    run(out, echo=echo, steps=steps, eval_scenes=eval_scenes or None)
