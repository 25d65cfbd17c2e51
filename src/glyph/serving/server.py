"""Run ``glyph serve``: load a run, start the engine, serve the API with uvicorn.

uvicorn handles SIGTERM/SIGINT gracefully: it stops accepting connections, lets in-flight
requests (streams included) finish, then runs the app's shutdown, which drains and stops
the engine. The default host is loopback; anything else must be asked for.

Example::

    >>> serve("runs/default", ServeOptions(port=8000))     # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .engine import EngineConfig

API_KEY_ENV = "GLYPH_API_KEY"


@dataclass
class ServeOptions:
    """Where and how to serve (engine limits in ``engine``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    model_name: str | None = None          # default: the run directory's name
    max_body_kb: int = 1000
    engine: EngineConfig = field(default_factory=EngineConfig)
    graceful_seconds: int = 120            # SIGTERM: how long in-flight requests may take

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} must be in 0..65535")
        if self.max_body_kb < 1:
            raise ConfigError("--max-body-kb must be >= 1")


def build_app(run: Path | str, options: ServeOptions, *, registry=None):
    """Load ``run``, start its engine and return ``(app, service)`` (no socket is opened)."""
    from .api import create_app
    from .engine import Engine
    from .httpkit import ServerConfig
    from .service import GlyphService

    svc = GlyphService.load(run, registry=registry)
    engine = Engine(svc.model, options.engine).start()
    key = options.api_key if options.api_key is not None else os.environ.get(API_KEY_ENV)
    config = ServerConfig(model_name=options.model_name or Path(run).resolve().name,
                          api_key=key or None, max_body_bytes=options.max_body_kb * 1024)
    return create_app(svc, engine, config), svc


def check_port(host: str, port: int) -> None:
    """Fail in a second, before the model loads, when the address cannot be bound."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); pass another "
                          "--port or --host") from None


def serve(run: Path | str, options: ServeOptions, *, registry=None,
          log: Callable[[str], None] = print) -> None:
    """Serve ``run`` until SIGTERM/SIGINT (then finish in-flight requests and return)."""
    import uvicorn

    check_port(options.host, options.port)
    app, svc = build_app(run, options, registry=registry)
    cfg = app.state.config
    log(f"serving run {svc.run.path} as model '{cfg.model_name}' on "
        f"http://{options.host}:{options.port}/ (atlas at /, OpenAI API at /v1"
        f"{', bearer token required' if cfg.api_key else ''})")
    if options.host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: listening on {options.host}, not only on this machine"
            + ("" if cfg.api_key else "; set --api-key or GLYPH_API_KEY"))
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning",
                timeout_graceful_shutdown=options.graceful_seconds, access_log=False)
