"""What every HTTP route of ``glyph serve`` shares: the server config, OpenAI-shaped errors,
server-sent events and the bridge from the engine thread to asyncio.

Example::

    >>> ApiError(400, "k must be between 1 and 100", param="k").response().status_code
    400
"""
from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError, GlyphError, NotFound
from .engine import Busy


@dataclass
class ServerConfig:
    """What the HTTP layer enforces (the engine's limits live in EngineConfig)."""

    model_name: str = "glyph"
    api_key: str | None = None
    max_body_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigError("--max-body-kb must be >= 1")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("--api-key must not be empty")


class ApiError(Exception):
    """An error answered in OpenAI's JSON shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind, self.headers = kind, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind,
                                       "param": self.param, "code": self.code}},
                            status_code=self.status, headers=self.headers)


def translate(e: Exception, param: str | None = None) -> ApiError:
    """A library error as the HTTP error a client should get."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, Busy):
        return ApiError(429, str(e), code="rate_limit_exceeded", kind="rate_limit_error",
                        headers={"Retry-After": "1"})
    if isinstance(e, (ConfigError, NotFound)):
        return ApiError(400, str(e), param=param)
    if isinstance(e, GlyphError):
        return ApiError(500, str(e), kind="server_error")
    return ApiError(500, f"internal error: {type(e).__name__}", kind="server_error")


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Mailbox:
    """Events from the engine thread to one event loop, delivered in batches: one wake-up of
    the loop per decoding step instead of one per request (less GIL ping-pong with the
    engine thread, which is the one that should be computing)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.items, self.lock, self.scheduled = loop, deque(), threading.Lock(), False

    def post(self, queue_: asyncio.Queue, item) -> None:
        with self.lock:
            self.items.append((queue_, item))
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self.lock:
            items, self.items, self.scheduled = self.items, deque(), False
        for queue_, item in items:
            queue_.put_nowait(item)


_MAILBOXES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox]" = \
    weakref.WeakKeyDictionary()


def sink(queue_: asyncio.Queue, index: int):
    """An engine sink (called on the engine thread) feeding ``(index, event)`` to ``queue_``."""
    loop = asyncio.get_running_loop()
    box = _MAILBOXES.get(loop)
    if box is None:
        box = _MAILBOXES[loop] = _Mailbox(loop)
    return lambda ev: box.post(queue_, (index, ev))


async def wait_all(handles, queue_: asyncio.Queue, request: Request) -> None:
    """Wait until every handle finished; cancel them all if the client disconnects."""
    try:
        while not all(h.done for h in handles):
            try:
                await asyncio.wait_for(queue_.get(), timeout=0.5)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return
    finally:
        for h in handles:
            h.cancel()  # no-op for finished ones
    if any(h.finish_reason == "error" for h in handles):
        raise ApiError(500, "generation failed inside the engine (see the server log)",
                       kind="server_error")
