"""Costs as one member's ledger grows (issue 17): a busy member (a dealer's shared account, a
campaign's pool) with 0, 10k and 100k ledger entries, on SQLite and on PostgreSQL, each
figure with its ratio to the empty ledger's.

For each back end, one real member service per size (`bench.member_earn`'s `member`
server: the whole mesh chain, points committed in groups) in its own subprocess pinned to
core 0 (the client runs on the others), each on a fresh database, all up at once. Each
registers one member and books its history as customers would: EarnPoints at 64 in flight,
`--sizes` entries. Then, `--rounds` times, each call on every server in turn (each figure
is the best round's: on a shared machine, the least disturbed):

(The "empty" ledger is `--base` entries, 50: a full page of ListPointTransactions, and a
lot for the expiry path to expire.)

- GetMember and ListPointTransactions (the newest page of 50), one call in flight, over
  gRPC: the interactive reads (p99 target: under 50 ms);
- the expiry path, in this process on the service's database: `accounts.settle` of the
  member at the moment its first lot is due (its oldest credit's expiry: the lots due then
  expire, the ledger's next expiry is found), in a transaction rolled back each time, so
  every call does the same work; and `accounts.refresh_qualifying` at the moment the first
  credit leaves the 12-month window (the cached qualifying points ran out);
- EarnPoints for the member at `--concurrency` in flight for `--earn-seconds`, after the
  reads, `--rounds` times (the sizes in turn, the largest first in the second round): each
  round adds QPS x seconds entries (~12k) to the ledger it measures, the empty one too.

Printed: QPS, p50, p99 (ms), the server's CPU per call (gRPC calls), and each size's QPS
(and CPU, as empty / N) as the ratio of the empty ledger's; target >= 0.9. PostgreSQL runs
when `MARQUE_BENCH_POSTGRES_URL` or `MARQUE_TEST_POSTGRES_URL` is set (throwaway databases,
dropped afterwards; the service runs no ANALYZE and this machine's PostgreSQL no
autovacuum: the tables are as the writes leave them). Everything listens on loopback, every
loop is bounded, the run stops by itself.

    python -m bench.member_scale [--sizes 10000,100000] [--base 50] [--seconds 5] [--rounds 2]
                                 [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import inspect
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa

from bench.harness import (
    ROOT,
    LatencyResult,
    bearer_metadata,
    bench_postgres_url,
    quiet_collector,
    server_env,
)
from bench.lead_submit import _pin_client
from bench.member_earn import Result, ServerProcess, drive, throwaway_postgres

TARGET_RATIO = 0.9
TARGET_P99_MS = 50.0
EARN = "EarnPoints (64 in flight)"
GET = "GetMember"
LIST = "ListPointTransactions"
EXPIRY = "expiry path (settle)"
QUALIFYING = "qualifying cache ran out"
INTERACTIVE = (GET, LIST, EXPIRY, QUALIFYING)


class Side:
    """One size: its server, database and busy member."""

    def __init__(self, size: int, url: str, server: ServerProcess) -> None:
        self.size, self.url, self.server = size, url, server
        self.member_id = ""
        self.best: dict[str, Result] = {}
        self.channel = grpc.aio.insecure_channel(server.target)

    def keep(self, r: Result) -> None:
        if r.name not in self.best or r.qps > self.best[r.name].qps:
            self.best[r.name] = r


async def earn_calls(side: Side, md: Any, prefix: str) -> Callable[[int], Awaitable[Any]]:
    from marque.member.v1 import member_service_pb2, member_service_pb2_grpc

    stub = member_service_pb2_grpc.MemberServiceStub(side.channel)

    def call(n: int) -> Awaitable[Any]:
        req = member_service_pb2.EarnPointsRequest(
            member_id=side.member_id,
            points=10 + n % 90,
            reason="campaign",
            source_ref=f"c-{n}",
            request_id=f"{prefix}-{n}",
        )
        return stub.EarnPoints(req, metadata=md, timeout=60)

    return call


async def load(side: Side, md: Any, concurrency: int) -> None:
    """Register the busy member and book its history: EarnPoints at `concurrency`."""
    from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc

    async with grpc.aio.insecure_channel(side.server.target) as ch:
        stub = member_service_pb2_grpc.MemberServiceStub(ch)
        resp = await stub.RegisterMember(
            member_service_pb2.RegisterMemberRequest(
                identity=member_service_pb2.IdentityKey(
                    type=member_pb2.IDENTITY_TYPE_APP_USER_ID, value=f"busy-{side.size}"
                ),
                request_id=f"reg-{side.size}",
            ),
            metadata=md,
            timeout=10,
        )
        side.member_id = resp.member.id
    call = await earn_calls(side, md, "history")
    todo = iter(range(side.size))
    t0 = time.perf_counter()

    async def worker() -> None:
        for n in todo:
            await call(n)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    secs = time.perf_counter() - t0
    if side.size:
        print(f"    {side.size} entries booked in {secs:.1f} s ({side.size / secs:.0f}/s)")


async def read_phase(name: str, side: Side, md: Any, args: argparse.Namespace) -> Result:
    from marque.member.v1 import member_service_pb2, member_service_pb2_grpc

    async with grpc.aio.insecure_channel(side.server.target) as ch:
        stub = member_service_pb2_grpc.MemberServiceStub(ch)
        if name == GET:
            get = member_service_pb2.GetMemberRequest(member_id=side.member_id)

            def call(_n: int) -> Awaitable[Any]:
                return stub.GetMember(get, metadata=md, timeout=30)
        else:
            page = member_service_pb2.ListPointTransactionsRequest(
                member_id=side.member_id, page_size=50
            )

            def call(_n: int) -> Awaitable[Any]:
                return stub.ListPointTransactions(page, metadata=md, timeout=30)

        return await drive(
            name, call, concurrency=1, warmup=args.warmup, seconds=args.seconds,
            server_pid=side.server.proc.pid,
        )  # fmt: skip


async def earn_phase(side: Side, md: Any, args: argparse.Namespace, n: int) -> Result:
    call = await earn_calls(side, md, f"round{n}")
    return await drive(
        EARN, call, concurrency=args.concurrency, warmup=args.warmup, seconds=args.earn_seconds,
        server_pid=side.server.proc.pid,
    )  # fmt: skip


async def _moments(db: Any, member_id: str) -> tuple[dt.datetime, dt.datetime]:
    """When the member's first lot is due, and just after its first credit leaves the
    qualifying window."""
    from services.member.domain import tiers
    from services.member.domain.ledger import add_months
    from services.member.store.tables import point_transactions as pt

    async with db.engine.connect() as conn:
        first_expiry, first_earned = (
            await conn.execute(
                sa.select(sa.func.min(pt.c.expire_time), sa.func.min(pt.c.earned_time)).where(
                    pt.c.member_id == member_id
                )
            )
        ).one()
    leaves = add_months(first_earned, tiers.WINDOW_MONTHS) + dt.timedelta(microseconds=1)
    return first_expiry, leaves


async def in_process_calls(name: str, url: str, member_id: str, args: argparse.Namespace) -> Result:
    """The expiry path or the qualifying refresh, each call a transaction rolled back."""
    from mesh.db import Database
    from mesh.unit_of_work import UnitOfWork
    from services.member import accounts

    db = Database(url)
    refresh = accounts.refresh_qualifying
    with_cache = "cache" in inspect.signature(refresh).parameters
    try:
        due, leaves = await _moments(db, member_id)

        async def once() -> None:
            async with db.engine.connect() as conn:
                await conn.begin()
                uow = UnitOfWork(conn, is_sqlite=db.is_sqlite)
                row = await accounts.lock(uow, member_id)
                if name == EXPIRY:
                    await accounts.settle(uow, row, due)
                elif with_cache:
                    await refresh(uow, member_id, leaves, row.cache)
                else:  # the service before issue 17
                    await refresh(uow, member_id, leaves)
                await conn.rollback()

        return await _timed(name, once, args)
    finally:
        await db.dispose()


async def in_process_phase(
    name: str, side: Side, args: argparse.Namespace, env: dict[str, str]
) -> Result:
    """`in_process_calls` in a subprocess of its own on the client's cores (a call that
    never ends is stopped: the service before issue 17 replayed 100k entries in a time
    quadratic in the open lots), its latencies read back from its stdout."""
    cmd = [
        sys.executable, "-m", "bench.member_scale", "--in-process", name, "--url", side.url,
        "--member", side.member_id, "--seconds", str(args.seconds), "--warmup",
        str(args.warmup),
    ]  # fmt: skip
    limit = args.warmup + args.seconds + args.call_limit
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        print(f"    {name} at {side.size}: no call finished within {limit:.0f} s", flush=True)
        return Result(name, 0, 1, args.seconds, [])
    latencies = json.loads(out.decode().strip().splitlines()[-1])
    return Result(name, len(latencies), 0, args.seconds, latencies)


async def _timed(
    name: str, once: Callable[[], Awaitable[None]], args: argparse.Namespace
) -> Result:
    end_warmup = time.perf_counter() + args.warmup
    while time.perf_counter() < end_warmup:
        await once()
    latencies: list[float] = []
    with quiet_collector():
        start = time.perf_counter()
        while (t0 := time.perf_counter()) < start + args.seconds:
            await once()
            latencies.append(time.perf_counter() - t0)
    return Result(name, len(latencies), 0, time.perf_counter() - start, latencies)


def _cpu(r: LatencyResult) -> str:
    cpu = getattr(r, "cpu_us_per_call", float("nan"))
    return "     -" if cpu != cpu else f"{cpu:6.0f}"


def print_table(backend: str, sides: list[Side]) -> None:
    empty = sides[0]
    head = " | ".join(f"{s.size:>7} entries: QPS  p50 / p99 ms  cpu µs  ratio" for s in sides)
    print(f"  ({backend}) {'':<26} {head}", flush=True)
    for name in (GET, LIST, EXPIRY, QUALIFYING, EARN):
        cells, ok = [], True
        base = empty.best[name]
        for side in sides:
            r = side.best[name]
            ratio = r.qps / base.qps if base.qps else float("nan")
            fast = name not in INTERACTIVE or r.pct(0.99) < TARGET_P99_MS
            ok = ok and ratio >= TARGET_RATIO and fast
            cells.append(
                f"{r.qps:7.0f} {r.pct(0.5):6.1f} / {r.pct(0.99):6.1f} {_cpu(r)}  {ratio:5.2f}x"
            )
        errors = "/".join(str(s.best[name].errors) for s in sides)
        print(
            f"  {name:<36} {' | '.join(cells)}  {'ok' if ok else 'MISSED'}  errors {errors}",
            flush=True,
        )


@contextlib.contextmanager
def databases(base_url: str | None, sizes: list[int], tmp: Path) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        urls = []
        for size in sizes:
            pg = stack.enter_context(throwaway_postgres(base_url))
            urls.append(pg or f"sqlite+aiosqlite:///{tmp / f'member_scale_{size}.db'}")
        yield urls


async def run_backend(
    backend: str, base_url: str | None, args: argparse.Namespace, env: dict[str, str], md: Any
) -> None:
    sizes = [args.base, *args.sizes]
    core = 0 if (os.cpu_count() or 1) > 1 else None
    with databases(base_url, sizes, Path(env["MARQUE_VAR_DIR"])) as urls:
        sides: list[Side] = []
        try:
            for size, url in zip(sizes, urls, strict=True):
                sides.append(Side(size, url, ServerProcess("member", url, core, env)))
            print(f"  {backend}: loading", flush=True)
            for side in sides:
                await load(side, md, args.concurrency)
            for _ in range(args.rounds):
                for name in (GET, LIST):
                    for side in sides:
                        side.keep(await read_phase(name, side, md, args))
                for name in (EXPIRY, QUALIFYING):
                    for side in sides:
                        side.keep(await in_process_phase(name, side, args, env))
            # Last: each round adds QPS x seconds entries (~12k) to every ledger measured;
            # the sizes in turn, largest first in the second round.
            for n in range(args.rounds):
                for side in sides if n % 2 == 0 else sides[::-1]:
                    side.keep(await earn_phase(side, md, args, n))
            if base_url:
                for side in sides:
                    await print_dead_rows(side)
        finally:
            for side in sides:
                await side.channel.close(None)
                side.server.stop()
    print_table(backend, sides)


async def print_dead_rows(side: Side) -> None:
    """PostgreSQL (no autovacuum here): what the writes left of the member's row and the
    lots: updates, how many were HOT (no new index entries), dead row versions."""
    from mesh.db import Database

    db = Database(side.url)
    try:
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT relname, n_tup_upd, n_tup_hot_upd, n_dead_tup, n_live_tup"
                    " FROM pg_stat_user_tables WHERE relname IN ('members', 'point_lots')"
                    " ORDER BY relname"
                )
            )
            stats = "; ".join(
                f"{r[0]}: {r[1]} updates ({r[2]} HOT), {r[3]} dead, {r[4]} live" for r in rows
            )
    finally:
        await db.dispose()
    print(f"    {side.size} entries: {stats}", flush=True)


async def run(args: argparse.Namespace, env: dict[str, str], pg_url: str | None) -> None:
    from mesh.identity import Caller, Kind
    from mesh.keys import load_keys, mint_token

    token = mint_token(Caller(Kind.SERVICE, "bench", service="bench"), keys=load_keys(env))
    md = bearer_metadata(token)
    if (os.cpu_count() or 1) > 1:
        _pin_client(0)
    print(
        f"One busy member's ledger at {args.base} and {args.sizes} entries: member service"
        f" pinned to core 0; reads and the in-process paths one at a time, EarnPoints at"
        f" {args.concurrency} in flight; {args.seconds:.0f} s after {args.warmup:.1f} s"
        f" warm-up (EarnPoints {args.earn_seconds:.0f} s), best of {args.rounds}",
        flush=True,
    )
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if pg_url:
        backends.append(("postgres", pg_url))
    for backend, base_url in backends:
        await run_backend(backend, base_url, args, env, md)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.member_scale", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="ledger entries (N)")
    parser.add_argument("--base", type=int, default=50, help="entries of the 'empty' ledger")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per call")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per call")
    parser.add_argument("--concurrency", type=int, default=64, help="EarnPoints in flight")
    parser.add_argument("--earn-seconds", type=float, default=3.0, help="measured EarnPoints")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (1-3), best")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--call-limit", type=float, default=60.0, help="seconds an in-process phase may overrun"
    )
    parser.add_argument("--in-process", choices=[EXPIRY, QUALIFYING], help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--member", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        r = asyncio.run(in_process_calls(args.in_process, args.url, args.member, args))
        print(json.dumps(r.latencies), flush=True)
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    if not args.sizes or min(args.sizes) <= args.base or max(args.sizes) > 1_000_000:
        parser.error("--sizes: entry counts above --base (>= 1), up to 1,000,000")
    if args.base < 1:
        parser.error("--base: at least 1 (the expiry path needs a lot)")
    if not 1 <= args.rounds <= 3:
        parser.error("--rounds must be 1 to 3")
    pg_url = bench_postgres_url(args.no_postgres)
    with server_env("marque-bench-member-scale-") as env:
        asyncio.run(run(args, env, pg_url))


if __name__ == "__main__":
    main()
