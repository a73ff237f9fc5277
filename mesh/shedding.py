"""Load shedding where the calls wait: admission at handler look-up, fed by a pool of acceptors.

Where an overloaded call waits (grpcio 1.78; timestamps from the client's send, from
`mesh.server._ChainHandlers.service`, the first Python code of a call, and from the
servicer's start; lead SubmitLead, 2,000 in flight): ~2.8 s from send to look-up, ~1 ms from
look-up to servicer, ~45 ms in the servicer. The wait is in grpc's C core, in its list of
calls no application has asked for yet: `AioServer._server_main_loop` asks for ONE call at
a time (`await self._request_call()`, schedule it, ask again), each ask a round trip through
the completion queue, the poller thread and event-loop turns that every call in flight
shares, so the server takes calls no faster than it serves them and the rest queue where
no Python code sees them. Hence a limit counted in handlers (`MARQUE_MAX_CONCURRENCY`
before) or grpc's `maximum_concurrent_rpcs` (counted at that same ask) never trips; the
core's `grpc.server.max_pending_requests` is not applied on this (filter-stack) path, and
`grpc.server_max_unrequested_time_in_server` kills waiting calls, as CANCELLED, in whole
seconds. And when the process's core is saturated, calls also wait in the socket and in
the core's HTTP/2 parsing (grpc's own threads, on the same CPU), still unseen.

What this module does:
- `Acceptors`: `ACCEPTORS` more outstanding asks (grpc's private `_request_call`,
  `_handle_rpc`, `_schedule_rpc_coro`, used exactly as its main loop uses them, checked at
  start), so one loop turn takes every waiting call out of the core;
- `Shedder.gate` at handler look-up admits, or returns a tiny handler answering
  RESOURCE_EXHAUSTED (ErrorInfo OVERLOADED, RetryInfo) without reading or deserialising
  the request, authenticating, validating or tracing; counted in the method's
  `grpc_server_handled_total` and in `marque_server_shed_total{reason}`;
- `Admission` decides on plain numbers: calls admitted and not answered, counted from
  look-up to the reply (a done-callback on grpc's per-call task), at most
  `MARQUE_MAX_CONCURRENCY`; below that an adaptive limit, per 100 ms interval: a process
  using >= 90% of its CPU (or whose loop never idled) holding more calls than it answers
  within the target admits 10% fewer (CPU for the shed replies, and for the calls queued
  unseen), and grows back while it is not saturated (go-zero's CPU rule,
  which also asks for more in flight than max throughput x min latency); and CoDel's rule:
  when even the fastest call of an
  interval spent longer than `MARQUE_QUEUE_DELAY_TARGET` in the server, at most
  throughput x target (Little's law: a wait of about the target).
Calls whose deadline passed are refused by the chain before the servicer runs
(`mesh.chain._set_deadline`, DEADLINE_EXCEEDED); the core cancels those expiring unasked.
A shed reply still costs grpc's per-call work (~0.2-0.3 ms of CPU here, against ~2 ms for a
lead SubmitLead), so on one core the offered load that can be shed is bounded: see
README's Overload section.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import time
import weakref
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mesh.chain import status_for
from mesh.errors import ResourceExhausted
from mesh.metrics import MethodStats

log = logging.getLogger("mesh.shedding")

# Extra outstanding asks for calls beside grpc's own one: a turn of the event loop then takes
# up to this many waiting calls out of the core instead of one every second turn.
ACCEPTORS = 16
# The decision's interval (CoDel's 100 ms), and the loop-lag sentinel's period within it.
INTERVAL = 0.1
SENTINEL = 0.005
# Saturated: the process used this share of the CPU it may use (grpc's C core parses and
# answers on its own threads, so an idle event loop does not mean an idle core), or the
# loop never idled (every sentinel sample later than BUSY_LAG). A saturated server queues
# calls before look-up, in the core or the socket, where no count of calls sees them: so
# a saturated server with calls in flight admits fewer, keeping CPU for the rest, shed
# replies included (go-zero's CPU rule, with grpc's costly sheds in the budget).
BUSY_CPU = 0.9
BUSY_LAG = 0.001
# While saturated the limit shrinks by this factor per interval (a shed reply costs CPU
# too: admitted work must leave it some); while not saturated it grows back by an eighth.
DECREASE = 0.9
# The adaptive limit never goes below this many calls in flight.
MIN_LIMIT = 4
# A saturated CPU alone is no overload: a process answering a steady 64 calls in flight in
# 30 ms each is busy, and working. It is overloaded when it holds (or sheds) more calls than
# it answers within the target (Little's law: throughput x target), and never below this
# many; only then does the CPU rule bring the limit down.
BUSY_MIN_IN_FLIGHT = 64
RETRY_AFTER = 0.5

CONCURRENCY = "concurrency"  # the hard cap, MARQUE_MAX_CONCURRENCY
QUEUE_DELAY = "queue_delay"  # the adaptive limit below it
_RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def available_cores() -> float:
    """The CPUs this process may use: its affinity, bounded by a cgroup v2 quota."""
    cores = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1.0
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    return max(cores, 0.01)


class Admission:
    """The admission decision over plain numbers; the caller passes `now`, and `cpu` gives
    the process's CPU seconds (both injected in tests).

    `admit(now)` returns None and counts the call in flight, or the reason to shed it;
    `done(started, now)` is called once for every admitted call when its reply is sent;
    `note_lag(lag)` gets the loop-lag sentinel's samples. Every `interval` the limit is set:
    - saturated (see BUSY_CPU) with more calls than it answers within `target` (and more
      than BUSY_MIN_IN_FLIGHT) in flight or shed: x `DECREASE` (from the calls in flight),
      CPU for the shed replies and the calls waiting unseen;
    - not saturated: back up by an eighth (to `cap`; at once after a quiet second);
    - even the fastest call answered took longer than `target` in the server (CoDel): at
      most throughput x target, by Little's law a wait of about the target.
    """

    __slots__ = (
        "_count",
        "_cpu_at",
        "_min",
        "_min_lag",
        "_next_roll",
        "_rate",
        "_rolled",
        "_shed",
        "cap",
        "cores",
        "cpu",
        "floor",
        "in_flight",
        "interval",
        "limit",
        "target",
    )

    def __init__(
        self,
        cap: int,
        target: float,
        now: float,
        *,
        cpu: Callable[[], float] = time.process_time,
        cores: float = 1.0,
        floor: int = MIN_LIMIT,
        interval: float = INTERVAL,
    ) -> None:
        self.cap = cap
        self.target = target  # <= 0: the cap only
        self.cpu, self.cores = cpu, cores
        self.floor = min(floor, cap)
        self.interval = interval
        self.in_flight = 0
        self.limit = cap
        self._rate = 0.0  # calls answered per second, smoothed over intervals
        self._count = 0  # calls answered in this interval
        self._min = math.inf  # their shortest time in the server
        self._min_lag = math.inf  # the sentinel's smallest lateness in this interval
        self._shed = 0  # calls shed in this interval
        self._rolled = now
        self._cpu_at = cpu()
        self._next_roll = now + interval

    def admit(self, now: float) -> str | None:
        """None (admitted, counted in flight) or why the call is shed."""
        if now >= self._next_roll:
            self._roll(now)
        if self.in_flight >= self.limit:
            self._shed += 1
            return QUEUE_DELAY if self.limit < self.cap else CONCURRENCY
        self.in_flight += 1
        return None

    def done(self, started: float, now: float) -> None:
        """An admitted call has been answered (or cancelled)."""
        self.in_flight -= 1
        self._count += 1
        self._min = min(self._min, now - started)

    def note_lag(self, lag: float) -> None:
        """How late the loop ran the sentinel (seconds)."""
        self._min_lag = min(self._min_lag, lag)

    def _roll(self, now: float) -> None:
        elapsed = now - self._rolled
        cpu = self.cpu()
        busy = (cpu - self._cpu_at) / (elapsed * self.cores) if elapsed > 0 else 0.0
        rate = self._count / elapsed if elapsed > 0 else 0.0
        self._rate = rate if self._rate == 0.0 else (self._rate + rate) / 2
        limit = self.limit
        if self.target > 0:
            saturated = busy >= BUSY_CPU or self._min_lag > BUSY_LAG
            ample = max(BUSY_MIN_IN_FLIGHT, math.ceil(self._rate * self.target))
            if saturated and self.in_flight + self._shed > ample:
                limit = int(min(limit, self.in_flight) * DECREASE)
            elif not saturated:
                limit = self.cap if elapsed > 10 * self.interval else limit + limit // 8 + 1
            if self._count and self._min > self.target:
                # Not below `ample` either: one slow interval of a quiet server (a cold
                # cache, a checkpoint) is no standing queue of calls.
                limit = min(limit, ample)
        self.limit = max(self.floor, min(self.cap, limit))
        self._count = self._shed = 0
        self._min = self._min_lag = math.inf
        self._rolled, self._cpu_at = now, cpu
        self._next_roll = now + self.interval


class Shedder:
    """Admission at handler look-up for every method of one server."""

    def __init__(
        self,
        service: str,
        max_concurrency: int,
        target: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.clock = clock
        self.admission = Admission(max_concurrency, target, clock(), cores=available_cores())
        self.shed: dict[tuple[str, str], int] = {}  # (grpc_service, reason) -> calls
        self._handlers: dict[str, tuple[grpc.RpcMethodHandler, MethodStats]] = {}
        self._status = status_for(
            ResourceExhausted(
                "server overloaded, retry later", reason="OVERLOADED", retry_after=RETRY_AFTER
            ),
            service,
        )
        self._limited = False  # the limit was below the cap at the last call
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        _LIVE.add(self)

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the loop-lag sentinel: a timer every `SENTINEL` seconds noting its delay."""
        self._due = loop.time() + SENTINEL
        self._timer = loop.call_at(self._due, self._tick, loop)

    def unwatch(self) -> None:
        """Stop the sentinel."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self.admission.note_lag(now - self._due)
        self._due = now + SENTINEL
        self._timer = loop.call_at(self._due, self._tick, loop)

    def register(self, full_method: str, stats: MethodStats) -> None:
        """Prepare the shed reply of one method, counted in its own grpc_server_* series."""
        self._handlers[full_method] = (_shed_handler(self._status), stats)

    def gate(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` if the call is admitted, else the method's shed reply."""
        admission = self.admission
        now = self.clock()
        reason = admission.admit(now)
        if (admission.limit < admission.cap) is not self._limited:
            self._note_state()
        if reason is None:
            task = asyncio.current_task()
            if task is None:  # not inside grpc's per-call task: nothing tells when it ends
                admission.done(now, now)
            else:
                task.add_done_callback(partial(self._finished, now))
            return handler
        shed, stats = self._handlers[full_method]
        stats.started += 1
        stats.done(_RESOURCE_EXHAUSTED, 0.0)
        key = (stats.service, reason)
        self.shed[key] = self.shed.get(key, 0) + 1
        return shed

    def _finished(self, started: float, _task: Any) -> None:
        self.admission.done(started, self.clock())

    def _note_state(self) -> None:
        self._limited = not self._limited
        if self._limited:
            limit = self.admission.limit
            log.warning("overloaded: admitting %d calls in flight", limit, extra={"limit": limit})
        else:
            log.info("no longer overloaded")


def _shed_handler(status: grpc.Status) -> grpc.RpcMethodHandler:
    """A handler that answers `status` at once. Declared client-streaming whatever the
    method, so grpc calls it without first receiving and deserialising the request."""
    code, details, trailing = status.code, status.details, status.trailing_metadata

    async def shed(_requests: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, details, trailing)

    return grpc.stream_unary_rpc_method_handler(shed)


# ----------------------------------------------------------------------------- acceptors


def _grpc_internals(server: grpc.aio.Server) -> tuple[Any, Any, Any] | None:
    """grpc's core server and the two functions its main loop runs per call, if this grpcio
    has them with the signatures this module was written against (1.78); else None."""
    try:
        from grpc._cython import cygrpc  # type: ignore[attr-defined]

        core = server._server  # type: ignore[attr-defined]
        handle, schedule = cygrpc._handle_rpc, cygrpc._schedule_rpc_coro
        expected = {
            handle: ["generic_handlers", "interceptors", "rpc_state", "loop"],
            schedule: ["rpc_coro", "rpc_state", "loop"],
        }
        for function, names in expected.items():
            if list(inspect.signature(function).parameters)[: len(names)] != names:
                return None
        if not callable(getattr(core, "_request_call", None)):
            return None
    except (AttributeError, ImportError, TypeError, ValueError):
        return None
    return core, handle, schedule


class Acceptors:
    """More outstanding asks for calls, so calls leave the core as fast as they arrive; and
    the shedder's loop-lag sentinel, for as long as the server runs."""

    def __init__(
        self,
        server: grpc.aio.Server,
        handlers: list[Any],
        shedder: Shedder,
        count: int = ACCEPTORS,
    ) -> None:
        self._calls: set[asyncio.Task[Any]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._shedder = shedder
        loop = asyncio.get_running_loop()
        shedder.watch(loop)
        internals = _grpc_internals(server)
        if internals is None:
            log.warning("this grpcio has no known accept internals: calls are taken one by one")
            return
        self._tasks = [
            loop.create_task(self._accept(loop, handlers, *internals)) for _ in range(count)
        ]

    @property
    def running(self) -> int:
        """Acceptors still asking for calls."""
        return sum(not t.done() for t in self._tasks)

    async def _accept(
        self,
        loop: asyncio.AbstractEventLoop,
        handlers: list[Any],
        core: Any,
        handle: Any,
        schedule: Any,
    ) -> None:
        calls = self._calls
        while core.is_running():  # checked before each ask: a stopped core must not be asked
            try:
                state = await core._request_call()
            except Exception:  # shutdown fails the outstanding asks
                return
            # What grpc's main loop does with a call (without its maximum_concurrent_rpcs).
            call = loop.create_task(schedule(handle(handlers, (), state, loop, False), state, loop))
            calls.add(call)
            call.add_done_callback(calls.discard)

    async def wait_stopped(self) -> None:
        """After the server stopped: its shutdown ended every ask; wait for the acceptors."""
        self._shedder.unwatch()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in pending:
                task.cancel()


# ------------------------------------------------------------------------------- metrics

_LIVE: weakref.WeakSet[Shedder] = weakref.WeakSet()


class _ShedCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        shed = CounterMetricFamily(
            "marque_server_shed",
            "Calls answered RESOURCE_EXHAUSTED at handler look-up, by reason.",
            labels=["grpc_service", "reason"],
        )
        limit = GaugeMetricFamily(
            "marque_server_admission_limit",
            "Calls the server admits in flight now (the adaptive limit, else the cap).",
            labels=["service"],
        )
        admitted = GaugeMetricFamily(
            "marque_server_admitted_in_flight",
            "Calls admitted at look-up and not yet answered.",
            labels=["service"],
        )
        for shedder in list(_LIVE):
            for (service, reason), n in list(shedder.shed.items()):
                shed.add_metric([service, reason], n)
            limit.add_metric([shedder.service], shedder.admission.limit)
            admitted.add_metric([shedder.service], shedder.admission.in_flight)
        yield from (shed, limit, admitted)


REGISTRY.register(_ShedCollector())
