"""Rows a writer commits born leased and hands to its process's relay (handover.py): out
from memory with no claim, in order behind them, given back when they cannot go out, and
taken by another relay when the one they were handed to is gone. Real nats-server, both
back ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from marque.testing.v1 import testing_events_pb2 as ev

from mesh.db import Database
from mesh.events.handover import DIRECT_SUFFIX
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.events.relay import Relay
from mesh.nats_server import NatsServer
from mesh.unit_of_work import UnitOfWork, transaction
from tests.mesh.events import harness as h


async def write(
    db: Database,
    outbox: Outbox,
    numbers: range,
    *,
    thing: str = "",
    born_leased: bool = True,
    hand_over: bool = True,
) -> tuple[list[dict[str, Any]], list[int]]:
    """What a group-committing writer does: the rows in its own SQL, born leased when the
    relay takes rows from memory, handed over after the commit with their seqs."""
    lease = outbox.direct_lease(h.now()) if born_leased else None
    rows = [
        outbox.row(
            ev.ThingHappened(thing_id=thing or f"new-{n}", number=n),
            subject=thing or f"new-{n}",
            lease=lease,
        )
        for n in numbers
    ]

    async def insert(uow: UnitOfWork) -> list[int]:
        if db.is_sqlite:
            values = [outbox.sqlite_values(r) for r in rows]
            await uow.conn.exec_driver_sql(outbox.sqlite_insert_sql, values)
            last = (await uow.conn.exec_driver_sql("SELECT last_insert_rowid()")).scalar_one()
            return list(range(last - len(rows) + 1, last + 1))
        result = await uow.conn.exec_driver_sql(
            outbox.postgres_insert_sql, (outbox.postgres_json(rows),)
        )
        return sorted(r[0] for r in result)

    seqs = await transaction(db, insert)
    if hand_over:
        outbox.hand_over(rows, seqs)
    return rows, seqs


async def outbox_rows(db: Database) -> list[Any]:
    t = h.OUTBOX_TABLE
    async with db.engine.connect() as conn:
        query = sa.select(t.c.id, t.c.attempts, t.c.sent_time, t.c.lease_owner).order_by(t.c.seq)
        return list((await conn.execute(query)).all())


async def open_relay(db: Database, outbox: Outbox, link: Link, **options: Any) -> Relay:
    relay = h.relay(db, outbox, link, **options)
    relay.start()
    await h.until(_is_open(relay), within=10)
    return relay


def _is_open(relay: Relay) -> Any:
    async def check() -> bool:
        return relay.handover.open

    return check


async def test_rows_handed_over_go_out_from_memory_and_are_marked_sent(
    db: Database, link: Link
) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    assert outbox.direct_lease(h.now()) is None  # no relay here: ordinary rows
    relay = await open_relay(db, outbox, link, poll=60.0)  # no poll claim meanwhile
    consumer = h.consumer(db, link, service)
    consumer.start()
    try:
        rows, _ = await write(db, outbox, range(20))
        effects = await h.count_effects(db, 20)
        await h.until(lambda: _all_sent(db))
    finally:
        await consumer.stop()
        await relay.stop()
    assert [e.event_id for e in effects] == [r["id"] for r in rows]
    assert outbox.handed_over == 20
    stored = await outbox_rows(db)
    # A claim would have raised attempts to 2: these never went through one.
    assert {(s.attempts, s.lease_owner) for s in stored} == {(1, None)}
    assert rows[0]["lease_owner"] == relay.owner + DIRECT_SUFFIX


async def _all_sent(db: Database) -> bool:
    return await h.pending_count(db) == 0


async def test_a_later_event_of_the_aggregate_waits_behind_a_born_leased_one(
    db: Database, link: Link
) -> None:
    """Born leased, not yet handed over: an ordinary event of the same aggregate committed
    after it is not published before it (the claim sees the lease), then follows it."""
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = await open_relay(db, outbox, link)
    consumer = h.consumer(db, link, service)
    consumer.start()
    try:
        first, seqs = await write(db, outbox, range(1), thing="car", hand_over=False)
        await h.emit_things(db, outbox, [1], thing="car")  # ordinary, wakes a claim
        await asyncio.sleep(0.5)
        assert await h.effect_rows(db) == []  # held behind the lease
        outbox.hand_over(first, seqs)
        effects = await h.count_effects(db, 2)
    finally:
        await consumer.stop()
        await relay.stop()
    assert [e.number for e in effects] == [0, 1]


async def test_rows_of_a_relay_gone_are_claimed_when_their_lease_runs_out(
    db: Database, link: Link
) -> None:
    """The process died between its commit and its relay's publish: another relay
    publishes the rows once their lease has run out, once."""
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    gone = await open_relay(db, outbox, link, lease=1.5)
    rows, _ = await write(db, outbox, range(5), hand_over=False)
    assert {r["lease_owner"] for r in rows} == {gone.handover.owner}
    await gone.stop()
    other = h.relay(db, Outbox(h.OUTBOX_TABLE, service=service), link)
    consumer = h.consumer(db, link, service)
    other.start()
    consumer.start()
    try:
        await asyncio.sleep(0.5)
        assert await h.pending_count(db) == 5  # still leased
        effects = await h.count_effects(db, 5)
    finally:
        await consumer.stop()
        await other.stop()
    assert sorted(e.event_id for e in effects) == sorted(r["id"] for r in rows)


@pytest.mark.e2e
async def test_rows_handed_over_through_a_nats_outage_lose_nothing_and_double_nothing(
    db: Database, private_nats: NatsServer
) -> None:
    """A writer hands rows over while NATS goes away and comes back: the relay gives back
    what it could not publish (claims publish it), writers write ordinary rows while it is
    closed; every event is handled once."""
    link = Link(private_nats.url, name="handover-outage")
    link.start()
    assert await link.wait_connected(10)
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = await open_relay(db, outbox, link, ack_timeout=1.0)
    consumer = h.consumer(db, link, service)
    consumer.start()
    written: list[dict[str, Any]] = []
    stop = asyncio.Event()

    async def load() -> None:
        n = 0
        while not stop.is_set():
            written.extend((await write(db, outbox, range(n, n + 3)))[0])
            n += 3
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(load())
    try:
        await asyncio.sleep(0.5)
        private_nats.stop()
        await asyncio.sleep(2.0)
        private_nats.start()
        await asyncio.sleep(1.0)
        stop.set()
        await writer
        effects = await h.count_effects(db, len(written), within=45)
    finally:
        stop.set()
        await writer
        await consumer.stop()
        await relay.stop()
        await link.close()
    assert sorted(e.event_id for e in effects) == sorted(r["id"] for r in written)
    stored = await outbox_rows(db)
    assert all(s.sent_time is not None for s in stored)
    ordinary = sum(1 for r in written if r["lease_owner"] is None)
    assert 0 < outbox.handed_over < len(written)  # some from memory, not all
    assert ordinary > 0  # written while the relay was closed: claimed
