"""The `glyph` command: thin click commands over the library.

Every command parses, calls one library function and prints. Library errors
(:class:`glyph.errors.GlyphError`) are translated here, once, into one line on stderr and
exit code 1. Heavy modules (torch, transformers, peft, faiss) are imported inside the
commands that need them, so `glyph list` / `glyph add` start fast.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .errors import GlyphError


class _Group(click.Group):
    """A click group that turns GlyphError into `error: …` and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GlyphError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


def _glyph_json(g) -> dict:
    from .registry import codepoints

    return {**g.to_dict(), "kind": g.kind, "codepoints": codepoints(g)}


@click.group(cls=_Group)
@click.version_option(package_name="glyph")
def main() -> None:
    """glyph: Unicode symbols as first-class tokens of a Qwen3 model."""
    import os
    import warnings

    # one line per event, not a progress bar per checkpoint load (set before transformers loads)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # peft 0.21 calls an API transformers 5 deprecated: noise for users, nothing to act on
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)


# ---------------------------------------------------------------- registry
@main.command()
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("glyphs_registry.yaml"), show_default=True)
def init(path: Path) -> None:
    """Create an empty registry in the current directory."""
    from . import registry

    reg = registry.init(path)
    click.echo(f"created {reg.path} with registers: {', '.join(reg.registers)}")


@main.command()
@click.argument("symbol")
@click.option("--name", required=True, help="slug, e.g. ascent")
@click.option("--meaning", required=True, help="what the glyph carries, one line")
@click.option("--archetype", default="", help="slug, e.g. initiation")
@click.option("--trigger", default=None, help="LoRA adapter it activates (default: the name)")
@click.option("--register", "registers", multiple=True, help="register it expands into (repeat)")
@click.option("--scene", "scenes", multiple=True, help="linked scene id (repeat)")
@click.option("--allow-private-use", is_flag=True, help="accept a private-use code point")
@click.option("--allow-nonsymbol", is_flag=True, help="accept a non-ASCII letter/digit/punctuation")
def add(symbol, name, meaning, archetype, trigger, registers, scenes, allow_private_use,
        allow_nonsymbol) -> None:
    """Register SYMBOL as a glyph and assign its token id."""
    from . import registry

    res = registry.add(symbol, name=name, meaning=meaning, archetype=archetype, trigger=trigger,
                       registers=registers, scenes=scenes, allow_private_use=allow_private_use,
                       allow_nonsymbol=allow_nonsymbol)
    for note in res.notes:
        click.echo(f"note: {note}", err=True)
    g = res.glyph
    click.echo(f"added {g.symbol} '{g.name}' id {g.id} ({g.kind}) trigger {g.trigger}")


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="include retired glyphs")
def list_(as_json: bool, show_all: bool) -> None:
    """List registered glyphs."""
    from . import registry

    reg = registry.load()
    glyphs = reg.glyphs if show_all else reg.active()
    if as_json:
        return _echo_json([_glyph_json(g) for g in glyphs])
    for g in glyphs:
        flag = "" if g.active else "  [retired]"
        click.echo(f"{g.symbol}\t{g.id}\t{g.name:<12} {g.trigger:<12} {g.kind:<8} {g.meaning}{flag}")
    click.echo(f"{len(reg.active())} active, {len(reg.glyphs) - len(reg.active())} retired "
               f"({reg.path})", err=True)


@main.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
def show(key: str, as_json: bool) -> None:
    """Show one glyph by SYMBOL or NAME."""
    from . import registry

    g = registry.load().get(key)
    d = _glyph_json(g)
    if as_json:
        return _echo_json(d)
    for k, v in d.items():
        click.echo(f"{k:>18}: {', '.join(v) if isinstance(v, list) else v}")


@main.command()
@click.argument("key")
def remove(key: str) -> None:
    """Retire a glyph (its id stays reserved)."""
    from . import registry

    g = registry.remove(key)
    click.echo(f"retired {g.symbol} '{g.name}'; id {g.id} stays reserved")


@main.command()
def validate() -> None:
    """Check the registry (and the scene corpus, when present)."""
    from .project import validate_project

    for line in validate_project():
        click.echo(line)


# ---------------------------------------------------------------- tokenizer
@main.group(cls=_Group)
def tokenizer() -> None:
    """Build the glyph tokenizer."""


@tokenizer.command("build")
@click.option("--base", default=None, help="local dir or hub id of a Qwen-family tokenizer "
              "(default: Qwen3's, rebuilt offline)")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def tokenizer_build(base: str | None, out: Path) -> None:
    """Write a Hugging Face tokenizer dir with every active glyph as one token."""
    from . import registry
    from . import tokenizer as tk

    report = tk.build_glyph_tokenizer(registry.load().active(), out, base=base)
    click.echo(f"{'glyph':<6}{'name':<14}{'before':>7}  {'id':>7}  kind")
    for r in report.rows:
        click.echo(f"{r.symbol:<6}{r.name:<14}{r.cost_before:>7}  {r.id:>7}  {r.kind}")
    click.echo(f"wrote {report.out}")


@main.command()
@click.argument("text")
@click.option("--tokenizer", "tok_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="a tokenizer dir (default: base + the registry's glyphs)")
@click.option("--json", "as_json", is_flag=True)
def tokenize(text: str, tok_dir: Path | None, as_json: bool) -> None:
    """Show the tokens of TEXT."""
    from . import tokenizer as tk

    pieces = tk.tokenize(text, tk.load(tok_dir or tk.project_tokenizer()))
    if as_json:
        return _echo_json([{"id": i, "piece": p} for i, p in pieces])
    click.echo(" ".join(f"{p}[{i}]" for i, p in pieces))
    click.echo(f"{len(pieces)} tokens", err=True)


# ---------------------------------------------------------------- scenes
@main.group(cls=_Group)
def scenes() -> None:
    """The scene corpus (glyphs/*.yaml)."""


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


@scenes.command("list")
@click.option("--glyph", "glyph_key", default=None, help="symbol or name")
@click.option("--register", default=None)
@click.option("--level", default=None)
@click.option("--tier", default=None)
@click.option("--split", type=click.Choice(["train", "heldout"]), default=None)
@click.option("--json", "as_json", is_flag=True)
def scenes_list(glyph_key, register, level, tier, split, as_json) -> None:
    """List scenes, optionally filtered."""
    from . import registry
    from . import scenes as sc

    reg = registry.load()
    sym = reg.get(glyph_key).symbol if glyph_key else None
    rows = sc.load_corpus(reg).select(glyph=sym, split=split, registers=_csv(register),
                                      levels=_csv(level), tiers=_csv(tier))
    if as_json:
        return _echo_json([s.to_dict() for s in rows])
    for s in rows:
        first = s.text.splitlines()[0][:70]
        click.echo(f"{s.id:<7}{''.join(s.glyphs):<4}{s.register:<10}{s.level:<6}{s.tier:<8}"
                   f"{s.lang:<3}{s.split:<8}{first}")
    click.echo(f"{len(rows)} scenes", err=True)


@scenes.command("add")
@click.option("--glyph", "glyphs", multiple=True, required=True, help="symbol or name (repeat)")
@click.option("--register", required=True)
@click.option("--level", required=True, type=click.Choice(["micro", "meso", "macro"]))
@click.option("--tier", default="core", show_default=True,
              type=click.Choice(["core", "orbit", "fractal"]))
@click.option("--lang", default="en", show_default=True)
@click.option("--text", required=True, help="the scene text ('-' reads stdin)")
@click.option("--id", "scene_id", default=None, help="default: the next free Δ<n>")
def scenes_add(glyphs, register, level, tier, lang, text, scene_id) -> None:
    """Add one scene to glyphs/<glyph name>.yaml."""
    from . import registry
    from . import scenes as sc

    reg = registry.load()
    text = sys.stdin.read() if text == "-" else text
    s = sc.add(reg, glyphs=[reg.get(g).symbol for g in glyphs], register=register, level=level,
               tier=tier, lang=lang, text=text, scene_id=scene_id)
    click.echo(f"added scene {s.id} ({s.split}) for {''.join(s.glyphs)}")


@scenes.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def scenes_import(file: Path) -> None:
    """Import scenes from JSONL or CSV (all rows valid, or nothing is written)."""
    from . import registry
    from . import scenes as sc

    new = sc.import_file(registry.load(), file)
    click.echo(f"imported {len(new)} scenes from {file}")


@scenes.command("validate")
def scenes_validate() -> None:
    """Validate the scene corpus against the registry."""
    from . import registry
    from . import scenes as sc

    reg = registry.load()
    for line in sc.check_coverage(reg, sc.load_corpus(reg)):
        click.echo(line)


# ---------------------------------------------------------------- training
@main.command()
@click.option("--base", default=None, help="local dir or hub id (default: embedded tiny Qwen3)")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--tiers", default="core,orbit,fractal", show_default=True)
@click.option("--registers", default=None, help="comma list (default: all)")
@click.option("--levels", default=None, help="comma list (default: all)")
@click.option("--steps", type=int, default=None)
@click.option("--epochs", type=float, default=None, help="default 3 when --steps is not given")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True, help="LoRA learning rate")
@click.option("--embedding-lr", type=float, default=2e-2, show_default=True,
              help="learning rate of the glyph rows")
@click.option("--lora-r", type=int, default=8, show_default=True)
@click.option("--init", type=click.Choice(["mean", "meaning", "random"]), default=None,
              help="glyph row initialisation (default: the measured best)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--save-every", type=int, default=25, show_default=True)
@click.option("--eval-every", type=int, default=25, show_default=True)
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, help="train on this deterministic share of the scenes")
@click.option("--strict", is_flag=True, help="error (not warn) on glyphs without scenes")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--overwrite", is_flag=True, help="replace the run in --out")
def train(base, out, tiers, registers, levels, steps, epochs, batch_size, lr, embedding_lr,
          lora_r, init, seed, save_every, eval_every, fraction, strict, resume, overwrite) -> None:
    """Train glyph rows + one LoRA adapter per trigger into a run directory."""
    from . import model
    from .train import TrainConfig, train as run_train

    cfg = TrainConfig(out=str(out), base=base, tiers=_csv(tiers), registers=_csv(registers),
                      levels=_csv(levels), steps=steps, epochs=epochs, batch_size=batch_size,
                      lr=lr, embedding_lr=embedding_lr, lora_r=lora_r, lora_alpha=2 * lora_r,
                      init=init or model.DEFAULT_INIT, seed=seed, save_every=save_every,
                      eval_every=eval_every, strict=strict, fraction=fraction)
    res = run_train(cfg, resume=resume, overwrite=overwrite, log=lambda m: click.echo(m, err=True))
    m = res.metrics
    click.echo(f"trained {res.steps} steps in {m['seconds']}s: train loss {m['train_loss_last']:.3f}, "
               f"held-out loss {m['heldout_loss']:.3f} ({m['heldout_examples']} scenes) → {res.out}")


# ---------------------------------------------------------------- index, neighbors, expand
_RUN = click.option("--run", "run", type=click.Path(file_okay=False, path_type=Path),
                    default=None, help="run directory (default: $GLYPH_RUN or "
                    "$GLYPH_HOME/runs/default, what `glyph demo` trains)")


def _run_dir(run: Path | None) -> Path:
    from . import paths

    return run or paths.default_run()


def _load_model(run: Path | None):
    from . import registry
    from .runtime import GlyphModel

    return GlyphModel.load(_run_dir(run), registry=registry.load_optional())


def _hit_line(h) -> str:
    first = h.text.splitlines()[0][:72]
    return (f"{h.score:6.3f}  {h.scene_id:<7}{h.glyphs:<3}{h.register:<10}{h.level:<6}{h.lang:<3}"
            f"{h.split:<8}{first}")


@main.group("index", cls=_Group)
def index_group() -> None:
    """The FAISS scene index of a run."""


@index_group.command("build")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--glyph-vectors", type=click.Choice(["centroid", "prompt"]), default=None,
              help="how a glyph becomes a vector (default: the measured best)")
@click.option("--scene-vectors", type=click.Choice(["style-centred", "mean-centred"]),
              default=None, help="how scene vectors are centred (default: the measured best)")
@click.option("--kind", type=click.Choice(["auto", "flat", "ivf", "hnsw"]), default="auto",
              show_default=True, help="FAISS index type; auto = exact up to 20k scenes")
def index_build(run, glyph_vectors, scene_vectors, kind) -> None:
    """Embed the scenes and glyphs of RUN and save RUN/index/."""
    from . import index, registry

    idx = index.build(_run_dir(run), registry=registry.load(), kind=kind,
                      glyph_method=glyph_vectors or index.DEFAULT_GLYPH_VECTORS,
                      scene_method=scene_vectors or index.DEFAULT_SCENE_VECTORS,
                      log=lambda m: click.echo(m, err=True))
    i = idx.info
    click.echo(f"indexed {i['scenes']} scenes ({i['kind']}, {i['dim']}-d, scene vectors "
               f"{i['scene_vectors']}, glyph vectors {i['glyph_vectors']}) in {i['seconds']}s "
               f"→ {index.SceneIndex.directory(_run_dir(run))}")


@main.command()
@click.argument("glyph")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--register", default=None, help="only scenes of this register")
@_RUN
@click.option("--json", "as_json", is_flag=True)
def neighbors(glyph, k, register, run, as_json) -> None:
    """Print the scenes nearest to GLYPH, with their cosine scores."""
    hits = _load_model(run).neighbors(glyph, k=k, register=register)
    if as_json:
        return _echo_json([h.to_dict() for h in hits])
    for h in hits:
        click.echo(_hit_line(h))


@main.command()
@click.argument("prompt", required=False)
@click.option("--register", default="poetry", show_default=True)
@click.option("--level", type=click.Choice(["micro", "meso", "macro"]), default=None,
              help="default: the level of the nearest scene")
@click.option("--lang", default=None, help="two-letter code (default: the nearest scene's)")
@click.option("--k", type=click.IntRange(min=0), default=3, show_default=True,
              help="nearest scenes to retrieve")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=120, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", "batch_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="a file of prompts (one per line, or JSONL with \"prompt\")")
@_RUN
@click.option("--json", "as_json", is_flag=True)
def expand(prompt, register, level, lang, k, max_new_tokens, temperature, seed, batch_file, run,
           as_json) -> None:
    """Decompress a glyph into a register, or continue text that contains glyphs."""
    from . import expand as ex
    from .errors import ConfigError

    if (prompt is None) == (batch_file is None):
        raise ConfigError("give one PROMPT (a glyph such as ⟁, or text with glyphs) or --batch FILE")
    gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    prompts = ex.read_batch(batch_file) if batch_file else None  # bad file: fail before loading
    gm = _load_model(run)
    if prompts is not None:
        outs = ex.expand_batch(gm, prompts, **gen)
        if as_json:
            return _echo_json([o.to_dict() for o in outs])
        for p, o in zip(prompts, outs):
            click.echo(f"── {p!r} → adapters: {', '.join(o.triggers) or 'none (base)'}")
            click.echo(o.text)
        return
    if gm.canonical(prompt.strip()) in gm.glyphs or prompt.strip() in {
            g["name"] for g in gm.glyphs.values()}:
        e = gm.expand(prompt, register=register, level=level, lang=lang, k=k, **gen)
        if as_json:
            return _echo_json(e.to_dict())
        click.echo(f"── {e.glyph} → {e.register} · {e.level} · {e.lang}  (adapter {e.adapter})")
        click.echo(e.text)
        if e.scenes:
            click.echo("── nearest scenes:")
            for h in e.scenes:
                click.echo(_hit_line(h))
        return
    o = gm.generate([prompt], **gen)[0]
    if as_json:
        return _echo_json(o.to_dict())
    click.echo(f"── adapters: {', '.join(o.triggers) or 'none (base model)'}")
    click.echo(o.prompt + o.text)


@main.command("export")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--merged", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="output directory (one model; with several triggers: OUT/<trigger>/)")
@click.option("--trigger", default=None, help="only this trigger's adapter (default: each)")
@click.option("--overwrite", is_flag=True, help="replace an earlier export in OUT")
@click.option("--no-verify", is_flag=True, help="skip the reload-and-compare check")
def export_(run, out, trigger, overwrite, no_verify) -> None:
    """Write plain Hugging Face model dirs with the adapter and glyph rows merged."""
    from . import registry
    from .export import export_merged

    for d in export_merged(run, out, trigger=trigger, registry=registry.load_optional(),
                           overwrite=overwrite, verify=not no_verify,
                           log=lambda m: click.echo(m, err=True)):
        click.echo(f"wrote {d}")


# ---------------------------------------------------------------- evaluation
@main.command("eval")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--split", type=click.Choice(["heldout", "train"]), default="heldout",
              show_default=True)
@click.option("--max-scenes", type=click.IntRange(min=2), default=None,
              help="evaluate an even subsample of this many scenes")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where metrics.json, report.md and the plots go (default: RUN/eval)")
@click.option("--json", "as_json", is_flag=True, help="print metrics.json instead of the table")
def eval_(run, split, max_scenes, out, as_json) -> None:
    """Measure how much of its scene one glyph token carries (held-out scenes)."""
    from . import registry
    from .evaluate import evaluate, write_metrics
    from .report import table, write_report

    run = _run_dir(run)
    metrics = evaluate(run, split=split, registry=registry.load(), max_scenes=max_scenes,
                       log=lambda m: click.echo(m, err=True))
    out = out or run / "eval"
    write_metrics(metrics, out)
    report = write_report(metrics, out, command=_command_line())
    if as_json:
        return _echo_json(metrics)
    click.echo(table(metrics))
    click.echo(f"report: {report}", err=True)


def _command_line() -> str:
    """The command being run, as a user would type it again (explicitly given options only)."""
    import shlex

    from click.core import ParameterSource

    ctx = click.get_current_context()
    words = ["glyph", *ctx.command_path.split()[1:]]
    for p in ctx.command.params:
        if ctx.get_parameter_source(p.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        if isinstance(p, click.Argument):
            words.append(str(value))
        elif p.is_flag:
            words.append(p.opts[0])
        elif p.multiple:
            for v in value:
                words += [p.opts[0], ",".join(v) if isinstance(v, tuple) else str(v)]
        else:
            words += [p.opts[0], str(value)]
    return " ".join(shlex.quote(w) for w in words)


@main.command()
@click.option("--base", default=None, help="local dir or hub id (default: embedded tiny Qwen3)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
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
    from . import paths
    from .errors import ConfigError
    from .saturate import saturate as run

    try:
        fr = tuple(float(f) for f in _csv(fractions))
    except ValueError:
        raise ConfigError(f"--fractions {fractions!r}: write numbers such as 0.25,0.5,1") from None
    out = out or paths.home() / "saturation"
    res = run(out, base=base, fractions=fr, mixes=tuple(_csv(m) for m in mixes),
              tiers=not no_tiers, epochs=epochs, seed=seed, max_scenes=max_scenes,
              command=_command_line(), log=lambda m: click.echo(m, err=True))
    click.echo((out / "saturation.md").read_text(encoding="utf-8"))
    click.echo(f"{len(res['points'])} conditions in {res['seconds']}s → {out}", err=True)


# ---------------------------------------------------------------- main job
@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the run directory (default: $GLYPH_RUN or $GLYPH_HOME/runs/default)")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="training steps (default: 3 epochs)")
@click.option("--eval-scenes", type=click.IntRange(min=0), default=112, show_default=True,
              help="held-out scenes for the closing evaluation (0 skips it)")
def demo(out: Path | None, steps: int | None, eval_scenes: int) -> None:
    """Run the whole default pipeline: tokenizer → base → train → index → expand → eval."""
    from .demo import run

    run(out, echo=click.echo, steps=steps, eval_scenes=eval_scenes or None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
