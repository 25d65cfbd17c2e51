"""Continuous batching over a :class:`~glyph.serving.routing.GlyphModel`.

One scheduler thread owns the model. Requests wait in a bounded queue; between two decoding
steps the thread admits waiting requests (prefills them, samples their first token and merges
their KV caches into the running batch), runs **one** decoding step for every active
sequence, streams each new piece of text to its request and drops the sequences that
finished or were cancelled. A request therefore joins and leaves the batch at any step;
it never waits for a whole batch to finish.

Routing follows :meth:`GlyphModel.generate`: every row reads its glyphs' adapters, all rows
share one *lane* (one forward pass, an adapter per row through peft's ``adapter_names``). A
multi-trigger row (``⟁ and 🫁``) uses the *sum* of its adapters registered as one more
adapter (:mod:`glyph.serving.combine`: exact, rank = the parts' ranks added), so it joins
the same pass; with ``combine_adapters=False`` each combination runs model-wide in a lane of
its own instead, as ``GlyphModel.generate`` does (a test checks both agree). A lane's cache is left-padded to a common length: its attention
mask hides the padding and every row's position ids count only its own tokens, so a row
computes what it would compute alone (a test compares batched with one-at-a-time output).

Example::

    >>> engine = Engine(GlyphModel.load("runs/default")).start()   # doctest: +SKIP
    >>> h = engine.submit("⟁ the floor gives way and", SamplingParams(max_tokens=20))  # doctest: +SKIP
    >>> h.wait().text                                              # doctest: +SKIP
    >>> engine.stop()                                              # doctest: +SKIP
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError, GlyphError
from .combine import add_sum_adapter
from .fast_rows import BASE_ADAPTER
from .handle import Event, Handle
from .lane import Lane
from .sampling import SamplingParams, generator


class Busy(GlyphError):
    """The engine cannot take the request now (queue full or shutting down): try again later."""


@dataclass
class EngineConfig:
    """Limits of one engine (defaults in one place; checked when created)."""

    max_batch: int = 64            # sequences decoded together
    max_queue: int = 256           # requests waiting for a place before new ones are refused
    max_prompt_tokens: int = 1024  # longer prompts are refused
    max_tokens: int = 512          # the largest max_tokens a request may ask for
    threads: int = 0               # torch threads for the engine (0: leave torch's setting)
    combine_adapters: bool = True  # several triggers → one summed adapter in the mixed lane

    def __post_init__(self) -> None:
        for k, v in self.__dict__.items():
            if k == "combine_adapters":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "threads" else 1):
                raise ConfigError(f"--{k.replace('_', '-')} must be an integer >= "
                                  f"{0 if k == 'threads' else 1}")


class Engine:
    """The continuous-batching scheduler. ``start()`` it, ``submit`` requests, ``stop()`` it."""

    def __init__(self, gm, config: EngineConfig | None = None):
        from . import compact_head

        self.gm, self.config = gm, config or EngineConfig()
        compact_head.install(gm.model)  # same logits; only the live rows of a tiny base
        self.tok_lock = threading.Lock()  # HF tokenizers mutate state while encoding
        self._cv = threading.Condition()
        self._waiting: list[Handle] = []
        self._lanes: dict[tuple[str, ...], Lane] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.counters = dict(submitted=0, finished=0, cancelled=0, refused=0, errors=0,
                             steps=0, tokens=0, max_rows_in_step=0)

    # ------------------------------------------------------------ client side
    def start(self) -> "Engine":
        self._thread = threading.Thread(target=self._loop, name="glyph-engine", daemon=True)
        self._thread.start()
        return self

    def encode(self, text: str) -> list[int]:
        with self.tok_lock:
            return self.gm.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prepare(self, text: str) -> tuple[str, list[int], list[str]]:
        """``(canonical text, token ids, route)`` of a prompt; refuses one that is too long."""
        text = self.gm.canonical(text)
        ids = self.encode(text)
        if not ids:
            raise ConfigError("the prompt is empty; send some text")
        if len(ids) > self.config.max_prompt_tokens:
            raise ConfigError(f"the prompt has {len(ids)} tokens; this server takes at most "
                              f"{self.config.max_prompt_tokens} (--max-prompt-tokens)")
        return text, ids, self.gm.triggers_in(text)

    def check(self, params: SamplingParams) -> None:
        if params.max_tokens > self.config.max_tokens:
            raise ConfigError(f"max_tokens {params.max_tokens} is above this server's cap of "
                              f"{self.config.max_tokens} (--max-tokens)")

    def submit_many(self, prompts: list[str], params: list[SamplingParams],
                    sinks: list[Callable[[Event], None] | None] | None = None) -> list[Handle]:
        """Queue several generations at once: all of them, or none (:class:`Busy`)."""
        for p in params:
            self.check(p)
        prepared = [self.prepare(t) for t in prompts]
        sinks = sinks or [None] * len(prompts)
        handles = [Handle(t, ids, p, route, s)
                   for (t, ids, route), p, s in zip(prepared, params, sinks)]
        with self._cv:
            if self._stopping:
                self.counters["refused"] += len(handles)
                raise Busy("the server is shutting down; send the request to another instance")
            if len(self._waiting) + len(handles) > self.config.max_queue:
                self.counters["refused"] += len(handles)
                raise Busy(f"{len(self._waiting)} requests are waiting (--max-queue "
                           f"{self.config.max_queue}); retry shortly")
            self._waiting.extend(handles)
            self.counters["submitted"] += len(handles)
            self._cv.notify()
        return handles

    def submit(self, prompt: str, params: SamplingParams,
               sink: Callable[[Event], None] | None = None) -> Handle:
        """Queue one generation of ``prompt`` (routed by its glyphs)."""
        return self.submit_many([prompt], [params], [sink])[0]

    def stats(self) -> dict:
        with self._cv:
            active = sum(len(lane.seqs) for lane in self._lanes.values())
            return dict(self.counters, active=active, waiting=len(self._waiting),
                        lanes=len(self._lanes))

    def stop(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Refuse new requests; finish (``drain``) or cancel the running ones; end the thread."""
        with self._cv:
            self._stopping = True
            if not drain:
                for h in self._waiting + [h for lane in self._lanes.values() for h in lane.seqs]:
                    h.cancel()
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------ scheduler thread
    def _loop(self) -> None:
        import torch

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        with torch.no_grad():
            while True:
                with self._cv:
                    while not self._waiting and not self._lanes and not self._stopping:
                        self._cv.wait()
                    if self._stopping and not self._waiting and not self._lanes:
                        return
                    room = self.config.max_batch - sum(len(lane.seqs) for lane in self._lanes.values())
                    admit, self._waiting = self._waiting[:max(room, 0)], self._waiting[max(room, 0):]
                try:
                    self._admit([h for h in admit if not self._drop_if_cancelled(h)])
                    self._step()
                except Exception:  # noqa: BLE001 - one bad batch must not kill the server
                    self._fail_all(traceback.format_exc())

    def _drop_if_cancelled(self, h: Handle) -> bool:
        if h.cancelled:
            self.counters["cancelled"] += 1
            h._emit("", "cancelled")
        return h.cancelled

    def _lane(self, route: list[str]) -> Lane:
        key = self._lane_key(route)
        if key not in self._lanes:
            self._lanes[key] = Lane(self.gm, key, self.tok_lock)
        return self._lanes[key]

    def _lane_key(self, route: list[str]) -> tuple[str, ...]:
        """``()`` (the mixed lane) unless this combination runs model-wide in its own lane."""
        if len(route) <= 1 or self.config.combine_adapters:
            return ()
        return tuple(route)

    def _admit(self, handles: list[Handle]) -> None:
        by_lane: dict[tuple[str, ...], list[Handle]] = {}
        for h in handles:
            h._gen = generator(h.params.seed)
            if len(h.route) > 1 and self.config.combine_adapters:
                h._adapter = add_sum_adapter(self.gm.model, h.route)
            by_lane.setdefault(self._lane_key(h.route), []).append(h)
        for key, hs in by_lane.items():
            lane = self._lane(list(key))
            try:
                finished = lane.prefill(hs, [self._adapter(h) for h in hs])
            except Exception:  # noqa: BLE001 - these requests fail; the lane goes on
                print(f"glyph engine: a prefill failed\n{traceback.format_exc()}", file=sys.stderr)
                for h in hs:
                    if h in lane.seqs:
                        continue
                    self.counters["errors"] += 1
                    h._emit("", "error")
                if not lane.seqs:
                    del self._lanes[key]
                continue
            self._finish(lane, finished)

    @staticmethod
    def _adapter(h: Handle) -> str:
        if h._adapter:
            return h._adapter
        return h.route[0] if len(h.route) == 1 else BASE_ADAPTER

    def _step(self) -> None:
        for key in list(self._lanes):
            lane = self._lanes[key]
            gone = [h for h in lane.seqs if self._drop_if_cancelled(h)]
            if gone:
                lane.drop(gone)
            if lane.seqs:
                rows = len(lane.seqs)
                self._finish(lane, lane.decode([self._adapter(h) for h in lane.seqs]))
                self.counters["steps"] += 1
                self.counters["tokens"] += rows
                self.counters["max_rows_in_step"] = max(self.counters["max_rows_in_step"], rows)
            if not lane.seqs:
                with self._cv:
                    del self._lanes[key]

    def _finish(self, lane: Lane, finished: list[Handle]) -> None:
        if finished:
            lane.drop(finished)
            self.counters["finished"] += len(finished)

    def _fail_all(self, trace: str) -> None:
        print(f"glyph engine: a batch failed; its requests end with an error\n{trace}",
              file=sys.stderr)
        for lane in self._lanes.values():
            for h in lane.seqs:
                self.counters["errors"] += 1
                h._emit("", "error")
        with self._cv:
            self._lanes.clear()
        time.sleep(0.01)
