"""The relay: one stream per producing service, leased claims so several relays never
publish one event twice and keep each aggregate's order, and a lease that runs out."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa
from marque.testing.v1 import testing_events_pb2 as ev
from nats.js import api

from mesh.db import Database
from mesh.events.envelope import Envelope
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.events.relay import Relay
from tests.mesh.events import harness as h


async def _stream_messages(link: Link, stream: str, subject: str) -> list[tuple[Envelope, int]]:
    """Every message of the stream, in stream order: (envelope, event number)."""
    sub = await link.js.pull_subscribe(
        subject, stream=stream, config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE)
    )
    out: list[tuple[Envelope, int]] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(500, timeout=0.5)
            except TimeoutError:
                return out
            for m in msgs:
                event = ev.ThingHappened()
                event.ParseFromString(m.data)
                out.append((Envelope.from_headers(m.headers), event.number))
    finally:
        await sub.unsubscribe()


async def test_the_stream_and_the_envelope(db: Database, link: Link) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    [event_id] = await h.emit_things(db, outbox, [1], thing="T-1")
    assert await relay.cycle() == 1
    info = await link.js.stream_info(relay.stream)
    assert info.config.subjects == [f"marque.{service}.>"]
    assert info.config.duplicate_window == 120.0
    assert info.config.storage == api.StorageType.FILE
    sub = await link.js.pull_subscribe(f"marque.{service}.ThingHappened", stream=relay.stream)
    [msg] = await sub.fetch(1, timeout=2)
    headers = dict(msg.headers or {})
    assert headers.pop("ce-time").endswith("Z")
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": f"/marque/{service}",
        "ce-type": "marque.testing.v1.ThingHappened",
        "ce-subject": "T-1",
        "content-type": "application/protobuf",
        "Nats-Msg-Id": event_id,
        "Nats-Expected-Stream": relay.stream,
    }
    assert ev.ThingHappened.FromString(msg.data).thing_id == "T-1"
    await sub.unsubscribe()
    # A second relay (another replica, or a restart) finds the stream as it is.
    assert await h.relay(db, outbox, link).cycle() == 0


async def test_several_relays_publish_each_event_once_in_aggregate_order(
    db: Database, link: Link
) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    await h.emit_batch(db, outbox, range(300), spread=40)  # interleaved aggregates
    relays = [h.relay(db, outbox, link, batch=16) for _ in range(3)]

    async def drain(relay: Relay) -> None:
        while await h.pending_count(db):
            if not await relay.cycle():  # everything left is another relay's for now
                await asyncio.sleep(0.01)

    await asyncio.gather(*(drain(r) for r in relays))
    # Every acknowledged publish was a first one: no event was claimed by two relays.
    assert sum(r.published for r in relays) == 300
    messages = await _stream_messages(link, relays[0].stream, f"marque.{service}.>")
    assert len(messages) == 300
    by_aggregate: dict[str, list[int]] = {}
    for envelope, number in messages:
        by_aggregate.setdefault(envelope.subject, []).append(number)
    assert all(numbers == sorted(numbers) for numbers in by_aggregate.values())


async def test_a_lease_that_ran_out_frees_the_rows(db: Database, link: Link) -> None:
    """A relay that claimed and died: its rows wait for the lease, then another sends them;
    rows of the same aggregate behind a live lease wait too."""
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    await h.emit_things(db, outbox, range(4), thing="A")
    dead = h.relay(db, outbox, link, batch=2, lease=0.5)
    claimed = await dead._claim()  # claimed, then "killed" before publishing
    assert [r.seq for r in claimed] == [1, 2] or len(claimed) == 2
    other = h.relay(db, outbox, link)
    assert await other.cycle() == 0  # A's next events wait behind the live lease
    await asyncio.sleep(0.6)
    assert await other.cycle() == 4
    assert await h.pending_count(db) == 0
    t = h.OUTBOX_TABLE
    async with db.engine.connect() as conn:
        attempts = (await conn.execute(sa.select(t.c.attempts).order_by(t.c.seq))).scalars()
        assert list(attempts) == [2, 2, 1, 1]


async def test_no_claims_while_nats_is_away(db: Database, private_nats: object) -> None:
    from mesh.nats_server import NatsServer

    server: NatsServer = private_nats  # type: ignore[assignment]
    link = Link(server.url, name="away")
    link.start()
    assert await link.wait_connected(10)
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    relay.start()
    try:
        await h.emit_things(db, outbox, [1])
        await h.until(lambda: _none_pending(db))
        server.stop()
        await h.until(lambda: _disconnected(link))
        await h.emit_things(db, outbox, range(2, 6))
        await asyncio.sleep(0.5)
        t = h.OUTBOX_TABLE
        async with db.engine.connect() as conn:
            leased = (
                await conn.execute(sa.select(sa.func.count()).where(t.c.lease_owner.is_not(None)))
            ).scalar_one()
        assert (await h.pending_count(db), leased) == (4, 0)
        pending, oldest = await relay.pending()
        assert pending == 4 and oldest is not None
        assert dt.datetime.now(dt.UTC) - oldest < dt.timedelta(seconds=5)
        server.start()
        await h.until(lambda: _none_pending(db))
    finally:
        await relay.stop()
        await link.close()


async def _none_pending(db: Database) -> bool:
    return await h.pending_count(db) == 0


async def _disconnected(link: Link) -> bool:
    return not link.connected


async def test_a_large_backlog_is_analysed_so_claims_stay_an_index_range(
    db: Database, link: Link
) -> None:
    """PostgreSQL without fresh statistics sorts every pending row at each claim (79 ms a
    claim at 100,000 pending); the relay analyses the outbox once a backlog is large."""
    if db.is_sqlite:
        pytest.skip("SQLite's planner takes the index without statistics")
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO outbox (id, subject, aggregate, type, payload, create_time, attempts)"
                " SELECT md5(i::text), :subject, 'a' || (i % 100), :type, '\\x00'::bytea, now(), 0"
                " FROM generate_series(1, 12000) AS i"
            ),
            {
                "subject": f"marque.{service}.ThingHappened",
                "type": "marque.testing.v1.ThingHappened",
            },
        )

    async def analysed() -> int:
        async with db.engine.connect() as conn:
            found = await conn.scalar(
                sa.text(
                    "SELECT analyze_count FROM pg_stat_user_tables "
                    "WHERE relname = 'outbox' AND schemaname = current_schema()"
                )
            )
        return int(found or 0)

    before = await analysed()
    await relay._gauges()  # what the running relay does about once a second
    for _ in range(50):  # the statistics collector reports a little later
        if await analysed() > before:
            break
        await asyncio.sleep(0.1)
    assert await analysed() == before + 1
    await relay._gauges()  # the same backlog: not analysed again
    relay.gauges.updated_at = 0.0
    await relay._gauges()
    await asyncio.sleep(0.5)
    assert await analysed() == before + 1


async def test_a_row_jetstream_keeps_refusing_is_set_aside_and_the_rest_flows(
    db: Database, link: Link
) -> None:
    """A row whose publish JetStream refuses (here: a subject of another service's stream)
    would fail every cycle and stall the relay; after MAX_REFUSALS claims it is set aside,
    still pending and counted, and the events behind it are published."""
    from mesh.events import metrics
    from mesh.events.claims import REFUSED
    from mesh.events.envelope import stream_name
    from mesh.events.relay import MAX_REFUSALS, PublishFailed

    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    [first] = await h.emit_things(db, outbox, [1], thing="t")
    stray = outbox.row(ev.ThingHappened(thing_id="t", number=2), subject="t")
    other = h.unique_service()  # another service's stream takes the stray subject
    await link.js.add_stream(
        api.StreamConfig(name=stream_name(other), subjects=[f"marque.{other}.>"])
    )
    stray["subject"] = f"marque.{other}.ThingHappened"
    async with db.engine.begin() as conn:
        await conn.execute(h.OUTBOX_TABLE.insert(), [stray])
    [last] = await h.emit_things(db, outbox, [3], thing="t")
    before = metrics.events_refused_total.labels("marque.testing.v1.ThingHappened")._value.get()
    failures = 0
    for _ in range(MAX_REFUSALS):
        try:
            await relay.cycle()
        except PublishFailed:
            failures += 1
    assert failures == MAX_REFUSALS - 1  # the last cycle set it aside instead of failing
    assert await relay.cycle() == 0  # nothing left to claim: no failing cycle after it
    async with db.engine.connect() as conn:
        rows = {
            r.id: r
            for r in await conn.execute(
                sa.select(h.OUTBOX_TABLE).where(h.OUTBOX_TABLE.c.id.in_([first, stray["id"], last]))
            )
        }
    assert rows[first].sent_time is not None and rows[last].sent_time is not None
    assert rows[stray["id"]].sent_time is None and rows[stray["id"]].lease_owner == REFUSED
    assert (await relay.pending())[0] >= 1  # still counted as pending (the alert sees it)
    after = metrics.events_refused_total.labels("marque.testing.v1.ThingHappened")._value.get()
    assert after == before + 1
