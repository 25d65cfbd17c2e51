"""The HTTP API of ``glyph serve``: an OpenAI-compatible server with glyph endpoints and the atlas.

FastAPI on uvicorn: both are widely used and actively maintained, FastAPI validates request
bodies with pydantic (a bad parameter becomes a 400 naming it), and Starlette's streaming
response cancels its generator when the client disconnects, which is how a gone client stops
its generation. Server-sent events are written by hand (``data: {...}\\n\\n``, OpenAI's
framing), so no SSE package is needed.

Routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``
(:mod:`glyph.serving.openai_routes`), ``GET /v1/glyphs``, ``GET /v1/glyphs/{glyph}/neighbors``,
``POST /v1/expand``, ``GET /v1/atlas/map``, ``GET /health`` and the atlas page at ``/``.
Errors have OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Example::

    >>> app = create_app(service, engine, ServerConfig())   # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)        # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import hmac
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import Field

from ..errors import ConfigError, GlyphError
from .engine import Engine
from .httpkit import ApiError, Body, ServerConfig, sink, sse, translate, wait_all
from .routing import Generation, clean
from .sampling import SamplingParams

ATLAS = Path(__file__).parent / "atlas"


class ExpandBody(Body):
    """``POST /v1/expand``: ``glyph`` (must be one) or ``prompt`` (a glyph or free text)."""

    glyph: str | None = None
    prompt: str | None = None
    register_: str = Field("poetry", alias="register")  # `register` would shadow pydantic's
    level: str | None = None
    lang: str | None = None
    k: int = Field(3, ge=0, le=50)
    max_tokens: int = Field(120, ge=1)
    temperature: float = 0.8     # the defaults of `glyph expand`
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.1
    seed: int = 0
    stream: bool = False


# ------------------------------------------------------------------ middleware
class Guard:
    """ASGI middleware: the bearer token on /v1/*, and the body-size limit."""

    def __init__(self, app, config: ServerConfig):
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = self.config.api_key
        if key and scope["path"].startswith("/v1/"):
            auth = headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), key.encode()):
                err = ApiError(401, "missing or wrong API key: send `Authorization: Bearer KEY`",
                               code="invalid_api_key",
                               headers={"WWW-Authenticate": "Bearer"})
                return await err.response()(scope, receive, send)
        limit = self.config.max_body_bytes
        too_big = ApiError(413, f"the request body is larger than {limit} bytes "
                           "(--max-body-kb)", code="request_too_large")
        if int(headers.get("content-length") or 0) > limit:
            return await too_big.response()(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise ApiError(413, too_big.message, code="request_too_large")
            return msg

        try:
            await self.app(scope, counted, send)
        except ApiError as e:
            await e.response()(scope, receive, send)


# ------------------------------------------------------------------ the app
def create_app(service, engine: Engine, config: ServerConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``service`` (a GlyphService) through ``engine``."""
    from contextlib import asynccontextmanager

    from . import openai_routes

    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app):
        yield
        # uvicorn has finished the in-flight requests: let the engine drain and stop
        await asyncio.to_thread(engine.stop, drain=True, timeout=60)

    app = FastAPI(title="glyph", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service, app.state.engine, app.state.config = service, engine, config

    @app.exception_handler(ApiError)
    async def _api_error(request, e: ApiError):
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path")]
        return ApiError(400, f"{'.'.join(loc) or 'request'}: {first.get('msg', 'invalid')}",
                        param=".".join(loc) or None).response()

    @app.exception_handler(Exception)
    async def _crash(request, e: Exception):
        return translate(e).response()

    openai_routes.install(app)
    _glyph_routes(app)
    _atlas_routes(app)
    app.add_middleware(Guard, config=config)
    return app


def _glyph_routes(app: FastAPI) -> None:
    @app.get("/health")
    async def health():
        return {"status": "ok", **app.state.engine.stats()}

    @app.get("/v1/glyphs")
    async def glyphs():
        gm = app.state.service.model
        return {"object": "list", "registers": gm.registers,
                "data": [{"symbol": g.symbol, "name": g.name, "meaning": g.meaning,
                          "trigger": g.trigger, "id": g.id, "kind": g.kind}
                         for g in gm.glyphs.values()]}

    @app.get("/v1/glyphs/{key}/neighbors")
    async def neighbors(key: str, k: int = 5, register: str | None = None):
        if not 1 <= k <= 100:
            raise ApiError(400, "k must be between 1 and 100", param="k")
        svc = app.state.service
        try:
            g = svc.model.glyph(key)
            hits = svc.neighbors(g.symbol, k=k, register=register or None)
        except GlyphError as e:
            raise translate(e, "register" if isinstance(e, ConfigError) else "glyph") from None
        return {"object": "list", "glyph": g.symbol, "data": [h.to_dict() for h in hits]}

    @app.post("/v1/expand")
    async def expand(body: ExpandBody, request: Request):
        return await _expand(app, body, request)

    @app.get("/v1/atlas/map")
    async def atlas_map():
        if getattr(app.state, "map", None) is None:
            from .atlas_map import atlas_map as compute

            app.state.map = await asyncio.to_thread(compute, app.state.service)
        return app.state.map


async def _expand(app: FastAPI, body: ExpandBody, request: Request):
    """The decompression protocol (:mod:`glyph.serving.expand`), its step 4 in the engine."""
    from .expand import plan

    svc, engine = app.state.service, app.state.engine
    if (body.glyph is None) == (body.prompt is None):
        raise ApiError(400, "send one of glyph (a registered glyph) or prompt", param="glyph")
    key = body.glyph if body.glyph is not None else body.prompt
    is_glyph = body.glyph is not None or svc.model.is_glyph(key)
    try:
        svc.model.check_register(body.register_)
    except GlyphError as err:
        raise translate(err, "register") from None
    try:
        params = SamplingParams(max_tokens=body.max_tokens, temperature=body.temperature,
                                top_p=body.top_p, top_k=body.top_k, seed=body.seed,
                                repetition_penalty=body.repetition_penalty,
                                stop=("⟨",))  # a new scene header ends the text, as clean() does
        e = plan(svc, key, register=body.register_, level=body.level, lang=body.lang,
                 k=body.k) if is_glyph else None
        queue_: asyncio.Queue = asyncio.Queue()
        handle = engine.submit(e.prompt if e else key, params, sink(queue_, 0))
    except GlyphError as err:
        raise translate(err, "glyph" if is_glyph else "prompt") from None

    def result() -> dict:
        if e is None:
            return Generation(handle.prompt, clean(handle.text), handle.route).to_dict()
        e.text = handle.text.strip()
        return e.to_dict()

    if not body.stream:
        await wait_all([handle], queue_, request)
        return result()

    async def events():
        try:
            yield sse({"event": "start", "expansion": e.to_dict() if e else None,
                       "triggers": handle.route})
            while True:
                _, ev = await queue_.get()
                if ev.text:
                    yield sse({"event": "delta", "text": ev.text})
                if ev.finish_reason is not None:
                    break
            yield sse({"event": "done", "finish_reason": handle.finish_reason,
                       "result": result()})
            yield "data: [DONE]\n\n"
        finally:
            handle.cancel()  # a client that left stops its generation (no-op when done)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _atlas_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def atlas_page():
        return FileResponse(ATLAS / "index.html", media_type="text/html")

    app.mount("/atlas", StaticFiles(directory=ATLAS), name="atlas")
