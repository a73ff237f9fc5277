"""A handler whose backend is down (it raises `mesh.errors.Unavailable`) waits: its event is
retried past `max_deliver` and never becomes a dead letter, and is handled once the backend
is back (the ERP adapter while SAP is down, issue 15)."""

from __future__ import annotations

import sqlalchemy as sa

from mesh.db import Database
from mesh.errors import Unavailable
from mesh.events.envelope import Envelope
from mesh.events.inbox import DEAD_LETTER
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.unit_of_work import UnitOfWork
from tests.mesh.events import harness as h


async def test_an_outage_outlasting_max_deliver_loses_no_event(db: Database, link: Link) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    tries: dict[str, int] = {}
    down_for = h.FAST.max_deliver + 2  # deliveries refused: more than a poison event gets

    async def on_thing(uow: UnitOfWork, event: object, envelope: Envelope) -> None:
        tries[envelope.id] = tries.get(envelope.id, 0) + 1
        if tries[envelope.id] <= down_for:
            raise Unavailable("the backend is down")
        await uow.conn.execute(
            h.effects.insert().values(event_id=envelope.id, thing_id="t", number=1, trace_id="")
        )

    relay = h.relay(db, outbox, link)
    consumer = h.consumer(db, link, service, handler=on_thing, retry_base=0.01)
    relay.start()
    consumer.start()
    try:
        [event_id] = await h.emit_things(db, outbox, [1])
        await h.count_effects(db, 1, within=30)
    finally:
        await consumer.stop()
        await relay.stop()
    assert tries[event_id] == down_for + 1
    t = h.INBOX.table
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(t.c.outcome).where(t.c.event_id == event_id))).all()
    outcomes = [r.outcome for r in rows]
    assert outcomes == ["handled"] and DEAD_LETTER not in outcomes
