"""Commands on a trained run: index build, neighbors, expand, compress, export, eval."""
from __future__ import annotations

from pathlib import Path

import click

from .app import (RUN, Group, SafePath, command_line, echo, echo_json, hit_line, load_service,
                  main, run_dir)

_VECTOR_DEFAULT = "(default: the measured best)"


@main.group("index", cls=Group)
def index_group() -> None:
    """The FAISS scene index of a run."""


@index_group.command("build")
@click.argument("run", type=SafePath(file_okay=False, path_type=Path), required=False)
@click.option("--glyph-vectors", type=click.Choice(["centroid", "prompt"]), default=None,
              help=f"how a glyph becomes a vector {_VECTOR_DEFAULT}")
@click.option("--scene-vectors",
              type=click.Choice(["glyph-whitened", "style-centred", "mean-centred"]),
              default=None, help=f"how scene vectors are centred {_VECTOR_DEFAULT}")
@click.option("--kind", type=click.Choice(["auto", "flat", "ivf", "hnsw"]), default="auto",
              show_default=True, help="FAISS index type; auto = exact up to 20k scenes")
def index_build(run, glyph_vectors, scene_vectors, kind) -> None:
    """Embed the scenes and glyphs of RUN and save RUN/index/."""
    from ..corpus import scenes
    from ..serving import vectors
    from ..serving.service import GlyphService
    from ..vocab import registry

    reg = registry.load()
    svc = GlyphService.load(run_dir(run), registry=reg, with_index=False)
    idx = svc.build_index(scenes.load_corpus(reg), kind=kind,
                          glyph_method=glyph_vectors or vectors.DEFAULT_GLYPH_VECTORS,
                          scene_method=scene_vectors or vectors.DEFAULT_SCENE_VECTORS,
                          log=lambda m: echo(m, err=True))
    i = idx.info
    layers = i.get("layers") or []
    at = f" of layers {'+'.join(map(str, layers))}" if len(layers) > 1 else ""
    echo(f"indexed {i['scenes']} scenes ({i['kind']}, {i['dim']}-d, scene vectors "
         f"{i['scene_vectors']}{at}, glyph vectors {i['glyph_vectors']}) in {i['seconds']}s "
         f"→ {svc.run.index_dir}")


@main.command()
@click.argument("glyph")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--register", default=None, help="only scenes of this register")
@RUN
@click.option("--json", "as_json", is_flag=True)
def neighbors(glyph, k, register, run, as_json) -> None:
    """Print the scenes nearest to GLYPH, with their cosine scores."""
    hits = load_service(run).neighbors(glyph, k=k, register=register)
    if as_json:
        return echo_json([h.to_dict() for h in hits])
    for h in hits:
        echo(hit_line(h))


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
@click.option("--batch", "batch_file", type=SafePath(dir_okay=False, path_type=Path),
              default=None, help="a file of prompts (one per line, or JSONL with \"prompt\")")
@RUN
@click.option("--json", "as_json", is_flag=True)
def expand(prompt, register, level, lang, k, max_new_tokens, temperature, seed, batch_file, run,
           as_json) -> None:
    """Decompress a glyph into a register, or continue text that contains glyphs."""
    from ..errors import ConfigError
    from ..serving.expand import Expansion, read_batch

    if (prompt is None) == (batch_file is None):
        raise ConfigError("give one PROMPT (a glyph such as ⟁, or text with glyphs) or --batch FILE")
    gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    prompts = read_batch(batch_file) if batch_file else None  # bad file: fail before loading
    svc = load_service(run)
    if prompts is not None:
        outs = svc.expand_batch(prompts, **gen)
        if as_json:
            return echo_json([o.to_dict() for o in outs])
        for p, o in zip(prompts, outs):
            echo(f"── {p!r} → adapters: {', '.join(o.triggers) or 'none (base)'}")
            echo(o.text)
        return
    out = svc.respond(prompt, register=register, level=level, lang=lang, k=k, **gen)
    if as_json:
        return echo_json(out.to_dict())
    if isinstance(out, Expansion):
        echo(f"── {out.glyph} → {out.register} · {out.level} · {out.lang}  "
                   f"(adapter {out.adapter})")
        echo(out.text)
        if out.scenes:
            echo("── nearest scenes:")
            for h in out.scenes:
                echo(hit_line(h))
        return
    echo(f"── adapters: {', '.join(out.triggers) or 'none (base model)'}")
    echo(out.prompt + out.text)


@main.command()
@click.argument("text")
@click.option("--register", default=None, help="read TEXT in this register (default: every "
              "register, averaged)")
@click.option("--level", type=click.Choice(["micro", "meso", "macro"]), default=None,
              help="default: the level of indexed scenes of TEXT's length")
@click.option("--lang", default=None, help="two-letter code (default: by TEXT's script)")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True,
              help="glyphs to print")
@RUN
@click.option("--json", "as_json", is_flag=True)
def compress(text, register, level, lang, k, run, as_json) -> None:
    """Print the glyphs whose scenes TEXT is nearest to, best first (the inverse of expand)."""
    out = load_service(run).compress(text, register=register, level=level, lang=lang, k=k)
    if as_json:
        return echo_json(out.to_dict())
    guessed = f"; guessed: {', '.join(out.guessed)}" if out.guessed else ""
    reg = out.registers[0] if len(out.registers) == 1 else "every register"
    echo(f"── read as {reg} · {out.level} · {out.lang}{guessed}")
    for g in out.glyphs:
        echo(f"{g.score:+.3f}  {g.symbol}  {g.name}")


@main.command("export")
@click.argument("run", type=SafePath(file_okay=False, path_type=Path))
@click.option("--merged", "out", default=None, type=SafePath(file_okay=False, path_type=Path),
              help="one plain model per trigger (with several triggers: OUT/<trigger>/)")
@click.option("--multi-lora", "multi", default=None,
              type=SafePath(file_okay=False, path_type=Path),
              help="one base with every glyph row + plain LoRA adapters + routing.json")
@click.option("--combine", multiple=True, help="with --multi-lora: also an adapter that sums "
              "these triggers, e.g. --combine body+initiation (repeat)")
@click.option("--model-name", default=None, help="with --multi-lora: the base's served name "
              "(default: RUN's name)")
@click.option("--trigger", default=None, help="only this trigger's adapter (default: each)")
@click.option("--overwrite", is_flag=True, help="replace an earlier export in OUT")
@click.option("--no-verify", is_flag=True, help="skip the reload-and-compare check")
def export_(run, out, multi, combine, model_name, trigger, overwrite, no_verify) -> None:
    """Write plain Hugging Face model dirs (--merged) or one base + LoRA adapters (--multi-lora)."""
    from ..errors import ConfigError
    from ..vocab import registry

    if (out is None) == (multi is None):
        raise ConfigError("give one of --merged OUT or --multi-lora OUT")
    if multi is None and (combine or model_name):
        raise ConfigError("--combine and --model-name go with --multi-lora")
    log = lambda m: echo(m, err=True)  # noqa: E731
    if multi is not None:
        from ..serving.multilora import export_multi_lora

        report = export_multi_lora(run, multi, combine=combine, model_name=model_name,
                                   registry=registry.load_optional(), overwrite=overwrite,
                                   verify=not no_verify, log=log)
        echo(f"wrote {multi}: base + adapters {', '.join(report['adapters'] or [])}")
        echo(f"serve it with:\n  {report['vllm']}")
        return
    from ..serving.export import export_merged

    for d in export_merged(run, out, trigger=trigger, registry=registry.load_optional(),
                           overwrite=overwrite, verify=not no_verify, log=log):
        echo(f"wrote {d}")


@main.command("eval")
@click.argument("run", type=SafePath(file_okay=False, path_type=Path), required=False)
@click.option("--split", type=click.Choice(["heldout", "train"]), default="heldout",
              show_default=True)
@click.option("--max-scenes", type=click.IntRange(min=2), default=None,
              help="score this many scenes, the same share of each glyph")
@click.option("--out", type=SafePath(file_okay=False, path_type=Path), default=None,
              help="where metrics.json, report.md and the plots go (default: RUN/eval)")
@click.option("--json", "as_json", is_flag=True, help="print metrics.json instead of the table")
def eval_(run, split, max_scenes, out, as_json) -> None:
    """Measure how much of its scene one glyph token carries (held-out scenes)."""
    from ..evaluation.metrics import evaluate, write_metrics
    from ..evaluation.report import table, write_report
    from ..vocab import registry

    run = run_dir(run)
    metrics = evaluate(run, split=split, registry=registry.load(), max_scenes=max_scenes,
                       log=lambda m: echo(m, err=True))
    out = out or run / "eval"
    write_metrics(metrics, out)
    report = write_report(metrics, out, command=command_line())
    if as_json:
        return echo_json(metrics)
    echo(table(metrics))
    echo(f"report: {report}", err=True)
