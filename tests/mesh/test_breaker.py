"""The adaptive-throttling breaker, driven by a fake clock and a fake random source."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from mesh.breaker import AdaptiveBreaker, default_is_failure
from mesh.errors import InvalidArgument, NotFound, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, *, rnd: float = 0.0, **kwargs: object) -> AdaptiveBreaker:
    return AdaptiveBreaker(
        "test",
        clock=clock,
        random=lambda: rnd,
        export_metrics=False,
        **kwargs,  # type: ignore[arg-type]
    )


@given(
    outcomes=st.lists(st.booleans(), max_size=200),
    k=st.floats(min_value=0.5, max_value=4.0),
)
def test_probability_matches_the_formula(outcomes: list[bool], k: float) -> None:
    clock = Clock()
    b = make(clock, k=k, rnd=1.0)  # random() = 1.0: never rejects, so every call is recorded
    for ok in outcomes:
        assert b.allow()
        b.record(None if ok else OSError("down"))
    requests, accepts = len(outcomes), sum(outcomes)
    assert b.totals() == (requests, accepts)
    expected = max(0.0, (requests - k * accepts) / (requests + 1))
    assert b.reject_probability() == pytest.approx(expected)
    assert 0.0 <= b.reject_probability() < 1.0


@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=50), st.booleans()), min_size=1, max_size=100
    )
)
def test_window_forgets_old_buckets(steps: list[tuple[float, bool]]) -> None:
    clock = Clock()
    b = make(clock, window_seconds=120, buckets=40, rnd=1.0)
    events: list[tuple[float, bool]] = []
    for advance, ok in steps:
        clock.now += advance
        b.allow()
        b.record(None if ok else TimeoutError())
        events.append((clock.now, ok))
    # Reference: events whose bucket lies within the last 40 buckets.
    current = int(clock.now // 3)
    recent = [ok for t, ok in events if int(t // 3) > current - 40]
    assert b.totals() == (len(recent), sum(recent))


def test_healthy_backend_is_never_throttled() -> None:
    clock = Clock()
    b = make(clock, rnd=0.0)
    for _ in range(1000):
        assert b.allow()
        b.record_accept()
        clock.now += 0.01
    assert b.state == "closed"
    assert b.reject_probability() == 0.0


async def test_failing_backend_opens_and_recovers_after_the_window() -> None:
    clock = Clock()
    b = make(clock, rnd=0.5)
    failures = 0
    for _ in range(20):
        try:
            async with b.guard():
                raise Unavailable("down")
        except Unavailable:
            failures += 1
    assert failures == 20
    assert b.state == "open"
    with pytest.raises(Unavailable) as rejected:
        await b.call(_ok)
    assert rejected.value.retry_after == pytest.approx(3.0)
    assert rejected.value.reason == "BACKEND_THROTTLED"

    clock.now += 121  # the whole window slides past the failures
    assert b.state == "closed"
    assert await b.call(_ok) == "ok"


async def _ok() -> str:
    return "ok"


async def test_calls_in_flight_to_a_healthy_backend_are_never_throttled() -> None:
    """64 concurrent calls: none has an outcome while the others start, and none is
    refused (counted at their start, they were requests without accepts: p near 1)."""
    import asyncio

    clock = Clock()
    b = make(clock, rnd=0.0)  # any p > 0 rejects
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "ok"

    calls = [asyncio.ensure_future(b.call(slow)) for _ in range(64)]
    await asyncio.sleep(0)
    assert b.totals() == (0, 0) and b.reject_probability() == 0.0
    release.set()
    assert await asyncio.gather(*calls) == ["ok"] * 64
    assert b.totals() == (64, 64)


async def test_a_cancelled_call_counts_as_nothing() -> None:
    import asyncio

    clock = Clock()
    b = make(clock, rnd=0.0)
    call = asyncio.ensure_future(b.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert b.totals() == (0, 0)


async def test_answers_from_a_healthy_backend_count_as_accepts() -> None:
    clock = Clock()
    b = make(clock, rnd=0.0)
    for _ in range(10):
        with pytest.raises(NotFound):
            async with b.guard():
                raise NotFound("no such order")
    assert b.totals() == (10, 10)
    assert b.state == "closed"


async def test_failure_classifier_is_configurable() -> None:
    clock = Clock()
    b = make(clock, rnd=1.0, is_failure=lambda e: isinstance(e, KeyError))
    with pytest.raises(KeyError):
        async with b.guard():
            raise KeyError("x")
    with pytest.raises(ValueError):
        async with b.guard():
            raise ValueError("x")
    assert b.totals() == (2, 1)


def test_default_failure_classification() -> None:
    assert default_is_failure(ConnectionRefusedError())
    assert default_is_failure(TimeoutError())
    assert default_is_failure(Unavailable("down"))
    assert not default_is_failure(InvalidArgument("bad"))
    assert not default_is_failure(ValueError())
    unavailable = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), None, None
    )
    not_found = grpc.aio.AioRpcError(
        grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), None, None
    )
    assert default_is_failure(unavailable)
    assert not default_is_failure(not_found)


@pytest.mark.parametrize(
    ("requests", "accepts", "state"),
    [(0, 0, "closed"), (10, 10, "closed"), (10, 4, "half-open"), (10, 0, "open")],
)
def test_state_view(requests: int, accepts: int, state: str) -> None:
    clock = Clock()
    b = make(clock, rnd=1.0)
    for i in range(requests):
        b.allow()
        if i < accepts:
            b.record_accept()
        else:
            b.record_failure()
    assert b.state == state


def test_prometheus_export() -> None:
    clock = Clock()
    b = AdaptiveBreaker("erp-test", clock=clock, random=lambda: 0.0)
    labels = {"backend": "erp-test"}
    assert REGISTRY.get_sample_value("marque_breaker_open", labels) == 0.0
    for _ in range(10):
        b.allow()
        b.record_failure()
    assert REGISTRY.get_sample_value("marque_breaker_open", labels) == 1.0
    before = REGISTRY.get_sample_value("marque_breaker_rejected_total", labels) or 0.0
    assert not b.allow()
    assert REGISTRY.get_sample_value("marque_breaker_rejected_total", labels) == before + 1
    clock.now += 500
    assert REGISTRY.get_sample_value("marque_breaker_open", labels) == 0.0


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        AdaptiveBreaker("x", k=0, export_metrics=False)
    with pytest.raises(ValueError):
        AdaptiveBreaker("x", buckets=0, export_metrics=False)
