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

Here: `Shedder` and its metrics; `Admission` is in mesh/admission.py, `Acceptors` in
mesh/acceptors.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import grpc
import grpc.aio
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mesh.acceptors import ACCEPTORS, Acceptors
from mesh.admission import (
    BUSY_CPU,
    BUSY_LAG,
    BUSY_MIN_IN_FLIGHT,
    CONCURRENCY,
    DECREASE,
    INTERVAL,
    MIN_LIMIT,
    QUEUE_DELAY,
    SENTINEL,
    Admission,
    available_cores,
)
from mesh.chain import status_for
from mesh.errors import ResourceExhausted
from mesh.metrics import MethodStats

__all__ = [
    "ACCEPTORS",
    "BUSY_CPU",
    "BUSY_LAG",
    "BUSY_MIN_IN_FLIGHT",
    "CONCURRENCY",
    "DECREASE",
    "INTERVAL",
    "MIN_LIMIT",
    "QUEUE_DELAY",
    "RETRY_AFTER",
    "SENTINEL",
    "Acceptors",
    "Admission",
    "Shedder",
    "available_cores",
]

log = logging.getLogger("mesh.shedding")

RETRY_AFTER = 0.5
_RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


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
