"""`subscribe(..., prepare=...)`: a handler's slow outside call made before the batch's unit
of work, holding no database connection, on both back ends and the real nats-server."""

from __future__ import annotations

from collections.abc import Sequence

from marque.testing.v1 import testing_events_pb2 as ev

from mesh.db import Database
from mesh.events.consumer import Consumer
from mesh.events.envelope import Envelope
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.events.subscriptions import subscribe, subscriptions_in
from mesh.unit_of_work import UnitOfWork
from tests.mesh.events import harness as h


async def _published(db: Database, outbox: Outbox, link: Link, numbers: range) -> None:
    """The events in the stream, the relay stopped again (so only the consumer uses `db`)."""
    await h.emit_things(db, outbox, numbers)
    relay = h.relay(db, outbox, link)
    relay.start()
    try:
        await h.until(lambda: _sent(db))
    finally:
        await relay.stop()


async def _sent(db: Database) -> bool:
    return await h.pending_count(db) == 0


async def test_prepare_runs_before_the_unit_of_work_holding_no_connection(
    db: Database, link: Link, database_url: str
) -> None:
    own = Database(database_url)  # the consumer's alone: its pool counts only its connections
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    await _published(db, outbox, link, range(30))
    held: list[int] = []
    learnt: dict[str, int] = {}

    async def prepare(events: Sequence[ev.ThingHappened], envelopes: Sequence[Envelope]) -> None:
        held.append(own.engine.pool.checkedout())  # type: ignore[attr-defined]
        for e, env in zip(events, envelopes, strict=True):
            learnt[env.id] = e.number * 10

    async def on_things(
        uow: UnitOfWork, events: Sequence[ev.ThingHappened], envelopes: Sequence[Envelope]
    ) -> None:
        rows = [
            {"event_id": env.id, "thing_id": e.thing_id, "number": learnt[env.id], "trace_id": ""}
            for e, env in zip(events, envelopes, strict=True)
        ]
        await uow.conn.execute(h.effects.insert(), rows)

    marked = subscribe(ev.ThingHappened, producer=service, batch=True, prepare=prepare)(on_things)
    consumer = Consumer(
        own, h.INBOX, link, subscriptions_in(marked)[0], service="prep", settings=h.FAST
    )
    consumer.start()
    try:
        rows = await h.count_effects(db, 30)
    finally:
        await consumer.stop()
        await own.dispose()
    assert sorted(r.number for r in rows) == [n * 10 for n in range(30)]
    assert held and set(held) == {0}  # no transaction (no connection) open around prepare


async def test_a_prepare_that_raises_fails_the_batch_which_comes_again(
    db: Database, link: Link
) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    await _published(db, outbox, link, range(5))
    calls: list[int] = []

    async def prepare(events: Sequence[ev.ThingHappened], envelopes: Sequence[Envelope]) -> None:
        calls.append(len(events))
        if len(calls) == 1:
            raise OSError("the backend hung up")

    async def on_things(
        uow: UnitOfWork, events: Sequence[ev.ThingHappened], envelopes: Sequence[Envelope]
    ) -> None:
        rows = [
            {"event_id": env.id, "thing_id": e.thing_id, "number": e.number, "trace_id": ""}
            for e, env in zip(events, envelopes, strict=True)
        ]
        await uow.conn.execute(h.effects.insert(), rows)

    marked = subscribe(ev.ThingHappened, producer=service, batch=True, prepare=prepare)(on_things)
    consumer = Consumer(
        db,
        h.INBOX,
        link,
        subscriptions_in(marked)[0],
        service="prep2",
        settings=h.FAST,
        retry_base=0.05,
    )
    consumer.start()
    try:
        rows = await h.count_effects(db, 5)
    finally:
        await consumer.stop()
    assert sorted(r.number for r in rows) == list(range(5))  # once each, after the nak
    assert len(calls) >= 2
