"""The driver's one dispatch loop: every Ray call of a run (extraction, loading, scoring, fine-tuning) goes through it.

Each kind of work is a :class:`Source` that submits what may start now under its own cap and is told how each call
ended. The loop only waits, with a timeout, on the calls in flight, so it never blocks on one call while others
finish, and notices sources whose queued work cannot start yet (workers waiting for the autoscaler). A call that
runs past its time limit (a model whose forward never returns) is cancelled and told to its source as failed with
``TaskTimeout``, so one hung call never holds a run: the source fails what it was for and frees what it held (an
extraction worker is killed and replaced). Nothing here knows what a call computes.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import ray

logger = logging.getLogger("otce_ray")
POLL_SECONDS = 0.5  # longest a wait blocks before the sources are asked again what may start
GET_SECONDS = 300.0  # a ready result is fetched within this (it may live on another node)
STUCK_SECONDS = 3600.0  # a call in flight longer is cancelled


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(error: BaseException) -> str:
    """A failed call's error as one line for a result row (``Type: message``): a Ray task error by the exception it
    wraps, its colour codes and traceback left out. Callers log the whole error; a row should read as a sentence."""
    cause = getattr(error, "cause", None) or error
    lines = [line.strip() for line in _ANSI.sub("", str(cause)).splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return lines[-1]  # the raise line of a traceback that came as text: "ValueError: ..."
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


class TaskTimeout(TimeoutError):
    """A call that gave no result within its time limit; it has been cancelled (a normal task's worker is killed)."""


@dataclass(frozen=True)
class Call:
    """One submitted Ray call: the source's key for it, its result ref, and what it does in words."""

    key: Any
    ref: ray.ObjectRef
    what: str


class Source(Protocol):
    """A kind of work the loop drives."""

    name: str

    def start(self) -> Iterable[Call]:
        """Submit what may start now (within the source's own caps) and return the calls made."""

    def done(self, key: Any, value: Any) -> None:
        """A call returned ``value``."""

    def failed(self, key: Any, error: BaseException) -> None:
        """A call raised, its worker or object was lost, or it ran past its time limit (``TaskTimeout``)."""

    def idle(self) -> bool:
        """Nothing queued: every call the source will ever make has been made."""


@dataclass
class DispatchStats:
    """What the loop saw: calls per source, and the calls cancelled for running past their time limit."""

    calls: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    stuck: list[str] = field(default_factory=list)
    peak_in_flight: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"calls": dict(self.calls), "failures": dict(self.failures), "stuck": list(self.stuck),
                "peak_in_flight": self.peak_in_flight}


@dataclass
class _Flight:
    source: Source
    call: Call
    started: float


def drive(sources: Sequence[Source], *, stuck_seconds: float = STUCK_SECONDS,
          poll_seconds: float = POLL_SECONDS) -> DispatchStats:
    """Run every source to the end: submit, wait (bounded), hand back results, until all are idle and none in flight.

    A call in flight longer than ``stuck_seconds`` is cancelled and failed with ``TaskTimeout``. A source that
    raises from its own callbacks ends the run (that is a bug, not a failed call).
    """
    stats = DispatchStats()
    flights: dict[ray.ObjectRef, _Flight] = {}
    while True:
        now = time.monotonic()
        for source in sources:
            for call in source.start():
                flights[call.ref] = _Flight(source, call, now)
                stats.calls[source.name] += 1
        stats.peak_in_flight = max(stats.peak_in_flight, len(flights))
        if not flights:
            if all(source.idle() for source in sources):
                return stats
            time.sleep(poll_seconds)  # queued work that may not start yet: the sources decide how long to wait
            continue
        for ref in _ready(list(flights), poll_seconds):
            flight = flights.pop(ref)
            try:
                value = ray.get(ref, timeout=GET_SECONDS)
            except Exception as error:  # noqa: BLE001 - how a call ended is its source's business
                stats.failures[flight.source.name] += 1
                flight.source.failed(flight.call.key, error)
            else:
                flight.source.done(flight.call.key, value)
        for ref in [ref for ref, flight in flights.items() if time.monotonic() - flight.started >= stuck_seconds]:
            _expire(flights.pop(ref), stuck_seconds, stats)


def _expire(flight: _Flight, limit: float, stats: DispatchStats) -> None:
    """Cancel a call past its time limit and fail it at its source. A normal task's worker is killed (``force``);
    an actor call cannot be cancelled so, and its source kills the actor."""
    message = f"{flight.call.what}: no result after {limit:.0f} s (cluster.stuck_task_seconds): cancelled"
    logger.warning(message)
    stats.stuck.append(message)
    try:
        ray.cancel(flight.call.ref, force=True)
    except (ValueError, TypeError):  # an actor call: force-cancelling one is not supported
        pass
    stats.failures[flight.source.name] += 1
    flight.source.failed(flight.call.key, TaskTimeout(message))


def _ready(refs: list[ray.ObjectRef], timeout: float) -> list[ray.ObjectRef]:
    """The refs that are ready: waits up to ``timeout`` for the first, then takes every other one already done."""
    first, _ = ray.wait(refs, num_returns=1, timeout=timeout)
    if not first or len(refs) == 1:
        return first
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    return ready or first


class Tasks:
    """The simplest source: independent calls made in order, at most ``cap()`` in flight (re-read as the cluster
    grows). Each item is ``(key, submit, what)``: ``submit()`` makes the call and returns its ref."""

    def __init__(self, name: str, items: Iterable[tuple[Any, Callable[[], ray.ObjectRef], str]],
                 cap: Callable[[], int], on_done: Callable[[Any, Any], None],
                 on_failed: Callable[[Any, BaseException], None]) -> None:
        self.name = name
        self._items = deque(items)
        self._cap = cap
        self._running = 0
        self._on_done, self._on_failed = on_done, on_failed

    def idle(self) -> bool:
        return not self._items

    def start(self) -> list[Call]:
        calls = []
        while self._items and self._running < self._cap():
            key, submit, what = self._items.popleft()
            calls.append(Call(key, submit(), what))
            self._running += 1
        return calls

    def done(self, key: Any, value: Any) -> None:
        self._running -= 1
        self._on_done(key, value)

    def failed(self, key: Any, error: BaseException) -> None:
        self._running -= 1
        self._on_failed(key, error)
