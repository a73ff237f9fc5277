"""A batch whose per-event handler fails for one event: the batch runs again in ONE unit of
work with each handler in a savepoint of its own, so the others commit together (one
commit), and the failing handler's writes, emitted events and after-commit hooks are undone
while its event stays unrecorded, to be redelivered."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from marque.testing.v1 import testing_events_pb2 as ev

from mesh.db import Database
from mesh.events.envelope import Envelope
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.unit_of_work import UnitOfWork
from tests.mesh.events import harness as h


async def test_a_failing_handler_rolls_back_to_its_savepoint_only(db: Database, link: Link) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    echoes = Outbox(h.OUTBOX_TABLE, service=h.unique_service())  # the handler's own events
    await h.emit_things(db, outbox, range(10))
    [poison] = await h.emit_things(db, outbox, [10], note="poison")
    await h.emit_things(db, outbox, range(11, 20))
    relay = h.relay(db, outbox, link)
    while await relay.cycle():
        pass
    psub = await link.js.pull_subscribe(
        f"marque.{service}.ThingHappened", durable="savepoint-test", stream=relay.stream
    )
    msgs: list[Any] = []
    while len(msgs) < 20:
        msgs += await psub.fetch(20 - len(msgs), timeout=5)
    hooks: list[int] = []

    async def on_thing(uow: UnitOfWork, event: ev.ThingHappened, envelope: Envelope) -> None:
        await uow.conn.execute(
            h.effects.insert().values(
                event_id=envelope.id, thing_id=event.thing_id, number=event.number, trace_id=""
            )
        )
        uow.emit(ev.ThingHappened(thing_id="echo", number=event.number), subject="echo")
        uow.after_commit(lambda: hooks.append(event.number))
        if event.note == "poison":
            raise ValueError("this event always fails")

    consumer = h.consumer(db, link, service, handler=on_thing, outbox=echoes)
    seen: dict[str, int] = {"commit": 0, "rollback": 0, "rollback_savepoint": 0}
    listeners = [(name, _counter(seen, name)) for name in seen]
    for name, fn in listeners:
        sa.event.listen(db.engine.sync_engine, name, fn)
    try:
        await consumer.handle_batch(msgs)
    finally:
        for name, fn in listeners:
            sa.event.remove(db.engine.sync_engine, name, fn)
        await psub.unsubscribe()
    # The batch failed once (rolled back), then committed once with one savepoint undone.
    assert seen == {"commit": 1, "rollback": 1, "rollback_savepoint": 1}
    effects = await h.effect_rows(db)
    assert sorted(e.number for e in effects) == [n for n in range(20) if n != 10]
    assert poison not in {e.event_id for e in effects}
    assert sorted(hooks) == [n for n in range(20) if n != 10]
    t, i = h.OUTBOX_TABLE, h.INBOX.table
    async with db.engine.connect() as conn:
        echoed = (await conn.execute(sa.select(t.c.payload).where(t.c.aggregate == "echo"))).all()
        recorded = set((await conn.execute(sa.select(i.c.event_id))).scalars())
    assert sorted(ev.ThingHappened.FromString(p).number for (p,) in echoed) == sorted(hooks)
    assert len(recorded) == 19 and poison not in recorded  # redelivered: nak'd, not acked
    assert consumer.handled == 19


def _counter(seen: dict[str, int], name: str) -> Any:
    def count(*_: Any) -> None:
        seen[name] += 1

    return count
