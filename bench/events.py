"""Domain events: relay, consumer, end-to-end latency and backlog drain, each beside a
baseline of the same run.

A private nats-server (the .venv binary, its own store) and a SQLite file (PostgreSQL
too when `MARQUE_BENCH_POSTGRES_URL` or `MARQUE_TEST_POSTGRES_URL` is set: a throwaway
schema) hold everything; the figures are:
- relay: `--events` pending outbox rows (committed beforehand) published by one relay
  (claim, batched async publishes, acks, mark sent); events/s (and per CPU-second of the
  process) beside the baseline: nats-py's own `publish_async` of as many messages with the
  same headers, no database. Target: >= 10,000 events/s.
- consumer: the same events handled by a consumer with its inbox (batched commits and
  acks), beside the baseline: the same pulling and acking with no database; by a per-event
  handler doing nothing (the consumer's own cost), one inserting one row per event (a
  statement each), and a batch handler (`subscribe(..., batch=True)`) writing the same rows
  with one executemany per batch. Target: >= 5,000 events/s.
- latency: `--rate` events/s (one unit of work each, as calls would) for `--seconds`;
  the consumer runs in another process, and each event's latency is from its emit to its
  handler's commit (p50, p99), beside the baseline: JetStream alone at the same rate
  (publish, pull, ack). Targets at 1,000 events/s: p50 < 20 ms, p99 < 100 ms.
- backlog: `--backlog` pending rows drained by a relay in a fresh process: seconds, and its
  peak RSS beside its RSS before draining (bounded memory: one batch at a time).
  Target: 100,000 in < 30 s.

    python -m bench.events [--events 50000] [--rate 1000] [--seconds 10] [--backlog 100000]
        [--phases throughput,latency,backlog] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import ROOT, percentile

ROLES = ("consume", "raw-consume", "drain")


# ------------------------------------------------------------------------------ wiring


def _tables() -> tuple[sa.MetaData, sa.Table, Any, sa.Table]:
    from mesh.events.inbox import Inbox, inbox_table
    from mesh.events.outbox import outbox_table
    from mesh.schema import BigId, new_metadata

    metadata = new_metadata()
    outbox = outbox_table(metadata)
    inbox = Inbox(inbox_table(metadata))
    effects = sa.Table(
        "effects",
        metadata,
        sa.Column("n", BigId, primary_key=True, autoincrement=True),
        sa.Column("thing_id", sa.String(40), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
    )
    return metadata, outbox, inbox, effects


METADATA, OUTBOX, INBOX, EFFECTS = _tables()


def _event(number: int, aggregates: int = 1000) -> tuple[Any, str]:
    from marque.testing.v1 import testing_events_pb2 as ev

    thing = f"thing-{number % aggregates}"
    return ev.ThingHappened(thing_id=thing, number=number), thing


def _handler(noop: bool = False) -> Any:
    """A per-event handler: one INSERT per event (a statement built once, its parameters
    per event: `.values(...)` per event costs ~140 us more to build and key), or nothing."""
    insert = EFFECTS.insert()

    async def on_thing(uow: Any, event: Any, envelope: Any) -> None:
        if not noop:
            await uow.conn.execute(insert, {"thing_id": event.thing_id, "number": event.number})

    return on_thing


def _batch_handler() -> Any:
    """The same effect written for a batch: one executemany (`subscribe(..., batch=True)`)."""
    insert = EFFECTS.insert()

    async def on_things(uow: Any, events: Any, envelopes: Any) -> None:
        rows = [{"thing_id": e.thing_id, "number": e.number} for e in events]
        await uow.conn.execute(insert, rows)

    return on_things


async def _link(url: str, name: str) -> Any:
    from mesh.events.link import Link

    link = Link(url, name=name)
    link.start()
    if not await link.wait_connected(10):
        raise RuntimeError(f"cannot connect to NATS at {url}")
    return link


async def _fill(db: Any, outbox: Any, n: int, chunk: int = 5000) -> None:
    """`n` pending events, `chunk` per transaction (the backlog of a long outage)."""
    from mesh.unit_of_work import transaction

    for start in range(0, n, chunk):

        async def work(uow: Any, start: int = start) -> None:
            for number in range(start, min(n, start + chunk)):
                event, thing = _event(number)
                uow.emit(event, subject=thing)

        await transaction(db, work, outbox=outbox)


def _rss_kib(field: str = "VmRSS") -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Clock:
    """Wall and process CPU time of a phase."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, n: int) -> tuple[float, float]:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        return n / wall, (n / cpu if cpu else float("nan"))


# ------------------------------------------------------------------------------ phases


async def publish_baseline(link: Any, n: int) -> tuple[float, float]:
    """nats-py's own batched async publishes of `n` messages like the relay's."""
    from nats.js import api

    from mesh.events.envelope import header_pairs

    name = f"BASE_{uuid.uuid4().hex[:8].upper()}"
    await link.js.add_stream(api.StreamConfig(name=name, subjects=[f"{name}.>"]))
    payload = _event(1)[0].SerializeToString()
    now = dt.datetime.now(dt.UTC)
    clock = Clock()
    for start in range(0, n, 1000):
        futures = []
        for i in range(start, min(n, start + 1000)):
            event_id = str(uuid.UUID(int=i))
            headers = dict(header_pairs(event_id, "/marque/b", "t", f"thing-{i}", now))
            futures.append(await link.js.publish_async(f"{name}.X", payload, headers=headers))
        await asyncio.gather(*futures)
    rates = clock.rates(n)
    await link.js.delete_stream(name)
    return rates


async def relay_rate(db: Any, link: Any, service: str, n: int) -> tuple[float, float]:
    from mesh.events.outbox import Outbox
    from mesh.events.relay import Relay

    outbox = Outbox(OUTBOX, service=service)
    await _fill(db, outbox, n)
    relay = Relay(db, outbox, link)
    await relay.ensure_stream()
    clock = Clock()
    while await relay.cycle():
        pass
    rates = clock.rates(n)
    assert relay.published == n, (relay.published, n)
    return rates


async def consumer_baseline(link: Any, producer: str, n: int) -> tuple[float, float]:
    """The consumer's pulling and acking, no database: the ceiling of one process."""
    from nats.js import api

    from mesh.events.envelope import stream_name
    from mesh.events.pull import Puller

    config = api.ConsumerConfig(
        name="bench-raw",
        durable_name="bench-raw",
        filter_subject=f"marque.{producer}.ThingHappened",
        ack_policy=api.AckPolicy.EXPLICIT,
        max_ack_pending=4000,
    )
    puller = Puller(link, stream_name(producer), config, 256)
    task = asyncio.create_task(puller.run())
    clock = Clock()
    done = 0
    try:
        while done < n:
            batch = [await puller.queue.get()]
            while not puller.queue.empty() and len(batch) < 256:
                batch.append(puller.queue.get_nowait())
            puller.room.set()
            for msg in batch:
                await msg.ack()
            done += len(batch)
        return clock.rates(n)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def consumer_rate(
    db: Any, link: Any, producer: str, n: int, *, batch: bool = False, noop: bool = False
) -> tuple[float, float]:
    consumer = _consumer(db, link, producer, batch=batch, noop=noop)
    clock = Clock()
    consumer.start()
    try:
        while consumer.handled < n:  # noqa: ASYNC110 (a bench polls its counter)
            await asyncio.sleep(0.005)
        return clock.rates(n)
    finally:
        await consumer.stop()


def _consumer(
    db: Any, link: Any, producer: str, cls: Any = None, *, batch: bool = False, noop: bool = False
) -> Any:
    from marque.testing.v1 import testing_events_pb2 as ev

    from mesh.events.consumer import Consumer
    from mesh.events.subscriptions import subscribe, subscriptions_in

    handler = _batch_handler() if batch else _handler(noop)
    marked = subscribe(ev.ThingHappened, producer=producer, batch=batch)(handler)
    sub = subscriptions_in(marked)[0]
    service = "bench-batch" if batch else ("bench-noop" if noop else "bench")
    return (cls or Consumer)(db, INBOX, link, sub, service=service)


async def offered_load(
    db: Any, link: Any, service: str, rate: float, seconds: float, *, raw: bool
) -> int:
    """`rate` events/s for `seconds`: one unit of work each (relay running), or (raw)
    JetStream publishes alone; returns how many."""
    from mesh.events.envelope import header_pairs, subject_of
    from mesh.events.outbox import Outbox
    from mesh.events.relay import Relay
    from mesh.unit_of_work import transaction

    outbox = Outbox(OUTBOX, service=service)
    relay = Relay(db, outbox, link)
    await relay.ensure_stream()
    if not raw:
        relay.start()
    start = time.perf_counter()
    count = int(rate * seconds)
    subject = subject_of(service, _event(0)[0])
    try:
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event, thing = _event(i)
            if raw:
                headers = header_pairs(str(uuid.uuid4()), "/b", "t", thing, dt.datetime.now(dt.UTC))
                await link.nc.publish(subject, event.SerializeToString(), headers=dict(headers))
            else:

                async def work(uow: Any, event: Any = event, thing: str = thing) -> None:
                    uow.emit(event, subject=thing)

                await transaction(db, work, outbox=outbox)
        deadline = time.monotonic() + 60  # what was emitted is published before the stop
        while not raw and (await relay.pending())[0] and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        if not raw and relay.published < count:
            print(f"  (the relay published {relay.published} of {count})", file=sys.stderr)
        return count
    finally:
        await relay.stop()


# ------------------------------------------------------------------------------ roles


async def role_consume(args: argparse.Namespace) -> None:
    """Another process: consume `--count` events, print their latencies (ms) as JSON."""
    from mesh.db import Database
    from mesh.events.consumer import Consumer
    from mesh.events.outbox import utc_now

    latencies: list[float] = []
    handling: list[float] = []  # of which: from the batch taken to its commit

    class Timed(Consumer):
        taken = utc_now()

        async def handle_batch(self, msgs: Sequence[Any]) -> None:
            self.taken = utc_now()
            await super().handle_batch(msgs)

        async def _done(self, items: Sequence[Any], outcomes: Sequence[str]) -> None:
            now = utc_now()
            latencies.extend((now - i.envelope.time).total_seconds() * 1000 for i in items)
            handling.extend([(now - self.taken).total_seconds() * 1000] * len(items))
            await super()._done(items, outcomes)

    db = Database(args.db)
    link = await _link(args.nats, "bench-consumer")
    consumer = _consumer(db, link, args.producer, Timed)
    consumer.start()
    print("ready", flush=True)
    deadline = time.monotonic() + args.seconds_max
    while len(latencies) < args.count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await consumer.stop()
    await link.close()
    await db.dispose()
    print(json.dumps({"latencies": latencies, "handling": handling}), flush=True)


async def role_raw_consume(args: argparse.Namespace) -> None:
    """Another process: JetStream alone, pull + ack, latencies from ce-time (ms)."""
    from nats.js import api

    from mesh.events.envelope import Envelope, stream_name
    from mesh.events.outbox import utc_now
    from mesh.events.pull import Puller

    link = await _link(args.nats, "bench-raw")
    config = api.ConsumerConfig(
        name="bench-raw",
        durable_name="bench-raw",
        filter_subject=f"marque.{args.producer}.ThingHappened",
        ack_policy=api.AckPolicy.EXPLICIT,
    )
    puller = Puller(link, stream_name(args.producer), config, 256)
    task = asyncio.create_task(puller.run())
    print("ready", flush=True)
    latencies: list[float] = []
    while len(latencies) < args.count:
        msg = await puller.queue.get()
        puller.room.set()
        await msg.ack()
        sent = Envelope.from_headers(msg.headers).time
        latencies.append((utc_now() - sent).total_seconds() * 1000)
    task.cancel()
    await link.close()
    print(json.dumps({"latencies": latencies, "handling": []}), flush=True)


async def role_drain(args: argparse.Namespace) -> None:
    """Another process: drain the backlog; print seconds and RSS (KiB) as JSON."""
    from mesh.db import Database
    from mesh.events.outbox import Outbox
    from mesh.events.relay import Relay

    db = Database(args.db)
    link = await _link(args.nats, "bench-drain")
    relay = Relay(db, Outbox(OUTBOX, service=args.producer), link)
    await relay.ensure_stream()
    before = _rss_kib()
    start = time.perf_counter()
    relay.start()  # the running relay, as a service runs it (retries, gauges, ANALYZE)
    while (await relay.pending())[0]:  # noqa: ASYNC110 (a bench polls the outbox)
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - start
    await relay.stop()
    await link.close()
    await db.dispose()
    out = {"seconds": seconds, "published": relay.published, "rss_before": before}
    out["rss_peak"] = _rss_kib("VmHWM")
    print(json.dumps(out), flush=True)


def _spawn(role: str, db_url: str, nats_url: str, producer: str, count: int) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.events", "--role", role, "--db", db_url, "--nats",
         nats_url, "--producer", producer, "--count", str(count)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "MARQUE_LOG_LEVEL": "ERROR"},
    )  # fmt: skip


def _last_json(proc: Any, timeout: float) -> Any:
    out, _ = proc.communicate(timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ the run


@contextlib.contextmanager
def _databases(tmp: Path) -> Iterator[list[tuple[str, str]]]:
    urls = [("sqlite", f"sqlite+aiosqlite:///{tmp / 'events.db'}")]
    pg = os.environ.get("MARQUE_BENCH_POSTGRES_URL") or os.environ.get("MARQUE_TEST_POSTGRES_URL")
    schema = f"bench_events_{uuid.uuid4().hex[:8]}"
    admin = None
    if pg:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(pg)
        admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        opts = {"options": f"-csearch_path={schema}"}
        urls.append(("postgres", url.update_query_dict(opts).render_as_string(hide_password=False)))
    try:
        yield urls
    finally:
        if admin:
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def run_backend(name: str, url: str, nats_url: str, args: argparse.Namespace) -> list[str]:
    from mesh.db import Database

    rows: list[str] = []
    fresh = url
    # The latency phase's consumer is another service: on SQLite its own database file (two
    # processes writing one SQLite file would measure SQLite's file lock, not events).
    consumer_url = url.replace(".db", "-consumer.db") if url.startswith("sqlite") else url
    for each in dict.fromkeys((url, consumer_url)):
        made = Database(each)
        async with made.begin() as conn:
            await conn.run_sync(METADATA.drop_all)
            await conn.run_sync(METADATA.create_all)
        await made.dispose()
    db = Database(url)
    link = await _link(nats_url, "bench")
    try:
        producer = f"b{uuid.uuid4().hex[:8]}"
        if "throughput" in args.phases:
            rows += await _throughput(db, link, name, args)
        for raw in (True, False) if "latency" in args.phases else ():
            producer = f"l{uuid.uuid4().hex[:8]}"
            count = int(args.rate * args.seconds)
            await _ensure_stream(db, link, producer)
            role = "raw-consume" if raw else "consume"
            proc = _spawn(role, consumer_url, nats_url, producer, count)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            await offered_load(db, link, producer, args.rate, args.seconds, raw=raw)
            out = _last_json(proc, 150)
            latencies, handling = sorted(out["latencies"]), sorted(out["handling"])
            if len(latencies) < count:
                rows.append(f"  latency: only {len(latencies)} of {count} events arrived")
            label = "JetStream alone" if raw else f"emit -> handler committed ({name})"
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            rows.append(
                f"  latency at {args.rate:g}/s, {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
                + ("" if raw else "  (target p50 < 20, p99 < 100)")
            )
            if handling:
                rows.append(
                    f"    of which batch taken -> committed: p50 {percentile(handling, 0.5):.1f}"
                    f" ms, p99 {percentile(handling, 0.99):.1f} ms"
                )

        if "backlog" not in args.phases:
            return rows
        producer = f"d{uuid.uuid4().hex[:8]}"
        from mesh.events.outbox import Outbox

        # The phases above share this outbox table (one per service in a real deployment):
        # rows another phase left pending belong to another stream, which this relay would
        # try to publish into its own.
        async with db.begin() as conn:
            await conn.execute(OUTBOX.delete().where(OUTBOX.c.sent_time.is_(None)))
        await _fill(db, Outbox(OUTBOX, service=producer), args.backlog)
        drained = _last_json(_spawn("drain", fresh, nats_url, producer, args.backlog), 600)
        assert drained["published"] >= args.backlog  # a re-sent duplicate is acked again
        rows.append(
            f"  backlog of {args.backlog:,} ({name}): drained in {drained['seconds']:.1f} s "
            f"({args.backlog / drained['seconds']:,.0f}/s; target < 30 s); relay RSS "
            f"{drained['rss_before'] / 1024:.0f} MiB before, "
            f"peak {drained['rss_peak'] / 1024:.0f} MiB"
        )
    finally:
        await link.close()
        await db.dispose()
    return rows


async def _throughput(db: Any, link: Any, name: str, args: argparse.Namespace) -> list[str]:
    """The relay's rate, then the consumer's: a per-event handler doing nothing (the
    consumer's own cost), one INSERT per event, and the batch handler."""
    producer = f"b{uuid.uuid4().hex[:8]}"
    base = await publish_baseline(link, args.events)
    relay = await relay_rate(db, link, producer, args.events)
    rows = [_row(f"relay ({name})", relay, base, "events/s", ">= 10,000")]
    cbase = await consumer_baseline(link, producer, args.events)
    for label, options in (
        ("per-event handler doing nothing", {"noop": True}),
        ("per-event handler, one INSERT per event", {}),
        ("batch handler, one executemany", {"batch": True}),
    ):
        got = await consumer_rate(db, link, producer, args.events, **options)
        rows.append(_row(f"consumer+inbox, {label} ({name})", got, cbase, "events/s", ">= 5,000"))
    return rows


async def _ensure_stream(db: Any, link: Any, producer: str) -> None:
    from mesh.events.outbox import Outbox
    from mesh.events.relay import Relay

    await Relay(db, Outbox(OUTBOX, service=producer), link).ensure_stream()


def _row(
    label: str, got: tuple[float, float], base: tuple[float, float], unit: str, target: str
) -> str:
    return (
        f"  {label}: {got[0]:,.0f} {unit} ({got[1]:,.0f} per CPU-second), "
        f"{got[0] / base[0]:.2f}x the baseline's {base[0]:,.0f} (target {target})"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the bench (or, with --role, be one of its processes)."""
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument(
        "--phases", default="throughput,latency,backlog", help="a subset, comma-separated"
    )
    parser.add_argument("--backends", default="sqlite,postgres", help="a subset")
    parser.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--nats", help=argparse.SUPPRESS)
    parser.add_argument("--producer", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seconds-max", type=float, default=120.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.phases = set(args.phases.split(","))
    if args.role:
        role = {"consume": role_consume, "raw-consume": role_raw_consume, "drain": role_drain}
        asyncio.run(role[args.role](args))
        return

    from mesh.nats_server import NatsServer

    with tempfile.TemporaryDirectory(prefix="marque-bench-events-") as tmp:
        server = NatsServer(Path(tmp) / "nats", port=0, monitor_port=0, mqtt_port=0)
        server.start()
        try:
            with _databases(Path(tmp)) as urls:
                print(
                    f"domain events: {args.events:,} events, {args.rate:g}/s for "
                    f"{args.seconds:g} s, a backlog of {args.backlog:,}; nats-server {server.url}",
                    flush=True,
                )
                for name, url in urls:
                    if name not in args.backends.split(","):
                        continue
                    for row in asyncio.run(run_backend(name, url, server.url, args)):
                        print(row, flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
