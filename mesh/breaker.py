"""Client-side adaptive throttling for calls to external backends (ERP, DMS, telematics).

This is the breaker of the Google SRE book ("Handling Overload", client-side throttling), the
one go-zero and kratos ship: each client keeps, over a rolling window, how many requests it
attempted and how many the backend accepted, and rejects a new request locally with
probability

    p = max(0, (requests - K * accepts) / (requests + 1))

Why this rather than a classic closed/open/half-open state machine: there are no thresholds
or timers to tune, it degrades proportionally (a backend that accepts half of the calls still
receives about K times what it can take, not zero and not everything), and recovery needs no
probe state: as soon as accepts come back, p falls by itself. `K` trades wasted backend work
for responsiveness: 2.0 (the book's value) lets twice the accepted rate through; lower K
throttles harder.

Locally rejected requests count as requests, as in the book, so a backend that is down is
soon spared almost all traffic, while a small trickle still reaches it and notices recovery.
An admitted request is counted when its outcome is known (accepted or failed), as go-zero
does, not when it starts: counted at its start, a burst of calls in flight would be requests
without accepts yet, and the breaker would throttle a healthy backend for being busy (64
concurrent calls to a healthy SAP saw p near 1). It counts failures, not concurrency.

Time comes from an injected clock and randomness from an injected source, so tests are
deterministic and never sleep.
"""

from __future__ import annotations

import math
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal, TypeVar

import grpc
from prometheus_client import Counter, Gauge

from mesh.errors import DomainError, Unavailable

T = TypeVar("T")

State = Literal["closed", "half-open", "open"]

BREAKER_OPEN = Gauge(
    "marque_breaker_open",
    "1 while the adaptive-throttling breaker of a backend rejects more than half of the "
    "calls locally (reject probability > 0.5), else 0.",
    ["backend"],
)
BREAKER_REJECT_PROBABILITY = Gauge(
    "marque_breaker_reject_probability",
    "Current local reject probability of a backend's breaker (0 = closed).",
    ["backend"],
)
BREAKER_REJECTED = Counter(
    "marque_breaker_rejected",
    "Calls to a backend rejected locally by its breaker, without reaching the backend.",
    ["backend"],
)

# gRPC codes that mean "the backend could not take the call"; other codes (NOT_FOUND,
# INVALID_ARGUMENT...) are answers from a healthy backend and count as accepts.
FAILURE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


def default_is_failure(exc: BaseException) -> bool:
    """Whether an exception means the backend failed to serve (as opposed to answering no).

    Network errors, timeouts, UNAVAILABLE-like gRPC statuses and domain errors carrying one of
    those codes are failures; anything else (a domain NotFound, a validation error) proves
    the backend is up and counts as accepted.
    """
    if isinstance(exc, OSError):  # includes TimeoutError and ConnectionError
        return True
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code in FAILURE_CODES
    if isinstance(exc, DomainError):
        return grpc.StatusCode[exc.code] in FAILURE_CODES
    return False


class AdaptiveBreaker:
    """Adaptive throttling in front of one backend.

    Use `async with breaker.guard(): ...` around a call, or `await breaker.call(fn)`. A local
    rejection raises `mesh.errors.Unavailable` with `retry_after` set (the mesh maps it to
    UNAVAILABLE with RetryInfo), so callers handle it like the backend's own unavailability.

    The window (default 120 s, the SRE book's two minutes) is split in `buckets` slots; a slot
    older than the window is reset when the clock reaches it again, so memory is constant and
    no timer runs. Not thread-safe: use one breaker per event loop (the mesh is asyncio).
    """

    def __init__(
        self,
        backend: str,
        *,
        k: float = 2.0,
        window_seconds: float = 120.0,
        buckets: int = 40,
        is_failure: Callable[[BaseException], bool] = default_is_failure,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        export_metrics: bool = True,
    ) -> None:
        if k <= 0:
            raise ValueError("k must be positive")
        if window_seconds <= 0 or buckets < 1:
            raise ValueError("window_seconds must be positive and buckets at least 1")
        self.backend = backend
        self.k = k
        self.window_seconds = window_seconds
        self.bucket_seconds = window_seconds / buckets
        self._n = buckets
        self._is_failure = is_failure
        self._clock = clock
        self._random = random
        self._requests = [0] * buckets
        self._accepts = [0] * buckets
        # The absolute bucket number each slot currently holds; -1 = never used.
        self._epoch = [-1] * buckets
        self._rejected_metric = BREAKER_REJECTED.labels(backend) if export_metrics else None
        if export_metrics:
            # Evaluated at scrape time, so the gauges follow the sliding window even while no
            # calls are made.
            BREAKER_OPEN.labels(backend).set_function(lambda: 1.0 if self.state == "open" else 0.0)
            BREAKER_REJECT_PROBABILITY.labels(backend).set_function(self.reject_probability)

    # -- window -----------------------------------------------------------------------------

    def _slot(self) -> int:
        """The slot of the current bucket, cleared if it still held an old bucket."""
        absolute = math.floor(self._clock() / self.bucket_seconds)
        slot = absolute % self._n
        if self._epoch[slot] != absolute:
            self._epoch[slot] = absolute
            self._requests[slot] = 0
            self._accepts[slot] = 0
        return slot

    def totals(self) -> tuple[int, int]:
        """(requests, accepts) within the window ending now."""
        current = math.floor(self._clock() / self.bucket_seconds)
        oldest = current - self._n + 1
        requests = accepts = 0
        for slot in range(self._n):
            if oldest <= self._epoch[slot] <= current:
                requests += self._requests[slot]
                accepts += self._accepts[slot]
        return requests, accepts

    def reject_probability(self) -> float:
        """max(0, (requests - K*accepts) / (requests + 1)) over the window."""
        requests, accepts = self.totals()
        return max(0.0, (requests - self.k * accepts) / (requests + 1))

    @property
    def state(self) -> State:
        """A classic-breaker view for dashboards: open above p=0.5, half-open while some
        calls are rejected, closed when none are."""
        p = self.reject_probability()
        if p > 0.5:
            return "open"
        if p > 0.0:
            return "half-open"
        return "closed"

    # -- decisions --------------------------------------------------------------------------

    def allow(self) -> bool:
        """Decide one request. A rejected one counts as a request now (the SRE book's
        rule); an admitted one counts once its outcome is recorded (`record`)."""
        p = self.reject_probability()
        if p > 0.0 and self._random() < p:
            self._requests[self._slot()] += 1
            if self._rejected_metric is not None:
                self._rejected_metric.inc()
            return False
        return True

    def record_accept(self) -> None:
        """The backend served an admitted request: a request and an accept."""
        slot = self._slot()
        self._requests[slot] += 1
        self._accepts[slot] += 1

    def record_failure(self) -> None:
        """The backend failed an admitted request: a request without an accept."""
        self._requests[self._slot()] += 1

    def record(self, exc: BaseException | None) -> None:
        """Record the outcome of an admitted request (None = success)."""
        if exc is None or not self._is_failure(exc):
            self.record_accept()
        else:
            self.record_failure()

    def _rejection(self) -> Unavailable:
        return Unavailable(
            f"{self.backend} is failing; call rejected locally by the circuit breaker",
            reason="BACKEND_THROTTLED",
            metadata={"backend": self.backend},
            retry_after=self.bucket_seconds,
        )

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the body only if admitted; its outcome is recorded.

        Cancellation (the caller gave up; a BaseException) says nothing about the backend and
        is counted as neither a failure nor an accept.
        """
        if not self.allow():
            raise self._rejection()
        try:
            yield
        except Exception as exc:
            self.record(exc)
            raise
        self.record_accept()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`await breaker.call(lambda: backend.send(order))`."""
        async with self.guard():
            return await fn()
