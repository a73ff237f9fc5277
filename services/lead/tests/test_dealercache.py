"""DealerCache: only the first read (or one after a change made here) is waited for; a stale
registry is refreshed in the background, one refresh at a time, never over a newer one."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.lead.dealercache import DealerCache
from services.lead.domain.model import Dealer


def dealer(dealer_id: str) -> Dealer:
    return Dealer(
        id=dealer_id,
        name=dealer_id,
        brands=("Marque",),
        province="Shanghai",
        city="Shanghai",
        daily_capacity=5,
        active=True,
    )


class Registry:
    """A fake registry read: returns what `rows` holds when the read starts, finishing
    only when the test releases it: the next of `gates` if any is queued, else `gate` if
    set."""

    def __init__(self) -> None:
        self.rows: list[Dealer] = [dealer("A")]
        self.gate: asyncio.Event | None = None
        self.gates: list[asyncio.Event] = []
        self.started = 0
        self.fail = False

    async def load(self) -> list[Dealer]:
        self.started += 1
        snapshot = list(self.rows)
        gate = self.gates.pop(0) if self.gates else self.gate
        if gate is not None:
            await gate.wait()
        if self.fail:
            raise OSError("database is down")
        return snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ids(dealers: list[Dealer]) -> list[str]:
    return [d.id for d in dealers]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_first_get_reads_then_fresh_gets_do_not() -> None:
    reg, clock = Registry(), Clock()
    cache = DealerCache(reg.load, ttl=5.0, clock=clock)
    assert ids(await cache.get()) == ["A"]
    clock.now += 4.9
    reg.rows.append(dealer("B"))
    assert ids(await cache.get()) == ["A"]
    await settle()
    assert reg.started == 1 and cache.reads == 1


async def test_stale_get_answers_at_once_and_refreshes_in_the_background() -> None:
    reg, clock = Registry(), Clock()
    cache = DealerCache(reg.load, ttl=5.0, clock=clock)
    await cache.get()
    clock.now += 5.1
    reg.rows.append(dealer("B"))
    reg.gate = asyncio.Event()  # the refresh is slow
    assert ids(await cache.get()) == ["A"]  # not waited for
    assert ids(await cache.get()) == ["A"]
    await settle()
    assert reg.started == 2  # one refresh, however many stale gets
    reg.gate.set()
    await settle()
    assert ids(await cache.get()) == ["A", "B"]
    await settle()
    assert reg.started == 2  # fresh again


async def test_invalidate_makes_the_next_get_wait_for_a_new_read() -> None:
    reg, clock = Registry(), Clock()
    cache = DealerCache(reg.load, ttl=5.0, clock=clock)
    await cache.get()
    reg.rows.append(dealer("B"))
    cache.invalidate()
    assert ids(await cache.get()) == ["A", "B"]


async def test_a_refresh_begun_before_a_change_does_not_overwrite_it() -> None:
    reg, clock = Registry(), Clock()
    cache = DealerCache(reg.load, ttl=5.0, clock=clock)
    await cache.get()
    clock.now += 6
    old_read, new_read = asyncio.Event(), asyncio.Event()
    reg.gates = [old_read, new_read]
    await cache.get()  # starts a background refresh that snapshots ["A"]
    await settle()
    reg.rows.append(dealer("B"))  # a dealer is created here...
    cache.invalidate()
    waiting = asyncio.ensure_future(cache.get())  # ...so the next batch waits for a new read
    await settle()
    new_read.set()
    assert ids(await waiting) == ["A", "B"]
    old_read.set()  # the refresh begun before the change ends last: its ["A"] is dropped
    await settle()
    assert ids(await cache.get()) == ["A", "B"]


async def test_a_failed_refresh_keeps_the_registry_and_retries_a_ttl_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reg, clock = Registry(), Clock()
    cache = DealerCache(reg.load, ttl=5.0, clock=clock)
    await cache.get()
    clock.now += 6
    reg.fail = True
    with caplog.at_level(logging.WARNING, logger="services.lead.dealercache"):
        assert ids(await cache.get()) == ["A"]
        await settle()
    assert "could not be refreshed" in caplog.text
    assert ids(await cache.get()) == ["A"]
    await settle()
    assert reg.started == 2  # not retried on every batch
    reg.fail = False
    reg.rows.append(dealer("B"))
    clock.now += 6
    await cache.get()
    await settle()
    assert ids(await cache.get()) == ["A", "B"]


async def test_first_read_failure_reaches_the_caller() -> None:
    reg = Registry()
    reg.fail = True
    cache = DealerCache(reg.load, ttl=5.0, clock=Clock())
    with pytest.raises(OSError):
        await cache.get()


async def test_close_stops_a_refresh_in_progress() -> None:
    reg, clock = Registry(), Clock()
    cache = DealerCache(reg.load, ttl=5.0, clock=clock)
    await cache.get()
    clock.now += 6
    reg.gate = asyncio.Event()
    await cache.get()
    await settle()
    await cache.close()
    assert all(t.get_name() != "lead-dealer-refresh" for t in asyncio.all_tasks())
