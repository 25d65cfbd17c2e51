"""OpenAI's ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` over the engine.

Standard fields stay standard; every response (and every streamed chunk) also carries a
``glyph`` field: the glyphs seen in the prompt and the adapters that ran, e.g.
``{"glyphs": ["⟁", "🫁"], "adapters": ["initiation", "body"]}``. ``n`` choices of one prompt
use seeds ``seed, seed + 1, …`` so they differ and each reproduces. Supported: ``temperature``,
``top_p``, ``max_tokens`` (``max_completion_tokens`` for chat), ``stop``, ``seed``, ``n``,
``presence_penalty``, ``frequency_penalty``, ``stream`` (+ ``stream_options.include_usage``),
``echo`` for completions; extensions as in vLLM: ``top_k``, ``repetition_penalty``. Refused
with a 400: ``logprobs``, ``best_of`` > 1, ``suffix``, ``tools``.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from ..errors import GlyphError
from .httpkit import ApiError, Body, sink, sse, translate, wait_all
from .sampling import SamplingParams


class Sampling(Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: dict | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    logprobs: Any = None

    def params(self, max_tokens: int, i: int) -> SamplingParams:
        pick = {k: v for k, v in dict(
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            repetition_penalty=self.repetition_penalty).items() if v is not None}
        return SamplingParams(max_tokens=max_tokens, stop=self.stop or (), **pick,
                              seed=None if self.seed is None else self.seed + i)


class CompletionBody(Sampling):
    prompt: str | list[str]
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None


class Message(Body):
    role: str
    content: str | list[dict] | None = None


class ChatBody(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list | None = None


def _glyph_info(gm, texts: list[str], routes: list[list[str]]) -> dict:
    seen: list[str] = []
    for t in texts:
        for _, s in sorted((t.find(s), s) for s in gm.glyphs if s in t):
            if s not in seen:
                seen.append(s)
    adapters = [a for r in routes for a in r]
    return {"glyphs": seen, "adapters": list(dict.fromkeys(adapters))}


def _refuse_unsupported(body: Sampling) -> None:
    if body.logprobs not in (None, False, 0):
        raise ApiError(400, "logprobs is not supported by glyph serve", param="logprobs")
    if getattr(body, "best_of", None) not in (None, 1):
        raise ApiError(400, "best_of is not supported; use n", param="best_of")
    if getattr(body, "suffix", None):
        raise ApiError(400, "suffix is not supported", param="suffix")
    if getattr(body, "tools", None):
        raise ApiError(400, "tools are not supported by glyph serve", param="tools")


def _content(gm, m: Message) -> str:
    if m.content is None or isinstance(m.content, str):
        return gm.canonical(m.content or "")
    parts = []
    for p in m.content:
        if p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise ApiError(400, "only text content parts are supported", param="messages")
        parts.append(p["text"])
    return gm.canonical("".join(parts))


class _Job:
    """The handles of one request, their queue, and the response pieces they share."""

    def __init__(self, app: FastAPI, body: Sampling, prompts: list[str], kind: str):
        self.app, self.body, self.prompts, self.kind = app, body, prompts, kind
        engine = app.state.engine
        default = 16 if kind == "text_completion" else engine.config.max_tokens
        max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens or default
        self.queue: asyncio.Queue = asyncio.Queue()
        texts = [p for p in prompts for _ in range(body.n)]
        try:
            params = [body.params(max_tokens, i) for _ in prompts for i in range(body.n)]
            self.handles = engine.submit_many(texts, params,
                                              [sink(self.queue, i) for i in range(len(texts))])
        except GlyphError as e:
            raise translate(e, "prompt" if kind == "text_completion" else "messages") from None
        self.id = f"{'cmpl' if kind == 'text_completion' else 'chatcmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        uniq = self.handles[:: body.n]
        self.glyph = _glyph_info(app.state.service.model, [h.prompt for h in uniq],
                                 [h.route for h in uniq])
        if len(prompts) > 1:
            self.glyph["per_prompt"] = [_glyph_info(app.state.service.model, [h.prompt],
                                                    [h.route]) for h in uniq]

    def usage(self) -> dict:
        prompt = sum(h.prompt_tokens for h in self.handles[:: self.body.n])
        done = sum(h.completion_tokens for h in self.handles)
        return {"prompt_tokens": prompt, "completion_tokens": done,
                "total_tokens": prompt + done}

    def envelope(self, choices: list, **extra) -> dict:
        obj = self.kind + (".chunk" if self.body.stream and self.kind != "text_completion"
                           else "")
        return {"id": self.id, "object": obj, "created": self.created,
                "model": self.body.model, "choices": choices, **extra, "glyph": self.glyph}

    def choice(self, i: int, text: str, finish: str | None) -> dict:
        if self.kind == "text_completion":
            if self.body.echo and not self.body.stream:
                text = self.handles[i].prompt + text
            return {"index": i, "text": text, "logprobs": None, "finish_reason": finish}
        if self.body.stream:
            delta = {"content": text} if text else {}
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": i, "message": {"role": "assistant", "content": text},
                "logprobs": None, "finish_reason": finish}

    async def respond(self, request: Request):
        if not self.body.stream:
            await wait_all(self.handles, self.queue, request)
            return self.envelope([self.choice(i, h.text, _reason(h))
                                  for i, h in enumerate(self.handles)], usage=self.usage())
        return StreamingResponse(self.stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def stream(self):
        try:
            if self.kind != "text_completion":  # chat streams open with the role
                yield sse(self.envelope([{"index": i, "delta": {"role": "assistant",
                                                                "content": ""},
                                          "logprobs": None, "finish_reason": None}
                                         for i in range(len(self.handles))]))
            if self.kind == "text_completion" and self.body.echo:
                yield sse(self.envelope([self.choice(i, h.prompt, None)
                                         for i, h in enumerate(self.handles)]))
            left = len(self.handles)
            while left:
                i, ev = await self.queue.get()
                reason = _reason(self.handles[i]) if ev.finish_reason else None
                if ev.finish_reason == "error":
                    yield sse({"error": {"message": "generation failed inside the engine",
                                         "type": "server_error", "param": None, "code": None}})
                    return
                if ev.text or reason:
                    yield sse(self.envelope([self.choice(i, ev.text, reason)]))
                left -= ev.finish_reason is not None
            if (self.body.stream_options or {}).get("include_usage"):
                yield sse(self.envelope([], usage=self.usage()))
            yield "data: [DONE]\n\n"
        finally:
            for h in self.handles:
                h.cancel()  # a client that left stops its generations (no-op when done)


def _reason(h) -> str:
    return "length" if h.finish_reason == "length" else "stop"


def install(app: FastAPI) -> None:
    def check_model(name: str) -> None:
        if name != app.state.config.model_name:
            raise ApiError(404, f"The model `{name}` does not exist; this server serves "
                           f"`{app.state.config.model_name}` (GET /v1/models)",
                           param="model", code="model_not_found")

    def model_card() -> dict:
        gm = app.state.service.model
        m = gm.manifest
        return {"id": app.state.config.model_name, "object": "model",
                "created": int(gm.run.manifest_path.stat().st_mtime), "owned_by": "glyph",
                "glyph": {"run": str(gm.run.path), "base": m.base.name,
                          "tied": m.base.tied, "registers": gm.registers,
                          "triggers": {t: [g.symbol for g in m.glyphs_of(t)]
                                       for t in m.triggers}}}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name}")
    async def model(name: str):
        check_model(name)
        return model_card()

    @app.post("/v1/completions")
    async def completions(body: CompletionBody, request: Request):
        check_model(body.model)
        _refuse_unsupported(body)
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts or len(prompts) > 16:
            raise ApiError(400, "prompt must be a string or a list of 1 to 16 strings",
                           param="prompt")
        return await _Job(app, body, prompts, "text_completion").respond(request)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody, request: Request):
        check_model(body.model)
        _refuse_unsupported(body)
        gm, engine = app.state.service.model, app.state.engine
        msgs = [{"role": m.role, "content": _content(gm, m)} for m in body.messages]
        try:
            with engine.tok_lock:
                text = gm.tokenizer.apply_chat_template(msgs, tokenize=False,
                                                        add_generation_prompt=True)
        except Exception as e:  # noqa: BLE001 - a template error is the client's messages
            raise ApiError(400, f"cannot apply the chat template: {e}", param="messages") from None
        return await _Job(app, body, [text], "chat.completion").respond(request)
