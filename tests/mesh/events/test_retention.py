"""Outbox and inbox rows are swept after the retention; pending events and dead letters
are kept."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from marque.testing.v1 import testing_events_pb2 as ev

from mesh.db import Database
from mesh.events.envelope import Envelope
from mesh.events.inbox import Inbox
from mesh.events.outbox import Outbox
from mesh.events.runtime import Events, EventSpec
from mesh.events.settings import EventSettings
from tests.mesh.events import harness as h

OLD = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def test_sent_and_handled_rows_go_pending_and_dead_letters_stay(db: Database) -> None:
    outbox = Outbox(h.OUTBOX_TABLE, service=h.unique_service())
    rows = [
        outbox.row(ev.ThingHappened(thing_id="x", number=n), subject="x", now=OLD) for n in range(3)
    ]
    envelope = Envelope("e1", "/marque/x", "marque.testing.v1.ThingHappened", "x", OLD)
    async with db.begin() as conn:
        await outbox.write(conn, rows)
        t = h.OUTBOX_TABLE
        await conn.execute(t.update().where(t.c.id != rows[2]["id"]).values(sent_time=OLD))
        await h.INBOX.record(
            conn,
            [
                Inbox.handled_row("sink-A", envelope, now=OLD, attempts=1),
                Inbox.dead_letter_row(
                    "sink-A",
                    Envelope("e2", "/marque/x", "t", "x", OLD),
                    now=OLD,
                    attempts=5,
                    error="boom",
                    payload=b"",
                    headers={},
                ),
            ],
        )
    settings = EventSettings(nats_url="nats://127.0.0.1:1", retention_seconds=86400.0)
    events = Events(EventSpec(outbox.service, outbox=outbox, inbox=h.INBOX), db, settings=settings)
    swept = [await s.sweep(dt.datetime.now(dt.UTC)) for s in events.sweepers]
    assert swept == [2, 1]
    async with db.engine.connect() as conn:
        left = (await conn.execute(sa.select(h.OUTBOX_TABLE.c.id))).scalars().all()
        inbox = (await conn.execute(sa.select(h.INBOX.table.c.event_id))).scalars().all()
    assert (left, inbox) == ([rows[2]["id"]], ["e2"])
    await events.link.close()
