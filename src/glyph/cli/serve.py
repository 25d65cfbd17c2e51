"""Serving commands: serve (OpenAI-compatible API + atlas) and route (which adapter a prompt needs)."""
from __future__ import annotations

from pathlib import Path

import click

from .app import SafePath, echo, main, run_dir

_ENGINE = "engine limit (default %s)"


@main.command()
@click.argument("run", type=SafePath(file_okay=False, path_type=Path), required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (loopback unless you say otherwise)")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--api-key", envvar="GLYPH_API_KEY", default=None,
              help="require `Authorization: Bearer KEY` on /v1 (env GLYPH_API_KEY)")
@click.option("--model-name", default=None, help="the OpenAI model id (default: RUN's name)")
@click.option("--max-batch", type=int, default=64, show_default=True,
              help="sequences decoded together")
@click.option("--max-queue", type=int, default=256, show_default=True,
              help="waiting requests before new ones get 429")
@click.option("--max-prompt-tokens", type=int, default=1024, show_default=True)
@click.option("--max-tokens", type=int, default=512, show_default=True,
              help="the largest max_tokens a request may ask for")
@click.option("--max-body-kb", type=int, default=1000, show_default=True)
@click.option("--threads", type=int, default=0, show_default=True,
              help="torch threads for generation (0: torch's default)")
def serve(run, host, port, api_key, model_name, max_batch, max_queue, max_prompt_tokens,
          max_tokens, max_body_kb, threads) -> None:
    """Serve RUN over HTTP: OpenAI-compatible /v1 API with glyph routing, and the atlas at /."""
    from ..serving.engine import EngineConfig
    from ..serving.server import ServeOptions, serve as run_server
    from ..vocab import registry

    options = ServeOptions(host=host, port=port, api_key=api_key, model_name=model_name,
                           max_body_kb=max_body_kb,
                           engine=EngineConfig(max_batch=max_batch, max_queue=max_queue,
                                               max_prompt_tokens=max_prompt_tokens,
                                               max_tokens=max_tokens, threads=threads))
    run_server(run_dir(run), options, registry=registry.load_optional(),
               log=lambda m: echo(m, err=True))


@main.command()
@click.argument("text")
@click.option("--export", "export_dir", type=SafePath(file_okay=False, path_type=Path),
              default=None, help="a --multi-lora export (its routing.json); default: the run's "
              "own rules")
@click.option("--run", "run", type=SafePath(file_okay=False, path_type=Path), default=None,
              help="run directory (default: $GLYPH_RUN or $GLYPH_HOME/runs/default)")
def route(text, export_dir, run) -> None:
    """Print the adapter (OpenAI model name) TEXT needs on a multi-LoRA engine."""
    from ..run import Run
    from ..serving.routes import Routing

    if export_dir is not None:
        rules = Routing.read(export_dir)
    else:
        path = run_dir(run)
        rules = Routing.of_run(Run(path).manifest(), model=path.resolve().name)
    echo(rules.model_for(text))
