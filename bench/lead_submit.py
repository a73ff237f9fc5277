"""SubmitLead and ImportLeads throughput of the lead service, beside two baselines.

In one run, each server is its own subprocess (pinned to core 0 when the machine has
more than one; the load client runs on the others):
- `bare`:  plain grpc.aio with a Python servicer: TestingService.Echo, and an ImportLeads
  that only counts rows. The ceiling of a Python gRPC process on this machine.
- `naive`: plain grpc.aio SubmitLead doing one SQLAlchemy ORM insert + commit per call
  (SQLite WAL, synchronous=FULL; PostgreSQL too when configured). What a first version of
  the service would do, and the bar the real service must at least match.
- `lead`:  the real lead service through `mesh.server` with its whole chain (auth,
  validation, metrics...) and all the work of an intake (cleansing, dedup lookups, lead,
  touchpoint, routing counters), committed in groups. SQLite with synchronous=FULL, like
  the naive one, so both give the same durability.
  Its domain events (LeadCreated, LeadAssigned) are outbox rows of the same batch, and its
  relay publishes them to a nats-server the run starts; at its stop the relay drains the
  outbox and the count of published events is printed.
- `lead, no events`: the same service with the outbox rows not written and no relay (the
  service as it was before domain events): the baseline of what events cost, same run;
  `lead, outbox only`: the rows written, no relay (what writing them costs).

The client drives SubmitLead with distinct mobiles at a fixed concurrency for a bounded
time after a warm-up and prints QPS, p50, p99 and the ratios; the three lead forms run in
`--rounds` interleaved rounds (each on a fresh database; every other round in the reverse
order) and their medians are the figures, the events' cost being the ratio of the medians.
Then it streams 100k generated rows (a few bad, some repeated mobiles) through ImportLeads
on a fresh lead server and prints rows/s, seconds and that server's peak RSS (getrusage in
the server), beside the bare server counting the same rows and the naive one importing the first
5000 of them (one commit per row: all 100k would take minutes).

PostgreSQL runs when `MARQUE_BENCH_POSTGRES_URL` or `MARQUE_TEST_POSTGRES_URL` is set: a
throwaway database is created beside the one named there and dropped afterwards.
Everything listens on loopback, every loop is bounded, the run stops by itself.

    python -m bench.lead_submit [--seconds 5] [--concurrency 64] [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.harness import (
    LOOPBACK,
    ROOT,
    LatencyResult,
    bearer_metadata,
    bench_postgres_url,
    keep_in_flight,
    pin_to_core,
    process_cpu_seconds,
    serve_command,
    server_env,
    server_settings,
    start_server,
    stop_server,
    wait_for_term,
)

# How a server subprocess is started (a test may point it elsewhere).
SERVER_CMD = ["-m", "bench.lead_submit"]
CHANNELS = (1, 2, 3, 4, 6)  # brand site, autohome, yiche, tencent ads, call center
CITIES = (("Shanghai", "Shanghai"), ("Beijing", "Beijing"), ("Shenzhen", "Guangdong"))


# ---------------------------------------------------------------------------- servers


class _Base(DeclarativeBase):
    pass


class NaiveLead(_Base):
    """The naive baseline's one table: a lead as one ORM row."""

    __tablename__ = "naive_leads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    mobile: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    brand: Mapped[str] = mapped_column(String(64))
    channel: Mapped[int]
    request_id: Mapped[str] = mapped_column(String(128))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


async def _serve_until_term(
    server_stop: Callable[[], Awaitable[None]],
    port: int,
    stats: Callable[[], tuple[int, int]] | None = None,
) -> None:
    """Announce the port, wait for SIGTERM, stop, report peak RSS (and `stats`: group
    commits and the items in them) on stdout."""
    print(f"READY {port} {_peak_rss_mb():.1f}", flush=True)
    await wait_for_term()
    await server_stop()
    if stats is not None:
        batches, items = stats()
        print(f"BATCHES {batches} {items}", flush=True)
    print(f"RSS {_peak_rss_mb():.1f}", flush=True)


async def serve_bare() -> None:
    """Bare grpc.aio: Echo, and an ImportLeads that only counts."""
    from marque.lead.v1 import lead_service_pb2, lead_service_pb2_grpc
    from marque.testing.v1 import testing_service_pb2, testing_service_pb2_grpc

    class Echo(testing_service_pb2_grpc.TestingServiceServicer):
        async def Echo(self, request: Any, context: Any) -> Any:
            return testing_service_pb2.EchoResponse(message=request.message)

    class Count(lead_service_pb2_grpc.LeadServiceServicer):
        async def ImportLeads(self, request_iterator: Any, context: Any) -> Any:
            n = 0
            async for _ in request_iterator:
                n += 1
            return lead_service_pb2.ImportLeadsResponse(received=n, created=n)

    server = grpc.aio.server()
    testing_service_pb2_grpc.add_TestingServiceServicer_to_server(Echo(), server)
    lead_service_pb2_grpc.add_LeadServiceServicer_to_server(Count(), server)
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()
    await _serve_until_term(lambda: server.stop(0), port)


async def serve_naive(url: str) -> None:
    """One ORM insert + commit per call: the baseline the real service must beat."""
    from marque.lead.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    # One connection per call in flight, so the baseline waits on its database, not on
    # SQLAlchemy's pool (the default 5 + 10 would queue most of 64 calls).
    engine = create_async_engine(url, pool_size=16, max_overflow=64, pool_timeout=60)
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.drop_all)
        await conn.run_sync(_Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    counter = iter(range(1, 1 << 62))

    async def insert(req: Any) -> str:
        lead_id = f"N{next(counter):012d}"
        async with sessions() as s:
            s.add(
                NaiveLead(
                    id=lead_id,
                    mobile=req.lead.customer.mobile,
                    name=req.lead.customer.name,
                    brand=req.lead.vehicle.brand,
                    channel=req.channel,
                    request_id=req.request_id,
                    create_time=dt.datetime.now(dt.UTC),
                )
            )
            await s.commit()
        return lead_id

    class Naive(lead_service_pb2_grpc.LeadServiceServicer):
        async def SubmitLead(self, request: Any, context: Any) -> Any:
            lead_id = await insert(request)
            return lead_service_pb2.SubmitLeadResponse(
                lead=lead_pb2.Lead(id=lead_id),
                outcome=lead_service_pb2.SUBMIT_OUTCOME_CREATED,
            )

        async def ImportLeads(self, request_iterator: Any, context: Any) -> Any:
            n = 0
            async for row in request_iterator:
                await insert(row)
                n += 1
            return lead_service_pb2.ImportLeadsResponse(received=n, created=n)

    server = grpc.aio.server()
    lead_service_pb2_grpc.add_LeadServiceServicer_to_server(Naive(), server)
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()

    async def stop() -> None:
        await server.stop(0)
        await engine.dispose()

    await _serve_until_term(stop, port)


async def serve_lead(url: str, *, events: bool = True, rows: bool = True) -> None:
    """The real lead service, as `make run` would start it but on a free port, its events
    relayed to the bench's nats-server. `events=False`: no relay (the outbox rows are still
    written); `rows=False` too: the service as it was before domain events (the baseline of
    their cost)."""
    from mesh.server import start
    from services.lead.app import build_spec

    settings = server_settings("lead", url)
    if not rows:
        from services.lead import intake_writer

        intake_writer._Batch._emit = lambda *_: None  # type: ignore[method-assign]
    spec = build_spec(events=events)
    servicers: list[Any] = []
    made = spec.servicers[0].factory
    assert made is not None

    def factory() -> Any:
        servicers.append(made())
        return servicers[-1]

    spec.servicers[0].factory = factory
    running = await start(spec, settings)

    def stats() -> tuple[int, int]:
        writer = servicers[0].engine.writer
        return writer.batches, writer.items

    async def stop() -> None:
        if events:  # the relay catches up first: what was emitted is published
            await _drain_outbox(url)
            from services.lead.store.tables import OUTBOX

            # How many went to the relay from memory (born leased, never claimed).
            print(f"HANDED {OUTBOX.handed_over}", flush=True)
        await running.stop(1.0)

    await _serve_until_term(stop, running.port, stats)


async def _drain_outbox(url: str, within: float = 30.0) -> None:
    """Wait until the outbox has nothing pending; print what it published."""
    import sqlalchemy as sa

    from mesh.db import Database
    from services.lead.store.tables import outbox

    db = Database(url)
    pending = sa.select(sa.func.count()).where(outbox.c.sent_time.is_(None))
    sent = sa.select(sa.func.count()).where(outbox.c.sent_time.is_not(None))
    deadline = time.monotonic() + within
    try:
        while True:
            async with db.engine.connect() as conn:
                left = int((await conn.execute(pending)).scalar_one())
                done = int((await conn.execute(sent)).scalar_one())
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        await db.dispose()
    print(f"EVENTS {done} {left}", flush=True)


# ---------------------------------------------------------------------------- processes


class ServerProcess:
    """A server subprocess: started with `serve`, told to stop with SIGTERM."""

    def __init__(self, kind: str, url: str, core: int | None, env: dict[str, str]):
        cmd = serve_command(SERVER_CMD, kind, url, core)
        self.kind = kind
        try:
            self.proc, line = start_server(
                cmd, "READY", on_failure=lambda p: p.kill(), cwd=ROOT, env=env, bufsize=1
            )
        except RuntimeError as e:
            raise RuntimeError(f"{kind} server did not start: {e}") from None
        self.port = int(line[1])
        self.start_rss_mb = float(line[2])
        self.peak_rss_mb = 0.0
        self.batches: tuple[int, int] | None = None
        self.events: tuple[int, int] | None = None  # published, still pending at stop
        self.handed = 0  # of them, handed to the relay from memory

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> float:
        """Stop the server; returns its peak RSS in MB."""
        out = stop_server(self.proc, timeout=30)
        for line in out.splitlines():
            if line.startswith("RSS "):
                self.peak_rss_mb = float(line.split()[1])
            elif line.startswith("BATCHES "):
                _, batches, items = line.split()
                self.batches = (int(batches), int(items))
            elif line.startswith("EVENTS "):
                _, sent, pending = line.split()
                self.events = (int(sent), int(pending))
            elif line.startswith("HANDED "):
                self.handed = int(line.split()[1])
        return self.peak_rss_mb


# ---------------------------------------------------------------------------- load


@dataclass
class Result(LatencyResult):
    """What one load phase measured."""

    # The server process's CPU seconds (user + system, all threads) over the measured
    # window, and the calls it answered in that window; None when not measured.
    server_cpu: float | None = None
    answered: int = 0
    # The lead server's group commits over its whole life: transactions, items.
    batches: tuple[int, int] | None = None

    @property
    def cpu_us_per_call(self) -> float | None:
        """Server CPU microseconds per answered call (the figure that bounds QPS on one
        core, and that a shared machine's noise disturbs far less than QPS)."""
        if self.server_cpu is None or not self.answered:
            return None
        return self.server_cpu / self.answered * 1e6


class Mobiles:
    """Distinct, valid Chinese mobile numbers, typed the way people type them."""

    def __init__(self, prefix: str = "139") -> None:
        self.prefix = prefix
        self.n = 0

    def next(self) -> str:
        self.n += 1
        digits = f"{self.prefix}{self.n:08d}"
        return f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}" if self.n % 2 else digits


def lead_request(mobile: str, n: int, *, request_id: str) -> Any:
    """A realistic SubmitLeadRequest."""
    from marque.lead.v1 import lead_pb2, lead_service_pb2

    city, province = CITIES[n % len(CITIES)]
    return lead_service_pb2.SubmitLeadRequest(
        lead=lead_service_pb2.LeadInput(
            customer=lead_pb2.Customer(
                name=f"Wang Wei {n % 977}", mobile=mobile, city=city, province=province
            ),
            vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M5", model="M5 Long Range"),
            time_frame=cast(Any, 1 + n % 6),
            consents=lead_pb2.Consents(contact=True, share_with_dealer=True),
            test_drive_requested=n % 3 == 0,
        ),
        channel=cast(Any, CHANNELS[n % len(CHANNELS)]),
        channel_lead_id=f"bench-{request_id}",
        request_id=request_id,
    )


async def drive(
    name: str,
    call: Callable[[int], Awaitable[Any]],
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    server_pid: int | None = None,
) -> Result:
    """Keep `concurrency` calls in flight for warmup + seconds; measure after the warm-up.
    With `server_pid`, the server's CPU time over the measured window is taken too."""
    latencies: list[float] = []
    errors = 0
    answered = 0
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds

    def on_error(t0: float) -> None:
        nonlocal errors
        if t0 >= measure_from:
            errors += 1

    def on_answer(t0: float, done: float) -> None:
        nonlocal answered
        if measure_from <= done <= end:
            answered += 1
        # Calls started in the window and answered within it: the QPS is the window's.
        if t0 >= measure_from and done <= end:
            latencies.append(done - t0)

    async def cpu_meter() -> float | None:
        if server_pid is None:
            return None
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        before = process_cpu_seconds(server_pid)
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        after = process_cpu_seconds(server_pid)
        return None if before is None or after is None else after - before

    meter = asyncio.ensure_future(cpu_meter())
    await keep_in_flight(call, concurrency, end, on_error, on_answer)
    cpu = await meter
    return Result(name, len(latencies), errors, seconds, latencies, cpu, answered)


async def submit_phase(
    label: str, server: ServerProcess, token: str, args: argparse.Namespace, prefix: str
) -> Result:
    from marque.lead.v1 import lead_service_pb2_grpc

    mobiles = Mobiles(prefix)
    md = bearer_metadata(token)
    async with grpc.aio.insecure_channel(server.target) as ch:
        stub = lead_service_pb2_grpc.LeadServiceStub(ch)

        async def call(n: int) -> Any:
            req = lead_request(mobiles.next(), n, request_id=f"{prefix}-{n}")
            return await stub.SubmitLead(req, metadata=md, timeout=10)

        return await drive(
            label,
            call,
            concurrency=args.concurrency,
            warmup=args.warmup,
            seconds=args.seconds,
            server_pid=server.proc.pid,
        )


async def echo_phase(server: ServerProcess, token: str, args: argparse.Namespace) -> Result:
    from marque.testing.v1 import testing_service_pb2, testing_service_pb2_grpc

    md = bearer_metadata(token)
    req = testing_service_pb2.EchoRequest(message="hello")
    async with grpc.aio.insecure_channel(server.target) as ch:
        stub = testing_service_pb2_grpc.TestingServiceStub(ch)

        async def call(_n: int) -> Any:
            return await stub.Echo(req, metadata=md, timeout=10)

        return await drive(
            "bare echo",
            call,
            concurrency=args.concurrency,
            warmup=args.warmup,
            seconds=args.seconds,
            server_pid=server.proc.pid,
        )


def import_rows(rows: int, prefix: str) -> Iterator[Any]:
    """`rows` import rows: ~1% bad (landline, empty name), ~5% repeating an earlier mobile."""
    from marque.lead.v1 import lead_service_pb2

    mobiles = Mobiles(prefix)
    seen: list[str] = []
    for n in range(1, rows + 1):
        if n % 20 == 0 and seen:
            mobile = seen[(n * 7919) % len(seen)]
        else:
            mobile = mobiles.next()
            if len(seen) < 10_000:
                seen.append(mobile)
        req = lead_request(mobile, n, request_id="")
        if n % 100 == 0:
            req.lead.customer.mobile = "021 6555 1234"  # a Shanghai landline
        elif n % 100 == 50:
            req.lead.customer.name = ""
        yield lead_service_pb2.ImportLeadsRequest(
            lead=req.lead, channel=req.channel, channel_lead_id=f"imp-{prefix}-{n}"
        )


async def import_phase(target: str, token: str, rows: int, prefix: str) -> tuple[Any, float]:
    from marque.lead.v1 import lead_service_pb2_grpc

    async def stream() -> AsyncIterator[Any]:
        for row in import_rows(rows, prefix):
            yield row

    async with grpc.aio.insecure_channel(target) as ch:
        stub = lead_service_pb2_grpc.LeadServiceStub(ch)
        t0 = time.perf_counter()
        summary = await stub.ImportLeads(stream(), metadata=bearer_metadata(token), timeout=600)
        return summary, time.perf_counter() - t0


# ---------------------------------------------------------------------------- postgres


@contextlib.contextmanager
def throwaway_postgres(url: str | None, name: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database next to `url` for one server; dropped afterwards."""
    if not url:
        yield None
        return
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    db = f"marque_bench_{name}_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{db}"')
    try:
        yield base.set(database=db).render_as_string(False)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# ---------------------------------------------------------------------------- main


@dataclass
class LeadPhase:
    """One lead server's SubmitLead phase and what it said at its stop."""

    result: Result
    batches: tuple[int, int] | None
    events: tuple[int, int] | None
    handed: int = 0  # events the relay took from memory (mesh/events/handover.py)


async def _lead_phase(
    kind: str,
    label: str,
    url: str,
    args: argparse.Namespace,
    env: dict[str, str],
    token: str,
    core: int | None,
) -> LeadPhase:
    server = ServerProcess(kind, url, core, env)
    try:
        prefix = {"lead": "139", "lead-no-events": "136"}.get(kind, "135")
        result = await submit_phase(label, server, token, args, prefix)
    finally:
        server.stop()
    return LeadPhase(result, server.batches, server.events, server.handed)


def _print_events(lead: LeadPhase, before: Result) -> None:
    """The events' cost: QPS and p99 against the same service without them, same run."""
    sent, pending = lead.events or (0, -1)
    ratio = lead.result.qps / before.qps if before.qps else 0.0
    print(
        f"  {'events':<22} {ratio:8.2f}x the QPS without events; {sent} events published"
        f" to NATS by the relay ({lead.handed} from memory), {pending} pending at stop",
        flush=True,
    )


def _print_result(r: Result, naive: Result | None, bare: Result | None) -> None:
    ratios = ""
    if naive and naive.qps:
        ratios += f"  {r.qps / naive.qps:5.2f}x naive"
    if bare and bare.qps:
        ratios += f"  {r.qps / bare.qps:5.2f}x bare"
    cpu = r.cpu_us_per_call
    extra = f"  server {cpu:5.0f} us/call" if cpu is not None else ""
    if r.batches and r.batches[0]:
        extra += f"  batch {r.batches[1] / r.batches[0]:5.1f}"
    print(
        f"  {r.name:<22} {r.qps:8.0f} QPS  p50 {r.pct(0.50):6.1f} ms  p99 {r.pct(0.99):6.1f} ms"
        f"  errors {r.errors}{ratios}{extra}",
        flush=True,
    )


async def run(args: argparse.Namespace, env: dict[str, str], pg_url: str | None) -> None:
    from mesh.identity import Caller, Kind
    from mesh.keys import load_keys, mint_token
    from mesh.nats_server import NatsServer

    # The servers' dev key lives in this run's own var dir; load it from there rather than
    # through the process-wide cached default, so other benches keep theirs.
    keys = load_keys(env)
    token = mint_token(Caller(Kind.SERVICE, "bench", service="bench"), keys=keys)
    multi = (os.cpu_count() or 1) > 1
    server_core = 0 if multi else None
    if multi:
        _pin_client(server_core)

    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if pg_url:
        backends.append(("postgres", pg_url))

    print(
        f"SubmitLead at {args.concurrency} in flight, {args.seconds:.0f} s after "
        f"{args.warmup:.1f} s warm-up; servers pinned to core {server_core}",
        flush=True,
    )
    tmp = Path(env["MARQUE_VAR_DIR"])
    # The lead servers relay their events to a nats-server of the run's own (the .venv's
    # binary, JetStream on, free ports), as `make run` does.
    nats = NatsServer(tmp / "nats", port=0, monitor_port=0, mqtt_port=0, log_path=tmp / "nats.log")
    nats.start()
    env["MARQUE_NATS_URL"] = nats.url
    try:
        if "submit" in args.phases:
            await run_submit(args, env, token, server_core, backends, tmp)
        if "import" in args.phases and args.rows > 0:
            await run_import(args, env, token, server_core, backends, tmp)
    finally:
        nats.stop()


async def run_submit(
    args: argparse.Namespace,
    env: dict[str, str],
    token: str,
    server_core: int | None,
    backends: list[tuple[str, str | None]],
    tmp: Path,
) -> None:
    """SubmitLead: bare echo, then naive and lead on each back end."""
    bare = ServerProcess("bare", "", server_core, env)
    try:
        bare_result = await echo_phase(bare, token, args)
    finally:
        bare.stop()
    _print_result(bare_result, None, None)
    for backend, base_url in backends:
        with throwaway_postgres(base_url, "naive") as naive_pg:
            naive_url = naive_pg or f"sqlite+aiosqlite:///{tmp / 'naive.db'}"
            naive = ServerProcess("naive", naive_url, server_core, env)
            try:
                naive_result = await submit_phase(
                    f"naive ORM ({backend})", naive, token, args, "137"
                )
            finally:
                naive.stop()
        _print_result(naive_result, None, bare_result)
        rounds: dict[str, list[LeadPhase]] = {kind: [] for kind, _ in LEAD_KINDS}
        for n in range(args.rounds):
            # Every other round runs the forms in the reverse order, so a drift of the
            # machine's speed across the run does not favour the form that always goes first.
            for kind, label in LEAD_KINDS if n % 2 == 0 else LEAD_KINDS[::-1]:
                with throwaway_postgres(base_url, f"{kind.replace('-', '')}{n}") as pg:
                    url = pg or f"sqlite+aiosqlite:///{tmp / f'{kind}-{n}.db'}"
                    phase = await _lead_phase(
                        kind, f"{label} ({backend})", url, args, env, token, server_core
                    )
                phase.result.batches = phase.batches
                rounds[kind].append(phase)
                _print_result(phase.result, naive_result, bare_result)
            _print_events(rounds["lead"][-1], rounds["lead-no-events"][-1].result)
        if args.rounds > 1:
            _print_medians(backend, rounds, naive_result, bare_result)


# The lead service's three forms, in the order each round runs them (see the docstring).
LEAD_KINDS = (
    ("lead-no-events", "lead, no events"),
    ("lead-outbox-only", "lead, outbox only"),
    ("lead", "lead"),
)


def _print_medians(
    backend: str, rounds: dict[str, list[LeadPhase]], naive: Result, bare: Result
) -> None:
    """Each form's round of median QPS (its p99 and CPU with it), and the events' cost as
    the ratio of the medians: one round's ratio moves by +-0.15 on this shared machine,
    as the other processes' demand comes and goes between two phases."""
    print(f"  median of {len(rounds['lead'])} interleaved rounds ({backend}):", flush=True)
    medians: dict[str, LeadPhase] = {}
    for kind, _ in LEAD_KINDS:
        ranked = sorted(rounds[kind], key=lambda phase: phase.result.qps)
        medians[kind] = ranked[len(ranked) // 2]
        _print_result(medians[kind].result, naive, bare)
    _print_events(medians["lead"], medians["lead-no-events"].result)


async def run_import(
    args: argparse.Namespace,
    env: dict[str, str],
    token: str,
    server_core: int | None,
    backends: list[tuple[str, str | None]],
    tmp: Path,
) -> None:
    """ImportLeads of generated rows: bare (count only), then lead on each back end."""
    print(f"ImportLeads of {args.rows} rows (1% bad, 5% repeated mobiles)", flush=True)
    bare = ServerProcess("bare", "", server_core, env)
    try:
        _, bare_s = await import_phase(bare.target, token, args.rows, "135")
    finally:
        bare.stop()
    print(f"  {'bare (count only)':<22} {args.rows / bare_s:8.0f} rows/s  {bare_s:6.1f} s")
    # The naive service commits row by row: a bounded prefix of the same rows gives its rate.
    naive_rows = min(args.rows, args.naive_import_rows)
    for backend, base_url in backends:
        naive_rate = 0.0
        if naive_rows:
            with throwaway_postgres(base_url, "naiveimport") as pg:
                url = pg or f"sqlite+aiosqlite:///{tmp / 'naive-import.db'}"
                naive = ServerProcess("naive", url, server_core, env)
                try:
                    _, naive_s = await import_phase(naive.target, token, naive_rows, "134")
                finally:
                    naive.stop()
            naive_rate = naive_rows / naive_s
            print(
                f"  {'naive ORM (' + backend + ')':<22} {naive_rate:8.0f} rows/s  "
                f"{naive_s:6.1f} s for the first {naive_rows} rows",
                flush=True,
            )
        with throwaway_postgres(base_url, "import") as pg:
            url = pg or f"sqlite+aiosqlite:///{tmp / 'import.db'}"
            lead = ServerProcess("lead", url, server_core, env)
            try:
                summary, secs = await import_phase(lead.target, token, args.rows, "136")
            finally:
                peak = lead.stop()
            vs_naive = f"  {args.rows / secs / naive_rate:5.1f}x naive" if naive_rate else ""
            print(
                f"  {'lead (' + backend + ')':<22} {args.rows / secs:8.0f} rows/s  {secs:6.1f} s"
                f"{vs_naive}  peak RSS {peak:6.1f} MB (at start {lead.start_rss_mb:.1f} MB)"
                f"  created {summary.created} merged {summary.merged}"
                f" duplicates {summary.duplicates} rejected {summary.rejected}",
                flush=True,
            )


def _pin_client(server_core: int | None) -> None:
    """Keep the load client off the server's core."""
    if not hasattr(os, "sched_setaffinity") or server_core is None:
        return
    others = set(range(os.cpu_count() or 1)) - {server_core}
    if others:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, others)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with --serve, be one of its servers)."""
    parser = argparse.ArgumentParser(prog="python -m bench.lead_submit", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per phase")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--rows", type=int, default=100_000, help="ImportLeads rows (0: skip)")
    parser.add_argument(
        "--naive-import-rows",
        type=int,
        default=5_000,
        help="rows the naive service imports (it commits each; 0: skip it)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of the lead phases (their medians are the figures)",
    )
    parser.add_argument("--phases", default="submit,import", help="comma-separated: submit, import")
    parser.add_argument(
        "--serve",
        choices=["bare", "naive", "lead", "lead-no-events", "lead-outbox-only"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        pin_to_core(args.core)
        serve: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "bare": serve_bare,
            "naive": lambda: serve_naive(args.url),
            "lead": lambda: serve_lead(args.url),
            "lead-no-events": lambda: serve_lead(args.url, events=False, rows=False),
            "lead-outbox-only": lambda: serve_lead(args.url, events=False),
        }
        asyncio.run(serve[args.serve]())
        return

    pg_url = bench_postgres_url(args.no_postgres)
    with server_env("marque-bench-lead-") as env:
        asyncio.run(run(args, env, pg_url))


if __name__ == "__main__":
    main()
