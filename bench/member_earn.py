"""EarnPoints and RedeemPoints throughput and p99 of the member service, beside a bare
grpc.aio echo and a naive one-insert service, in the same run.

Each server is its own subprocess (pinned to core 0 when the machine has more than one;
the load client runs on the others), on loopback only:
- `bare echo`: plain grpc.aio with a tiny Python servicer for TestingService.Echo, no
  interceptors, no database. The ceiling of one Python gRPC process here.
- `naive`: plain grpc.aio MemberService whose EarnPoints and RedeemPoints each do one
  SQLAlchemy ORM insert + commit (bench/lead_submit.py's naive baseline, for points): what a
  first version of the service would do, and the bar the real one must at least match.
- `member`: the real member service through `mesh.server` with its whole chain (auth,
  validation, metrics, logging) and a full EarnPoints (request id, member row, expiry
  check, ledger append, balance and cached qualifying points, tier review, the member in
  the reply), then a full RedeemPoints on the same members, committed in groups.
SQLite runs in WAL mode with synchronous=FULL for both the naive and the member server
(`--synchronous`; the same durability: every commit is on disk); PostgreSQL too when
`MARQUE_BENCH_POSTGRES_URL` or `MARQUE_TEST_POSTGRES_URL` is set (a throwaway database
per server, created and dropped).

The client keeps `--concurrency` calls in flight (default 64) for a warm-up and a bounded
measuring time, spreading the calls over many members (one member's writes serialise by
design), then prints QPS, p50, p99, the ratio to the naive service of the same round, the
server process's CPU time per call (user + system, from /proc: the figure that depends
least on what else the shared machine is doing) and the member writer's mean batch.
`--history N` books N earns per member before measuring (an EarnPoints must cost the same
on a long ledger as on a short one); `--rounds N` repeats everything N times, the naive and
member servers in alternating order, and reports the median round per row (by QPS).

    python -m bench.member_earn [--seconds 5] [--warmup 1] [--concurrency 64] [--members 256]
                                [--history 0] [--rounds 1] [--synchronous FULL] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.harness import (
    LOOPBACK,
    ROOT,
    LatencyResult,
    bearer_metadata,
    cpu_seconds_or_nan,
    keep_in_flight,
    naive_engine,
    pin_to_core,
    serve_command,
    server_settings,
    start_server,
    stop_server,
    wait_for_term,
)

SERVER_CMD = ["-m", "bench.member_earn"]


# ---------------------------------------------------------------------------- servers


class _Base(DeclarativeBase):
    pass


class NaivePoints(_Base):
    """The naive baseline's one table: a points booking as one ORM row."""

    __tablename__ = "naive_points"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(40))
    points: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(256))
    source_ref: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(128))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


async def _serve_until_term(
    stop: Callable[[], Awaitable[None]],
    port: int,
    stats: Callable[[], tuple[int, int] | None] | None = None,
) -> None:
    """Announce the port, wait for SIGTERM, stop; then report `stats` (the writer's
    transactions and the items in them) on stdout."""
    print(f"READY {port}", flush=True)
    await wait_for_term()
    await stop()
    batches = stats() if stats is not None else None
    if batches is not None:
        print(f"BATCHES {batches[0]} {batches[1]}", flush=True)


async def serve_bare() -> None:
    """Bare grpc.aio Echo: no mesh, no database."""
    from marque.testing.v1 import testing_service_pb2, testing_service_pb2_grpc

    class Echo(testing_service_pb2_grpc.TestingServiceServicer):
        async def Echo(self, request: Any, context: Any) -> Any:
            return testing_service_pb2.EchoResponse(message=request.message)

    server = grpc.aio.server()
    testing_service_pb2_grpc.add_TestingServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()
    await _serve_until_term(lambda: server.stop(0), port)


async def serve_naive(url: str) -> None:
    """One ORM insert + commit per EarnPoints or RedeemPoints: the baseline to match."""
    from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = naive_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.drop_all)
        await conn.run_sync(_Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    counter = iter(range(1, 1 << 62))

    async def book(req: Any, points: int) -> member_pb2.PointTransaction:
        row = NaivePoints(
            id=f"N{next(counter):012d}",
            member_id=req.member_id,
            points=points,
            reason=req.reason,
            source_ref=req.source_ref,
            request_id=req.request_id,
            create_time=dt.datetime.now(dt.UTC),
        )
        async with sessions() as s:
            s.add(row)
            await s.commit()
        return member_pb2.PointTransaction(id=row.id, member_id=row.member_id, points=points)

    class Naive(member_service_pb2_grpc.MemberServiceServicer):
        async def EarnPoints(self, request: Any, context: Any) -> Any:
            txn = await book(request, request.points)
            return member_service_pb2.EarnPointsResponse(
                transaction=txn, member=member_pb2.Member(id=request.member_id)
            )

        async def RedeemPoints(self, request: Any, context: Any) -> Any:
            txn = await book(request, -request.points)
            return member_service_pb2.RedeemPointsResponse(
                transaction=txn, member=member_pb2.Member(id=request.member_id)
            )

    server = grpc.aio.server()
    member_service_pb2_grpc.add_MemberServiceServicer_to_server(Naive(), server)
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()

    async def stop() -> None:
        await server.stop(0)
        await engine.dispose()

    await _serve_until_term(stop, port)


async def serve_member(url: str) -> None:
    """The real member service, as `make run` starts it but on a free port."""
    from mesh.server import start
    from services.member.app import build_spec

    settings = server_settings("member", url)
    spec = build_spec(events=False)  # points emit no events: no relay to idle
    servicers: list[Any] = []
    made = spec.servicers[0].factory
    assert made is not None

    def factory() -> Any:
        servicers.append(made())
        return servicers[-1]

    spec.servicers[0].factory = factory
    running = await start(spec, settings)

    def stats() -> tuple[int, int] | None:
        writer = getattr(servicers[0].engine, "writer", None) if servicers else None
        return None if writer is None else (writer.batches, writer.items)

    await _serve_until_term(lambda: running.stop(1.0), running.port, stats)


class ServerProcess:
    """A server subprocess: started with `--serve`, stopped with SIGTERM."""

    def __init__(self, kind: str, url: str, core: int | None, env: dict[str, str]) -> None:
        cmd = serve_command(SERVER_CMD, kind, url, core)
        try:
            self.proc, line = start_server(
                cmd, "READY", on_failure=lambda p: p.kill(), cwd=ROOT, env=env, bufsize=1
            )
        except RuntimeError as e:
            raise RuntimeError(f"{kind} server did not start: {e}") from None
        self.target = f"{LOOPBACK}:{line[1]}"
        self.batches: tuple[int, int] | None = None

    def stop(self) -> None:
        out = stop_server(self.proc, timeout=30)
        for line in out.splitlines():
            if line.startswith("BATCHES "):
                _, batches, items = line.split()
                self.batches = (int(batches), int(items))


# ---------------------------------------------------------------------------- load


@dataclass
class Result(LatencyResult):
    """What one load phase measured."""

    cpu_seconds: float = float("nan")
    # The member writer's transactions and items over the server's life (None: no writer).
    batches: tuple[int, int] | None = None

    @property
    def cpu_us_per_call(self) -> float:
        """Server process CPU (user + system) per measured call, in microseconds."""
        return self.cpu_seconds / self.calls * 1e6 if self.calls else float("nan")

    @property
    def mean_batch(self) -> float:
        if not self.batches or not self.batches[0]:
            return float("nan")
        return self.batches[1] / self.batches[0]


async def drive(
    name: str,
    call: Callable[[int], Awaitable[Any]],
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    server_pid: int | None = None,
) -> Result:
    """Keep `concurrency` calls in flight for warmup + seconds; measure the calls started
    after the warm-up and answered within the window (calls, latencies and, given
    `server_pid`, the server's CPU time over the window)."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds

    async def cpu_meter() -> float:
        if server_pid is None:
            return float("nan")
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        before = cpu_seconds_or_nan(server_pid)
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        return cpu_seconds_or_nan(server_pid) - before

    def on_error(t0: float) -> None:
        nonlocal errors
        if t0 >= measure_from:
            errors += 1

    def on_answer(t0: float, done: float) -> None:
        if t0 >= measure_from and done <= end:
            latencies.append(done - t0)

    meter = asyncio.ensure_future(cpu_meter())
    await keep_in_flight(call, concurrency, end, on_error, on_answer)
    cpu_seconds = await meter
    return Result(name, len(latencies), errors, seconds, latencies, cpu_seconds)


async def echo_phase(server: ServerProcess, args: argparse.Namespace) -> Result:
    from marque.testing.v1 import testing_service_pb2, testing_service_pb2_grpc

    req = testing_service_pb2.EchoRequest(message="hello")
    async with grpc.aio.insecure_channel(server.target) as ch:
        stub = testing_service_pb2_grpc.TestingServiceStub(ch)

        async def call(_n: int) -> Any:
            return await stub.Echo(req, timeout=10)

        return await drive(
            "bare echo",
            call,
            concurrency=args.concurrency,
            warmup=args.warmup,
            seconds=args.seconds,
            server_pid=server.proc.pid,
        )


def _token() -> tuple[tuple[str, str], ...]:
    from mesh.identity import Caller, Kind
    from mesh.keys import mint_token

    return bearer_metadata(mint_token(Caller(Kind.SERVICE, "bench", service="bench")))


async def _register(stub: Any, md: Any, run: str, count: int) -> list[str]:
    from marque.member.v1 import member_pb2, member_service_pb2

    members: list[str] = []
    for i in range(count):
        resp = await stub.RegisterMember(
            member_service_pb2.RegisterMemberRequest(
                identity=member_service_pb2.IdentityKey(
                    type=member_pb2.IDENTITY_TYPE_APP_USER_ID, value=f"bench-{run}-{i}"
                ),
                request_id=f"reg-{run}-{i}",
            ),
            metadata=md,
            timeout=10,
        )
        members.append(resp.member.id)
    return members


async def points_phases(
    label: str, server: ServerProcess, args: argparse.Namespace, *, register: bool
) -> list[Result]:
    """EarnPoints, then RedeemPoints on the same members (`register`: real members first;
    the naive service takes any id)."""
    from marque.member.v1 import member_service_pb2, member_service_pb2_grpc

    md = _token()
    run = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(server.target) as ch:
        stub = member_service_pb2_grpc.MemberServiceStub(ch)
        if register:
            members = await _register(stub, md, run, args.members)
        else:
            members = [f"m_naive_{run}_{i}" for i in range(args.members)]

        def earn(n: int, prefix: str) -> Awaitable[Any]:
            req = member_service_pb2.EarnPointsRequest(
                member_id=members[n % len(members)],
                points=10 + n % 90,
                reason="service visit",
                source_ref=f"ro-{n}",
                request_id=f"{prefix}-{run}-{n}",
            )
            return stub.EarnPoints(req, metadata=md, timeout=30)

        def redeem(n: int) -> Awaitable[Any]:
            req = member_service_pb2.RedeemPointsRequest(
                member_id=members[n % len(members)],
                points=1 + n % 3,
                reason="coupon",
                source_ref=f"cp-{n}",
                request_id=f"redeem-{run}-{n}",
            )
            return stub.RedeemPoints(req, metadata=md, timeout=30)

        # A ledger history per member first, so the measured calls land on long ledgers.
        history = iter(range(args.history * len(members)))

        async def fill() -> None:
            for n in history:
                await earn(n, "history")

        await asyncio.gather(*(fill() for _ in range(args.concurrency)))

        results = []
        for phase, call in (
            ("earn", lambda n: earn(n, "earn")),
            ("redeem", redeem),
        ):
            if phase in args.phases:
                results.append(
                    await drive(
                        f"{label} {phase}",
                        call,
                        concurrency=args.concurrency,
                        warmup=args.warmup,
                        seconds=args.seconds,
                        server_pid=server.proc.pid,
                    )
                )
        return results


# ---------------------------------------------------------------------------- postgres


@contextlib.contextmanager
def throwaway_postgres(base: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database beside the configured one, dropped afterwards."""
    if not base:
        yield None
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"bench_member_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------- main


def _cores() -> tuple[int | None, set[int] | None]:
    """(server core, client cores) when there is more than one core."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return cores[0], set(cores[1:])


def load_average() -> str:
    """The 1-minute load average (the machine may be shared; figures under load drift)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _naive_of(r: Result, results: list[Result]) -> Result | None:
    """The naive result of the same back end (and phase, if measured) as `r`."""
    if r.name.startswith(("naive", "bare")):
        return None
    backend = r.name.split()[1]  # "member (sqlite) earn" -> "(sqlite)"
    phase = r.name.split()[-1]
    naive = [x for x in results if x.name.startswith("naive") and backend in x.name]
    same = [x for x in naive if x.name.endswith(phase)]
    found = same or naive
    return found[0] if found else None


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nEarnPoints / RedeemPoints, {args.concurrency} in flight, loopback, {args.members}"
        f" members, {args.history} earns of history each, SQLite synchronous={args.synchronous}"
    )
    print(
        f"{'server':<24} {'calls':>8} {'err':>5} {'QPS':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'QPS/naive':>10} {'CPU us/call':>12} {'batch':>6}"
    )
    for r in results:
        naive = _naive_of(r, results)
        ratio = f"{r.qps / naive.qps:>9.2f}x" if naive and naive.qps else f"{'':>10}"
        batch = f"{r.mean_batch:>6.1f}" if r.batches else f"{'':>6}"
        print(
            f"{r.name:<24} {r.calls:>8} {r.errors:>5} {r.qps:>9.0f} {r.pct(0.5):>8.2f}"
            f" {r.pct(0.99):>8.2f} {ratio} {r.cpu_us_per_call:>12.0f} {batch}",
            flush=True,
        )


async def _backend(
    backend: str,
    base_url: str | None,
    tmp: Path,
    args: argparse.Namespace,
    env: dict[str, str],
    server_core: int | None,
    member_first: bool,
) -> list[Result]:
    """The naive and the member server on one back end (in the order given)."""
    out: dict[str, list[Result]] = {}
    for kind in ("member", "naive") if member_first else ("naive", "member"):
        with throwaway_postgres(base_url) as pg_url:
            url = pg_url or f"sqlite+aiosqlite:///{tmp / f'{kind}-{uuid.uuid4().hex[:6]}.db'}"
            server = ServerProcess(kind, url, server_core, env)
            try:
                label = f"{kind} ({backend})"
                out[kind] = await points_phases(label, server, args, register=kind == "member")
            finally:
                server.stop()
            for r in out[kind]:
                r.batches = server.batches
    return [*out["naive"], *out["member"]]


async def one_round(
    args: argparse.Namespace, env: dict[str, str], server_core: int | None, index: int
) -> list[Result]:
    results: list[Result] = []
    bare = ServerProcess("bare", "", server_core, env)
    try:
        results.append(await echo_phase(bare, args))
    finally:
        bare.stop()
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    pg = None
    if not args.no_postgres:
        pg = os.environ.get("MARQUE_BENCH_POSTGRES_URL") or os.environ.get(
            "MARQUE_TEST_POSTGRES_URL"
        )
    if pg:
        backends.append(("postgres", pg))
    with tempfile.TemporaryDirectory(prefix="bench-member-") as tmp:
        for backend, base in backends:
            results += await _backend(
                backend, base, Path(tmp), args, env, server_core, member_first=index % 2 == 1
            )
    return results


async def run_all(args: argparse.Namespace, env: dict[str, str]) -> list[list[Result]]:
    """`--rounds` rounds, each bare, then naive and member on SQLite and PostgreSQL
    (interleaved, the naive/member order alternating, so a neighbour's load spreads over
    all servers instead of skewing one)."""
    server_core, client_cores = _cores()
    if client_cores:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, client_cores)
    rounds = []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}: load average {load_average()}", flush=True)
        rounds.append(await one_round(args, env, server_core, i))
        if args.rounds > 1:
            print_table(rounds[-1], args)
    return rounds


def median_result(runs: list[Result]) -> Result:
    """The run with the median QPS (its own latencies and CPU, not a blend)."""
    return sorted(runs, key=lambda r: r.qps)[len(runs) // 2]


def main() -> None:
    """Run the benchmark (or, with --serve, be one of its server subprocesses)."""
    parser = argparse.ArgumentParser(prog="python -m bench.member_earn", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument(
        "--history", type=int, default=0, help="earns booked per member before measuring"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions")
    parser.add_argument("--phases", default="earn,redeem", help="comma-separated: earn, redeem")
    parser.add_argument(
        "--synchronous",
        default="FULL",
        help="SQLite synchronous level of every server (MARQUE_SQLITE_SYNCHRONOUS)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--serve", choices=["bare", "naive", "member"], help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        pin_to_core(args.core)
        serve = {
            "bare": serve_bare,
            "naive": lambda: serve_naive(args.url),
            "member": lambda: serve_member(args.url),
        }[args.serve]
        asyncio.run(serve())
        return
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with tempfile.TemporaryDirectory(prefix="bench-member-var-") as var:
        # Server and client share one development key pair, in a private directory.
        os.environ.setdefault("MARQUE_VAR_DIR", var)
        env = {
            **os.environ,
            "MARQUE_LOG_LEVEL": "WARNING",
            "MARQUE_SQLITE_SYNCHRONOUS": args.synchronous.upper(),
        }
        try:
            rounds = asyncio.run(run_all(args, env))
        finally:
            if affinity is not None:
                os.sched_setaffinity(0, affinity)
    if len(rounds) > 1:
        print(f"\nmedian of {len(rounds)} rounds (by QPS), load average now {load_average()}")
    print_table([median_result(list(runs)) for runs in zip(*rounds, strict=True)], args)


if __name__ == "__main__":
    main()
