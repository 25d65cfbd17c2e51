"""One generation request as the engine sees it and as its caller reads it.

A :class:`Handle` is created by :meth:`glyph.serving.engine.Engine.submit`; the engine (and
its lanes) append tokens and text to it, the caller iterates over its events (:class:`Event`),
waits for it, or cancels it.

Example::

    >>> h = engine.submit("⟁ the floor", SamplingParams(max_tokens=20))   # doctest: +SKIP
    >>> "".join(h)                                                         # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

from .sampling import SamplingParams


@dataclass
class Event:
    """A piece of a request's text; ``finish_reason`` is set on its last event."""

    text: str
    finish_reason: str | None = None


class Handle:
    """One generation in the engine: read it as it streams, wait for it, or cancel it."""

    _ids = itertools.count(1)

    def __init__(self, text: str, prompt_ids: list[int], params: SamplingParams,
                 route: list[str], sink: Callable[[Event], None] | None):
        self.id = next(self._ids)
        self.prompt, self.prompt_ids, self.params, self.route = text, prompt_ids, params, route
        self.out_ids: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self.cancelled = False
        self._sent = 0      # characters of text already streamed
        self._gen = None    # its torch.Generator, made when admitted
        self._adapter = ""  # a combined adapter for several triggers (engine.combine)
        self._queue: queue.Queue[Event] | None = None if sink else queue.Queue()
        self._sink = sink or self._queue.put  # type: ignore[union-attr]
        self._done = threading.Event()

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.out_ids)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop generating (the engine drops it before its next step)."""
        self.cancelled = True

    def wait(self, timeout: float | None = None) -> "Handle":
        if not self._done.wait(timeout):
            raise TimeoutError(f"generation {self.id} did not finish in {timeout}s")
        return self

    def __iter__(self) -> Iterator[str]:
        """Text pieces as they are generated (only for handles submitted without a sink)."""
        assert self._queue is not None, "this handle streams to its sink"
        while True:
            ev = self._queue.get()
            if ev.text:
                yield ev.text
            if ev.finish_reason is not None:
                return

    def _emit(self, text: str, finish_reason: str | None = None) -> None:
        if finish_reason is not None:
            self.finish_reason = finish_reason
        if text or finish_reason is not None:
            self._sink(Event(text, finish_reason))
        if finish_reason is not None:
            self._done.set()
