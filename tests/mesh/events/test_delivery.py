"""Outbox → relay → JetStream → consumer with inbox, on both back ends, real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from marque.testing.v1 import testing_events_pb2 as ev

from mesh.db import Database
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.unit_of_work import UnitOfWork, transaction
from tests.mesh.events import harness as h


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await h.create_tables(database)
    yield database
    await database.dispose()


@pytest.fixture
async def link(nats_url: str) -> AsyncIterator[Link]:
    lk = Link(nats_url, name="test")
    lk.start()
    assert await lk.wait_connected(10)
    yield lk
    await lk.close()


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
