"""Outbox → relay → JetStream → consumer with inbox, on both back ends, real nats-server."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from marque.testing.v1 import testing_events_pb2 as ev

from mesh.db import Database
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.unit_of_work import UnitOfWork, transaction
from tests.mesh.events import harness as h


async def test_events_are_delivered_once_in_order(db: Database, link: Link) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    consumer = h.consumer(db, link, service)
    relay.start()
    consumer.start()
    try:
        ids = await h.emit_things(db, outbox, range(50), thing="one")
        rows = await h.count_effects(db, 50)
    finally:
        await consumer.stop()
        await relay.stop()
    assert [r.event_id for r in rows] == ids
    assert [r.number for r in rows] == list(range(50))
    assert await h.pending_count(db) == 0


async def test_no_change_without_its_event_nor_event_without_its_change(db: Database) -> None:
    outbox = Outbox(h.OUTBOX_TABLE, service=h.unique_service())

    async def fails(uow: UnitOfWork) -> None:
        await uow.conn.execute(h.things.insert().values(id="x", count=1))
        uow.emit(ev.ThingHappened(thing_id="x", number=1), subject="x")
        raise ValueError("a rule said no")

    with pytest.raises(ValueError, match="a rule said no"):
        await transaction(db, fails, outbox=outbox)
    await h.emit_things(db, outbox, [2], thing="y")
    async with db.engine.connect() as conn:
        changed = (await conn.execute(sa.select(h.things.c.id))).scalars().all()
        events = (await conn.execute(sa.select(h.OUTBOX_TABLE.c.aggregate))).scalars().all()
    assert changed == ["y"] and events == ["y"]


async def test_a_duplicated_event_changes_nothing(db: Database, link: Link) -> None:
    """The same event delivered twice (published again under another Nats-Msg-Id, so
    JetStream keeps both): the inbox finds its id, one effect."""
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    relay.start()
    consumer = h.consumer(db, link, service)
    try:
        [event_id] = await h.emit_things(db, outbox, [7], thing="dup")
        await h.until(lambda: _sent(db))
        async with db.engine.connect() as conn:
            row = (await conn.execute(sa.select(h.OUTBOX_TABLE))).one()
        headers = outbox.envelope(row._mapping).headers()
        headers["Nats-Msg-Id"] = "another-publish"
        await link.js.publish(row.subject, row.payload, headers=headers)
        consumer.start()
        rows = await h.count_effects(db, 1)
    finally:
        await consumer.stop()
        await relay.stop()
    assert [r.event_id for r in rows] == [event_id]
    info = await link.js.stream_info(relay.stream)
    assert info.state.messages == 2


async def _sent(db: Database) -> bool:
    return await h.pending_count(db) == 0


async def test_rows_written_in_raw_sql_are_published_alike(db: Database, link: Link) -> None:
    """A group-committed batch writes outbox rows in its own SQL (sqlite3 executemany, or
    PostgreSQL's json_populate_recordset): the relay publishes them like emitted ones."""
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    rows = [outbox.row(ev.ThingHappened(thing_id="raw", number=n), subject="raw") for n in range(3)]
    async with db.engine.begin() as conn:
        if db.is_sqlite:
            await conn.exec_driver_sql(
                outbox.sqlite_insert_sql, [outbox.sqlite_values(r) for r in rows]
            )
        else:
            await conn.exec_driver_sql(outbox.postgres_insert_sql, (outbox.postgres_json(rows),))
    async with db.engine.connect() as conn:
        stored = (await conn.execute(sa.select(h.OUTBOX_TABLE).order_by("seq"))).all()
    assert [(s.id, s.payload, s.create_time) for s in stored] == [
        (r["id"], r["payload"], r["create_time"]) for r in rows
    ]
    relay = h.relay(db, outbox, link)
    consumer = h.consumer(db, link, service)
    relay.start()
    consumer.start()
    try:
        effects = await h.count_effects(db, 3)
    finally:
        await consumer.stop()
        await relay.stop()
    assert [e.event_id for e in effects] == [r["id"] for r in rows]


async def test_emit_without_an_outbox_is_a_clear_error(db: Database) -> None:
    async def work(uow: UnitOfWork) -> None:
        uow.emit(ev.ThingHappened(thing_id="x"), subject="x")

    with pytest.raises(RuntimeError, match="no outbox"):
        await transaction(db, work)


async def test_a_batch_handler_takes_the_batch_and_a_poison_fails_alone(
    db: Database, link: Link
) -> None:
    """`subscribe(..., batch=True)`: one call per delivered batch (one executemany), new
    events only; a poison in a batch makes it run again one event at a time, so the others
    are handled once and the poison alone goes to the dead letters."""
    from mesh.events.consumer import Consumer
    from mesh.events.envelope import Envelope
    from mesh.events.subscriptions import subscribe, subscriptions_in

    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    sizes: list[int] = []

    async def on_things(
        uow: UnitOfWork, events: list[ev.ThingHappened], envelopes: list[Envelope]
    ) -> None:
        sizes.append(len(events))
        if any(e.note == "poison" for e in events):
            raise ValueError("this event always fails")
        rows = [
            {"event_id": env.id, "thing_id": e.thing_id, "number": e.number, "trace_id": ""}
            for e, env in zip(events, envelopes, strict=True)
        ]
        await uow.conn.execute(h.effects.insert(), rows)

    sub = subscriptions_in(subscribe(ev.ThingHappened, producer=service, batch=True)(on_things))
    consumer = Consumer(
        db, h.INBOX, link, sub[0], service="batch", settings=h.FAST, retry_base=0.05
    )
    await h.emit_things(db, outbox, range(20))  # all pending before the relay runs
    [poison] = await h.emit_things(db, outbox, [20], note="poison")
    await h.emit_things(db, outbox, range(21, 40))
    relay = h.relay(db, outbox, link)
    consumer.start()
    relay.start()
    try:
        rows = await h.count_effects(db, 39)
    finally:
        await consumer.stop()
        await relay.stop()
    assert sorted(r.number for r in rows) == [n for n in range(40) if n != 20]
    assert len({r.event_id for r in rows}) == 39 and poison not in {r.event_id for r in rows}
    assert max(sizes) > 1  # batches, not one call per event
