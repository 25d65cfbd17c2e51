"""Registry and tokenizer commands: init, add, list, show, remove, validate, tokenizer build,
tokenize. None of them imports torch, transformers or faiss.
"""
from __future__ import annotations

from pathlib import Path

import click

from .app import Group, SafePath, echo, echo_json, main


def _glyph_json(g) -> dict:
    from ..vocab.registry import codepoints

    return {**g.to_dict(), "kind": g.kind, "codepoints": codepoints(g)}


@main.command()
@click.option("--path", type=SafePath(dir_okay=False, path_type=Path),
              default=Path("glyphs_registry.yaml"), show_default=True)
def init(path: Path) -> None:
    """Create an empty registry in the current directory."""
    from ..vocab import registry

    reg = registry.init(path)
    echo(f"created {reg.path} with registers: {', '.join(reg.registers)}")


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
    from ..vocab import registry

    res = registry.add(symbol, name=name, meaning=meaning, archetype=archetype, trigger=trigger,
                       registers=registers, scenes=scenes, allow_private_use=allow_private_use,
                       allow_nonsymbol=allow_nonsymbol)
    for note in res.notes:
        echo(f"note: {note}", err=True)
    g = res.glyph
    echo(f"added {g.symbol} '{g.name}' id {g.id} ({g.kind}) trigger {g.trigger}")


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="include retired glyphs")
def list_(as_json: bool, show_all: bool) -> None:
    """List registered glyphs."""
    from ..vocab import registry

    reg = registry.load()
    glyphs = reg.glyphs if show_all else reg.active()
    if as_json:
        return echo_json([_glyph_json(g) for g in glyphs])
    for g in glyphs:
        flag = "" if g.active else "  [retired]"
        echo(f"{g.symbol}\t{g.id}\t{g.name:<12} {g.trigger:<12} {g.kind:<8} {g.meaning}{flag}")
    echo(f"{len(reg.active())} active, {len(reg.glyphs) - len(reg.active())} retired "
               f"({reg.path})", err=True)


@main.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
def show(key: str, as_json: bool) -> None:
    """Show one glyph by SYMBOL or NAME."""
    from ..vocab import registry

    g = registry.load().get(key)
    d = _glyph_json(g)
    if as_json:
        return echo_json(d)
    for k, v in d.items():
        echo(f"{k:>18}: {', '.join(v) if isinstance(v, list) else v}")


@main.command()
@click.argument("key")
def remove(key: str) -> None:
    """Retire a glyph (its id stays reserved)."""
    from ..vocab import registry

    g = registry.remove(key)
    echo(f"retired {g.symbol} '{g.name}'; id {g.id} stays reserved")


@main.command()
def validate() -> None:
    """Check the registry (and the scene corpus, when present)."""
    from ..corpus.project import validate_project

    for line in validate_project():
        echo(line)


@main.group(cls=Group)
def tokenizer() -> None:
    """Build the glyph tokenizer."""


@tokenizer.command("build")
@click.option("--base", default=None, help="local dir, .gguf file or hub id of a Qwen-family "
              "model or tokenizer (default: Qwen3's, rebuilt offline)")
@click.option("--out", required=True, type=SafePath(file_okay=False, path_type=Path))
def tokenizer_build(base: str | None, out: Path) -> None:
    """Write a Hugging Face tokenizer dir with every active glyph as one token."""
    from ..vocab import registry
    from ..vocab import tokenizer as tk

    reg = registry.load()
    report = tk.build_glyph_tokenizer(reg.active(), out, base=base, fam=reg.family,
                                      log=lambda m: echo(m, err=True))
    echo(f"{'glyph':<6}{'name':<14}{'before':>7}  {'id':>7}  kind")
    for r in report.rows:
        echo(f"{r.symbol:<6}{r.name:<14}{r.cost_before:>7}  {r.id:>7}  {r.kind}")
    echo(f"wrote {report.out}")


@main.command()
@click.argument("text")
@click.option("--tokenizer", "tok_dir", type=SafePath(file_okay=False, path_type=Path),
              default=None, help="a tokenizer dir (default: base + the registry's glyphs)")
@click.option("--json", "as_json", is_flag=True)
def tokenize(text: str, tok_dir: Path | None, as_json: bool) -> None:
    """Show the tokens of TEXT."""
    from ..vocab import tokenizer as tk

    pieces = tk.tokenize(text, tk.load(tok_dir or tk.project_tokenizer()))
    if as_json:
        return echo_json([{"id": i, "piece": p} for i, p in pieces])
    echo(" ".join(f"{p}[{i}]" for i, p in pieces))
    echo(f"{len(pieces)} tokens", err=True)


