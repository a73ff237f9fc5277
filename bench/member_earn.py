"""EarnPoints throughput and p99 of the member service, beside a bare grpc.aio baseline.

Each server is its own subprocess (pinned to core 0 when the machine has more than one;
the load client runs on the others), on loopback only:
- `bare echo`: plain grpc.aio with a tiny Python servicer for TestingService.Echo, no
  interceptors, no database. The ceiling of one Python gRPC process here.
- `member earn (sqlite)`: the real member service through `mesh.server` with its whole
  chain (auth, validation, metrics, logging) and a full EarnPoints: idempotency record,
  member row lock, expiry check, ledger append, balance update, tier review, response
  with the member. SQLite in WAL mode, the service's default durability.
- `member earn (postgres)`: the same on PostgreSQL when `MARQUE_BENCH_POSTGRES_URL` or
  `MARQUE_TEST_POSTGRES_URL` is set (a throwaway database is created and dropped).

The client keeps `--concurrency` calls in flight (default 64) for a warm-up and a bounded
measuring time, spreading earns over many members (one member's earns serialise on its
row lock by design), then prints QPS, p50, p99, each ratio to the bare baseline, and the
server process's CPU time per call (user + system, from /proc: the figure that does not
depend on what else the shared machine is doing). `--history N` books N earns per member
before measuring (an EarnPoints must cost the same on a long ledger as on a short one);
`--rounds N` repeats bare / SQLite / PostgreSQL N times interleaved and reports the
median round per server.

    python -m bench.member_earn [--seconds 5] [--warmup 1] [--concurrency 64] [--members 256]
                                [--history 0] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.harness import (
    LOOPBACK,
    ROOT,
    LatencyResult,
    bearer_metadata,
    cpu_seconds_or_nan,
    keep_in_flight,
    pin_to_core,
    serve_command,
    server_settings,
    start_server,
    stop_server,
    wait_for_term,
)

SERVER_CMD = ["-m", "bench.member_earn"]


# ---------------------------------------------------------------------------- servers


async def _serve_until_term(stop: Callable[[], Awaitable[None]], port: int) -> None:
    print(f"READY {port}", flush=True)
    await wait_for_term()
    await stop()


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


async def serve_member(url: str) -> None:
    """The real member service, as `make run` starts it but on a free port."""
    from mesh.server import start
    from services.member.app import build_spec

    settings = server_settings("member", url)
    running = await start(build_spec(), settings)
    await _serve_until_term(lambda: running.stop(1.0), running.port)


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

    def stop(self) -> None:
        stop_server(self.proc, timeout=30)


# ---------------------------------------------------------------------------- load


@dataclass
class Result(LatencyResult):
    """What one load phase measured."""

    cpu_seconds: float = float("nan")

    @property
    def cpu_us_per_call(self) -> float:
        """Server process CPU (user + system) per measured call, in microseconds."""
        return self.cpu_seconds / self.calls * 1e6 if self.calls else float("nan")


async def drive(
    name: str,
    call: Callable[[int], Awaitable[Any]],
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    server_pid: int | None = None,
) -> Result:
    """Keep `concurrency` calls in flight for warmup + seconds; measure after the warm-up
    (calls, latencies and, given `server_pid`, the server's CPU time)."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds
    cpu: list[float] = []

    async def cpu_probe() -> None:
        if server_pid is None:
            return
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu.append(cpu_seconds_or_nan(server_pid))

    def on_error(t0: float) -> None:
        nonlocal errors
        if t0 >= measure_from:
            errors += 1

    def on_answer(t0: float, done: float) -> None:
        if t0 >= measure_from:
            latencies.append(done - t0)

    probe = asyncio.create_task(cpu_probe())
    await keep_in_flight(call, concurrency, end, on_error, on_answer)
    await probe
    cpu_seconds = float("nan")
    if server_pid is not None and cpu:
        cpu_seconds = cpu_seconds_or_nan(server_pid) - cpu[0]
    return Result(
        name, len(latencies), errors, time.perf_counter() - measure_from, latencies, cpu_seconds
    )


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


async def earn_phase(label: str, server: ServerProcess, args: argparse.Namespace) -> Result:
    from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc

    from mesh.identity import Caller, Kind
    from mesh.keys import mint_token

    md = bearer_metadata(mint_token(Caller(Kind.SERVICE, "bench", service="bench")))
    run = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(server.target) as ch:
        stub = member_service_pb2_grpc.MemberServiceStub(ch)
        members: list[str] = []
        for i in range(args.members):
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

        def earn(n: int, prefix: str) -> Awaitable[Any]:
            req = member_service_pb2.EarnPointsRequest(
                member_id=members[n % len(members)],
                points=10 + n % 90,
                reason="service visit",
                source_ref=f"ro-{n}",
                request_id=f"{prefix}-{run}-{n}",
            )
            return stub.EarnPoints(req, metadata=md, timeout=30)

        # A ledger history per member first, so the measured earns land on long ledgers.
        history = iter(range(args.history * len(members)))

        async def fill() -> None:
            for n in history:
                await earn(n, "history")

        await asyncio.gather(*(fill() for _ in range(args.concurrency)))

        return await drive(
            label,
            lambda n: earn(n, "earn"),
            concurrency=args.concurrency,
            warmup=args.warmup,
            seconds=args.seconds,
            server_pid=server.proc.pid,
        )


# ---------------------------------------------------------------------------- postgres


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    """A fresh PostgreSQL database beside the configured one, dropped afterwards."""
    base = os.environ.get("MARQUE_BENCH_POSTGRES_URL") or os.environ.get("MARQUE_TEST_POSTGRES_URL")
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


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    base = results[0]
    print(
        f"\nEarnPoints vs bare grpc.aio echo, {args.concurrency} in flight, loopback,"
        f" {args.members} members, {args.history} earns of history each"
    )
    print(
        f"{'server':<24} {'calls':>8} {'err':>5} {'QPS':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'QPS/bare':>9} {'p99/bare':>9} {'CPU us/call':>12}"
    )
    for r in results:
        qr = r.qps / base.qps if base.qps else float("nan")
        pr = r.pct(0.99) / base.pct(0.99) if base.latencies else float("nan")
        print(
            f"{r.name:<24} {r.calls:>8} {r.errors:>5} {r.qps:>9.0f} {r.pct(0.5):>8.2f}"
            f" {r.pct(0.99):>8.2f} {qr:>9.2f} {pr:>9.2f} {r.cpu_us_per_call:>12.0f}"
        )


async def one_round(
    args: argparse.Namespace, env: dict[str, str], server_core: int | None
) -> list[Result]:
    results: list[Result] = []
    bare = ServerProcess("bare", "", server_core, env)
    try:
        results.append(await echo_phase(bare, args))
    finally:
        bare.stop()
    with tempfile.TemporaryDirectory(prefix="bench-member-") as tmp:
        sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'member.db'}"
        member = ServerProcess("member", sqlite_url, server_core, env)
        try:
            results.append(await earn_phase("member earn (sqlite)", member, args))
        finally:
            member.stop()
    with throwaway_postgres() as pg_url:
        if pg_url:
            member = ServerProcess("member", pg_url, server_core, env)
            try:
                results.append(await earn_phase("member earn (postgres)", member, args))
            finally:
                member.stop()
    return results


async def run_all(args: argparse.Namespace, env: dict[str, str]) -> list[list[Result]]:
    """`--rounds` rounds, each bare, SQLite, PostgreSQL in turn (interleaved, so a
    neighbour's load spreads over all servers instead of skewing one)."""
    server_core, client_cores = _cores()
    if client_cores:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, client_cores)
    rounds = []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}: load average {load_average()}", flush=True)
        rounds.append(await one_round(args, env, server_core))
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
    parser.add_argument("--serve", choices=["bare", "member"], help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        pin_to_core(args.core)
        asyncio.run(serve_bare() if args.serve == "bare" else serve_member(args.url))
        return
    with tempfile.TemporaryDirectory(prefix="bench-member-var-") as var:
        # Server and client share one development key pair, in a private directory.
        os.environ.setdefault("MARQUE_VAR_DIR", var)
        env = {**os.environ, "MARQUE_LOG_LEVEL": "WARNING"}
        rounds = asyncio.run(run_all(args, env))
    if len(rounds) > 1:
        print(f"\nmedian of {len(rounds)} rounds (by QPS), load average now {load_average()}")
    print_table([median_result(list(runs)) for runs in zip(*rounds, strict=True)], args)


if __name__ == "__main__":
    main()
