"""Failing handlers: retried with a delay, a poison event goes to dead letters after N
deliveries while the events behind it flow, and a dead letter can be replayed."""

from __future__ import annotations

import io
from typing import Any

import sqlalchemy as sa
from prometheus_client import REGISTRY

from mesh.db import Database
from mesh.events.inbox import DEAD_LETTER, REPLAYED
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.events.replay import main as replay_main
from mesh.events.replay import replay
from mesh.events.runtime import EventSpec
from tests.mesh.events import harness as h

# The consumer's wiring once its handler is fixed (the replay command loads it by name).
FIXED = EventSpec(
    service="sink",
    inbox=h.INBOX,
    subscriptions=[h.subscription_of("any", h.make_handler(fixed=True))],
)


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "marque_events_consumed_total",
        {"type": "marque.testing.v1.ThingHappened", "outcome": outcome},
    )
    return value or 0.0


async def _inbox(db: Database) -> list[Any]:
    t = h.INBOX.table
    async with db.engine.connect() as conn:
        query = sa.select(t.c.event_id, t.c.outcome, t.c.attempts).order_by(t.c.received_time)
        return list((await conn.execute(query)).all())


async def test_poison_goes_to_dead_letters_while_the_rest_flows(
    db: Database, link: Link, database_url: str
) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    consumer = h.consumer(db, link, service)  # 3 deliveries at most (harness.FAST)
    before = {o: _count(o) for o in ("dead_letter", "retried", "handled")}
    relay.start()
    consumer.start()
    try:
        await h.emit_things(db, outbox, range(5))
        [poison] = await h.emit_things(db, outbox, [5], note="poison")
        [flaky] = await h.emit_things(db, outbox, [6], note="fail-once")
        await h.emit_things(db, outbox, range(7, 10))
        effects = await h.count_effects(db, 9)

        async def dead() -> bool:
            return any(r.outcome == DEAD_LETTER for r in await _inbox(db))

        await h.until(dead)
    finally:
        await consumer.stop()
        await relay.stop()
    assert sorted(e.number for e in effects) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    rows = {r.event_id: r for r in await _inbox(db)}
    assert rows[poison].outcome == DEAD_LETTER and rows[poison].attempts == 3
    # The flaky one failed once: in its batch (then it ran alone, and passed) or alone
    # (then it was redelivered).
    assert rows[flaky].outcome == "handled" and rows[flaky].attempts in (1, 2)
    assert _count("dead_letter") - before["dead_letter"] == 1
    assert _count("retried") - before["retried"] == 2 + (rows[flaky].attempts - 1)
    assert _count("handled") - before["handled"] == 9

    # Listed, then replayed by the command once the handler is fixed: one effect more.
    out = io.StringIO()
    args = ["sink", "--spec", f"{__name__}:FIXED", "--database-url", database_url]
    await _in_thread(replay_main, [*args, "--list"], out)
    assert poison in out.getvalue() and "ValueError: this event always fails" in out.getvalue()
    assert "1 dead letter(s)" in out.getvalue()


async def test_replay_handles_a_dead_letter_once(db: Database, link: Link) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    consumer = h.consumer(db, link, service)
    relay.start()
    consumer.start()
    try:
        [poison] = await h.emit_things(db, outbox, [1], note="poison")

        async def dead() -> bool:
            return any(r.outcome == DEAD_LETTER for r in await _inbox(db))

        await h.until(dead)
    finally:
        await consumer.stop()
        await relay.stop()
    assert await h.effect_rows(db) == []
    # Still failing: it stays a dead letter, one attempt more.
    broken = EventSpec("sink", inbox=h.INBOX, subscriptions=[consumer.subscription])
    again = await replay(db, broken)
    assert (again.replayed, again.failed) == ([], [poison])
    assert [(r.outcome, r.attempts) for r in await _inbox(db)] == [(DEAD_LETTER, 4)]
    # Fixed: handled, marked replayed, and a second replay finds nothing to do.
    done = await replay(db, FIXED)
    assert (done.replayed, done.failed) == ([poison], [])
    assert [(r.outcome, r.attempts) for r in await _inbox(db)] == [(REPLAYED, 5)]
    assert (await replay(db, FIXED)).replayed == []
    assert [e.event_id for e in await h.effect_rows(db)] == [poison]


async def _in_thread(fn: object, argv: list[str], out: io.StringIO) -> int:
    """The command runs its own event loop: give it a thread."""
    import asyncio

    return await asyncio.to_thread(fn, argv, out)  # type: ignore[arg-type]
