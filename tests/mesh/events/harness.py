"""A tiny producer and consumer for the event tests (and the subprocesses they kill).

The producer changes `things` (one row per thing, a counter) and emits ThingHappened in the
same unit of work; the consumer's handler inserts one `effects` row per event it handles,
with no key of its own, so an effect that happened twice would show as two rows. A note
"poison" makes the handler fail, every time; a note "fail-once" fails its first delivery.
Both sides share one database here (two services would have two).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from marque.testing.v1 import testing_events_pb2 as ev

from mesh.db import Database
from mesh.events.consumer import Consumer
from mesh.events.envelope import Envelope
from mesh.events.inbox import Inbox, inbox_table
from mesh.events.link import Link
from mesh.events.outbox import Outbox, outbox_table
from mesh.events.relay import Relay
from mesh.events.settings import EventSettings
from mesh.events.subscriptions import subscribe, subscriptions_in
from mesh.schema import BigId, new_metadata
from mesh.unit_of_work import UnitOfWork, transaction

metadata = new_metadata()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("count", sa.Integer(), nullable=False),
)
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("n", BigId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("thing_id", sa.String(40), nullable=False),
    sa.Column("number", sa.BigInteger(), nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
)
OUTBOX_TABLE = outbox_table(metadata)
INBOX = Inbox(inbox_table(metadata))
FAST = EventSettings(max_deliver=3, ack_wait_seconds=2.0)


def unique_service() -> str:
    """A producing service name of this test's own (its own stream on a shared server)."""
    return f"t{uuid.uuid4().hex[:10]}"


async def create_tables(db: Database) -> None:
    async with db.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def emit_things(
    db: Database,
    outbox: Outbox,
    numbers: Iterable[int],
    *,
    thing: str = "",
    note: str = "",
    spread: int = 7,
) -> list[str]:
    """One unit of work per number: bump the thing's counter, emit ThingHappened (about
    `thing`, else one of `spread` things)."""
    ids = []
    for number in numbers:
        thing_id = thing or f"thing-{number % spread}"

        async def work(uow: UnitOfWork, number: int = number, thing_id: str = thing_id) -> str:
            changed = await uow.conn.execute(
                things.update().where(things.c.id == thing_id).values(count=things.c.count + 1)
            )
            if not changed.rowcount:
                await uow.conn.execute(things.insert().values(id=thing_id, count=1))
            return uow.emit(
                ev.ThingHappened(thing_id=thing_id, number=number, note=note), subject=thing_id
            )

        ids.append(await transaction(db, work, outbox=outbox))
    return ids


async def emit_batch(
    db: Database, outbox: Outbox, numbers: Iterable[int], *, spread: int = 7
) -> None:
    """Many events in ONE unit of work (fast set-up of a backlog), in number order."""

    async def work(uow: UnitOfWork) -> None:
        for number in numbers:
            thing_id = f"thing-{number % spread}"
            uow.emit(ev.ThingHappened(thing_id=thing_id, number=number), subject=thing_id)

    await transaction(db, work, outbox=outbox)


def make_handler(
    block_on: int | None = None, blocked: asyncio.Event | None = None, *, fixed: bool = False
) -> Any:
    """The consumer's handler; `block_on`: hang (uncommitted) on that event number;
    `fixed`: the poison no longer fails."""
    fail_once: set[str] = set()

    async def on_thing(uow: UnitOfWork, event: ev.ThingHappened, envelope: Envelope) -> None:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        await uow.conn.execute(
            effects.insert().values(
                event_id=envelope.id,
                thing_id=event.thing_id,
                number=event.number,
                trace_id=f"{ctx.trace_id:032x}" if ctx.is_valid else "",
            )
        )
        if event.note == "poison" and not fixed:
            raise ValueError("this event always fails")
        if event.note == "fail-once" and envelope.id not in fail_once:
            fail_once.add(envelope.id)
            raise ValueError("this event fails once")
        if block_on is not None and event.number == block_on:
            if blocked is not None:
                blocked.set()
            print("blocked", flush=True)
            await asyncio.sleep(3600)

    return on_thing


def subscription_of(producer: str, handler: Any) -> Any:
    return subscriptions_in(subscribe(ev.ThingHappened, producer=producer)(handler))[0]


def consumer(
    db: Database,
    link: Link,
    producer: str,
    *,
    handler: Any = None,
    service: str = "sink",
    settings: EventSettings = FAST,
    **options: Any,
) -> Consumer:
    options.setdefault("retry_base", 0.05)
    return Consumer(
        db,
        INBOX,
        link,
        subscription_of(producer, handler or make_handler()),
        service=service,
        settings=settings,
        **options,
    )


def relay(db: Database, outbox: Outbox, link: Link, **options: Any) -> Relay:
    options.setdefault("poll", 0.1)
    return Relay(db, outbox, link, **options)


async def effect_rows(db: Database) -> list[Any]:
    async with db.engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(effects.c.event_id, effects.c.number, effects.c.trace_id).order_by(
                        effects.c.n
                    )
                )
            ).all()
        )


async def pending_count(db: Database) -> int:
    async with db.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(OUTBOX_TABLE.c.sent_time.is_(None))
        return int((await conn.execute(query)).scalar_one())


async def until(predicate: Any, within: float = 15.0, every: float = 0.02) -> None:
    """Wait until `await predicate()` is true (AssertionError after `within` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if await predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {within}s: {predicate}")
        await asyncio.sleep(every)


async def count_effects(db: Database, n: int, within: float = 15.0) -> list[Any]:
    """Wait for `n` effects, then a little more (a duplicate would show), and return them."""

    async def enough() -> bool:
        return len(await effect_rows(db)) >= n

    await until(enough, within)
    await asyncio.sleep(0.3)
    return await effect_rows(db)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
