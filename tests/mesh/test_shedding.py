"""mesh.shedding: the admission decision on plain numbers, then over a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from marque.testing.v1 import testing_service_pb2 as pb

from mesh import chain, server
from mesh.config import Settings
from mesh.errors import DeadlineExceeded
from mesh.metrics import SERVER
from mesh.shedding import (
    ACCEPTORS,
    BUSY_LAG,
    BUSY_MIN_IN_FLIGHT,
    CONCURRENCY,
    DECREASE,
    INTERVAL,
    QUEUE_DELAY,
    Admission,
)
from tests.mesh import testing_servicer as testing
from tests.mesh.serving import bearer, serve

# ------------------------------------------------------------------ the decision alone


def make(cap: int, target: float, cpu: list[float] | None = None) -> Admission:
    """An Admission at time 0 whose process CPU is `cpu[0]` (seconds; none used by default)."""
    used = cpu if cpu is not None else [0.0]
    return Admission(cap, target, 0.0, cpu=lambda: used[0], cores=1.0)


def fill(a: Admission, now: float, calls: int) -> list[float]:
    """Admit `calls` at `now`; their start times."""
    assert all(a.admit(now) is None for _ in range(calls))
    return [now] * calls


def interval(a: Admission, start: float, *, sojourn: float, lag: float, calls: int) -> float:
    """One interval from `start`: `calls` admitted and answered after `sojourn`, sentinel
    samples late by `lag`; returns the time the next interval starts."""
    for _ in range(calls):
        assert a.admit(start) is None
        a.done(start, start + sojourn)
    a.note_lag(lag)
    return start + INTERVAL


def test_the_cap_sheds_beyond_max_concurrency_and_frees_on_done() -> None:
    a = make(cap=3, target=0.1)
    starts = fill(a, 0.0, 3)
    assert a.admit(0.0) == CONCURRENCY
    a.done(starts[0], 0.01)
    assert a.admit(0.02) is None
    assert a.in_flight == 3


def test_normal_load_keeps_the_cap() -> None:
    a = make(cap=512, target=0.1)
    t = 0.0
    for _ in range(30):  # fast calls, a loop that idles
        t = interval(a, t, sojourn=0.02, lag=0.0, calls=50)
    assert a.admit(t) is None
    assert a.limit == 512


def test_a_standing_queue_limits_to_throughput_times_target() -> None:
    a = make(cap=512, target=0.1)
    t = 0.0
    for _ in range(5):  # 100 calls per 100 ms, the fastest 300 ms in the server
        t = interval(a, t, sojourn=0.3, lag=0.0, calls=100)
    a.admit(t)  # rolls the interval
    assert a.limit == pytest.approx(1000 * 0.1, abs=2)  # 1000/s x 100 ms
    fill(a, t, a.limit - a.in_flight)
    assert a.admit(t) == QUEUE_DELAY


def test_a_slow_interval_of_a_quiet_server_limits_no_further_than_the_minimum() -> None:
    a = make(cap=512, target=0.1)
    t = interval(a, 0.0, sojourn=5.0, lag=0.0, calls=1)
    a.admit(t)
    assert a.limit == BUSY_MIN_IN_FLIGHT


def test_a_saturated_loop_that_sheds_gives_cpu_back_to_the_sheds() -> None:
    a = make(cap=300, target=0.1)
    fill(a, 0.0, 300)
    assert a.admit(0.0) == CONCURRENCY
    a.note_lag(BUSY_LAG * 5)
    a.admit(INTERVAL)  # rolls: saturated and shedding
    assert a.limit == int(300 * DECREASE)


def test_a_busy_cpu_that_sheds_gives_cpu_back_even_when_the_loop_idles() -> None:
    used = [0.0]
    a = make(cap=300, target=0.1, cpu=used)
    fill(a, 0.0, 300)
    assert a.admit(0.0) == CONCURRENCY
    a.note_lag(0.0)  # the loop idled, but grpc's threads kept the core busy
    used[0] = 0.095
    a.admit(INTERVAL)
    assert a.limit == int(300 * DECREASE)


def test_a_saturated_server_holding_more_than_it_answers_in_time_admits_fewer() -> None:
    a = make(cap=1000, target=0.1)
    t = interval(a, 0.0, sojourn=0.02, lag=BUSY_LAG * 5, calls=100)  # 1,000 answered/s
    fill(a, t, 400)  # far more than 1,000/s x 100 ms: the excess waits unseen too
    a.note_lag(BUSY_LAG * 5)
    a.admit(t + INTERVAL)
    assert a.limit == int(401 * DECREASE)
    a.note_lag(BUSY_LAG * 5)
    a.admit(t + 2 * INTERVAL)  # still holding them: fewer again
    assert a.limit == int(int(401 * DECREASE) * DECREASE)


def test_a_busy_server_at_steady_load_is_not_overloaded() -> None:
    """64 calls in flight on a saturated core, answered in 30 ms: working, not shedding."""
    used = [0.0]
    a = make(cap=512, target=0.25, cpu=used)
    t = 0.0
    for _ in range(50):
        t = interval(a, t, sojourn=0.03, lag=BUSY_LAG * 5, calls=200)
        fill(a, t, 64 - a.in_flight)
        used[0] += INTERVAL  # the whole core
    assert a.limit == 512
    assert a.admit(t) is None


def test_a_busy_cpu_with_nothing_in_flight_keeps_the_limit() -> None:
    used = [0.0]
    a = make(cap=100, target=0.1, cpu=used)
    used[0] = 0.1  # start-up work, no calls
    a.admit(INTERVAL)
    assert a.limit == 100


def test_an_idle_loop_grows_the_limit_back_to_the_cap() -> None:
    a = make(cap=1000, target=0.1)
    fill(a, 0.0, 300)
    a.note_lag(BUSY_LAG * 5)
    a.admit(INTERVAL)  # saturated with 300 in flight
    low = a.limit
    assert low == int(300 * DECREASE)
    a.note_lag(0.0)
    a.admit(2 * INTERVAL)
    assert low < a.limit < 1000
    a.note_lag(0.0)
    a.admit(22 * INTERVAL)  # a long quiet spell: the cap again
    assert a.limit == 1000


def test_no_target_means_the_cap_only() -> None:
    a = make(cap=50, target=0.0)
    t = 0.0
    for _ in range(5):
        t = interval(a, t, sojourn=3.0, lag=1.0, calls=10)
    a.admit(t)
    assert a.limit == 50


def test_an_expired_deadline_is_refused_before_the_servicer() -> None:
    class Expired:
        def time_remaining(self) -> float:
            return 0.0

    class NoDeadline:  # grpc's "none": None, or a huge remaining time
        def time_remaining(self) -> float:
            return 1e9

    with pytest.raises(DeadlineExceeded):
        chain._set_deadline(Expired())  # type: ignore[arg-type]
    chain._set_deadline(NoDeadline())  # type: ignore[arg-type]


# ------------------------------------------------------------------ over a real server


def error_info(error: grpc.aio.AioRpcError) -> tuple[str, bool]:
    """(ErrorInfo reason, whether RetryInfo is there) of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    reason, retry = "", False
    for item in status.details:
        if item.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            item.Unpack(info)
            reason = info.reason
        retry = retry or item.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    return reason, retry


class Ran(dict[str, int]):
    """Servicer methods that ran, by name; `changed` is set at each."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    async def until(self, name: str, n: int) -> None:
        while self.get(name, 0) < n:
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Ran:
    """Counts the TestingService servicer methods that ran, by name."""
    ran = Ran()
    for name in ("Sleep", "Echo", "CountEchoes"):
        original = getattr(testing.TestingServicer, name)

        async def wrapped(
            self: Any, request: Any, context: Any, original: Any = original, name: str = name
        ) -> Any:
            ran[name] = ran.get(name, 0) + 1
            ran.changed.set()
            return await original(self, request, context)

        monkeypatch.setattr(testing.TestingServicer, name, wrapped)
    return ran


async def test_beyond_the_limit_calls_are_shed_before_their_handler(
    tmp_path: Path, counted: Ran
) -> None:
    async with serve(tmp_path, max_concurrency=2) as s:
        held = [asyncio.ensure_future(s.stub.Sleep(pb.SleepRequest(millis=800))) for _ in range(2)]
        await counted.until("Sleep", 2)  # both are inside their handler
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.Sleep(pb.SleepRequest(millis=0))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(e.value) == ("OVERLOADED", True)
        assert counted["Sleep"] == 2  # the shed call's handler never ran
        shedder = s.running.acceptors._shedder  # type: ignore[union-attr]
        assert shedder.shed == {("marque.testing.v1.TestingService", CONCURRENCY): 1}
        stats = next(
            m
            for (_, svc, name), m in SERVER.methods.items()
            if name == "Sleep" and svc == "marque.testing.v1.TestingService"
        )
        assert stats.handled[grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]] >= 1
        assert [r.slept_millis for r in await asyncio.gather(*held)] == [800, 800]
        assert (await s.stub.Sleep(pb.SleepRequest(millis=0))).slept_millis == 0


async def test_a_call_whose_deadline_passed_while_it_waited_is_not_served(
    tmp_path: Path, counted: Ran, monkeypatch: pytest.MonkeyPatch
) -> None:
    look_up = server._ChainHandlers.service

    def slow_look_up(self: Any, details: grpc.HandlerCallDetails) -> Any:
        if details.method.endswith("/CountEchoes"):
            time.sleep(0.4)  # the whole server stalls past the call's deadline
        return look_up(self, details)

    monkeypatch.setattr(server._ChainHandlers, "service", slow_look_up)

    async def rows() -> AsyncIterator[pb.CountEchoesRequest]:
        yield pb.CountEchoesRequest(message="m")

    async with serve(tmp_path) as s:
        stats = next(m for (_, _, name), m in SERVER.methods.items() if name == "CountEchoes")
        before = stats.handled[grpc.StatusCode.DEADLINE_EXCEEDED.value[0]]
        # The client's own deadline fires while the loop is stalled: grpc reports it as
        # DEADLINE_EXCEEDED or, for a client stream, sometimes as a cancelled write.
        with pytest.raises((grpc.aio.AioRpcError, asyncio.CancelledError)):
            await s.stub.CountEchoes(rows(), timeout=0.2)
        assert (await s.stub.Sleep(pb.SleepRequest(millis=0), timeout=5)).slept_millis == 0
        assert stats.handled[grpc.StatusCode.DEADLINE_EXCEEDED.value[0]] == before + 1
    assert "CountEchoes" not in counted  # the chain refused it: the servicer never ran


async def test_normal_load_is_not_shed(tmp_path: Path, counted: Ran) -> None:
    async with serve(tmp_path) as s:
        assert s.running.acceptors is not None and s.running.acceptors.running == ACCEPTORS
        md = bearer(s.keys)
        replies = await asyncio.gather(
            *(s.stub.Echo(pb.EchoRequest(message=f"m{i}"), metadata=md) for i in range(100))
        )
        assert [r.message for r in replies] == [f"m{i}" for i in range(100)]
        assert s.running.acceptors._shedder.shed == {}
        acceptors = s.running.acceptors
    assert acceptors.running == 0  # the server's stop ended them


async def test_without_shedding_there_are_no_acceptors(tmp_path: Path) -> None:
    async with serve(tmp_path, load_shedding=False) as s:
        assert s.running.acceptors is None
        assert (await s.stub.Sleep(pb.SleepRequest(millis=0))).slept_millis == 0


def test_settings_read_the_shedding_variables() -> None:
    s = Settings.from_env(
        "lead", {"MARQUE_LOAD_SHEDDING": "off", "MARQUE_QUEUE_DELAY_TARGET": "0.25"}
    )
    assert (s.load_shedding, s.queue_delay_target) == (False, 0.25)
    assert Settings.from_env("lead", {}).load_shedding
    with pytest.raises(ValueError):
        Settings.from_env("lead", {"MARQUE_LOAD_SHEDDING": "maybe"})
    with pytest.raises(ValueError):
        Settings.from_env("lead", {"MARQUE_QUEUE_DELAY_TARGET": "-1"})
