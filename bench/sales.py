"""The sales service's speed targets (issue 14), each beside a baseline of the same run.

Servers run in their own subprocess pinned to core 0 (the Python load client on the other),
on loopback: `bare echo` (plain grpc.aio Echo: CalculateQuote's bar, >= 50% of its QPS),
`naive` (plain grpc.aio CreateOrder and PayDeposit, one SQLAlchemy async INSERT + commit
each: the orders' bar, >= its QPS), `sales` (the real service through `mesh.server`, its
events in the outbox relayed to a nats-server the run starts, as `make run` has it).
Set-up, not measured: a trim, 64 opportunities opened by lead's LeadCreated handler
(`services.sales.events.open_or_move` in a `mesh.unit_of_work.transaction` against the
server's database), 10 test-drive cars, a quote per opportunity. Then, 64 in flight:
CalculateQuote of a 60-month equal-instalment loan; `--contests` rounds of 64 BookTestDrive
at once for the 10 cars at one hour (exactly 10 win, 54 FAILED_PRECONDITION: asserted),
after one unmeasured round (the warm-up the other phases have);
CreateOrder then PayDeposit (its etag) in pairs, beside the naive service doing the same.
SQLite (WAL, synchronous=FULL), and PostgreSQL with MARQUE_BENCH_POSTGRES_URL (a throwaway
database per server). Bounded in time and count.

    python -m bench.sales [--seconds 5] [--warmup 1] [--contests 20] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from marque.common.v1 import money_pb2
from marque.sales.v1 import sales_pb2, sales_service_pb2_grpc
from marque.sales.v1 import sales_service_pb2 as pb
from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench import harness as h
from bench import member_earn
from bench.member_earn import Result, drive, echo_phase, serve_bare, throwaway_postgres
from mesh import vin as vins
from mesh.db import Database
from mesh.identity import Caller, Kind
from mesh.keys import load_keys, mint_token
from mesh.unit_of_work import UnitOfWork, transaction
from services.sales import events
from services.sales.store.tables import OUTBOX, outbox

SERVER_CMD = ["-m", "bench.sales"]
CARS = 10
ORDER_EVENTS = ("OrderPlaced", "OrderConfirmed")


class _Base(DeclarativeBase):
    pass


class NaiveRow(_Base):
    """The naive baseline's one table: an order or a deposit payment as one ORM row."""

    __tablename__ = "naive_order_rows"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # order, deposit
    ref: Mapped[str] = mapped_column(String(128))  # the quote, the order
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


async def serve_naive(url: str) -> None:
    """CreateOrder and PayDeposit, one ORM insert + commit each: the bar to match."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = h.naive_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.drop_all)
        await conn.run_sync(_Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    counter = iter(range(1, 1 << 62))

    async def insert(kind: str, ref: str, money: Any) -> str:
        fen, now = money.units * 100 + money.nanos // 10_000_000, dt.datetime.now(dt.UTC)
        row = NaiveRow(id=f"N{next(counter):012d}", kind=kind, ref=ref, amount_fen=fen,
                       create_time=now)  # fmt: skip
        async with sessions() as s:
            s.add(row)
            await s.commit()
        return row.id

    class Naive(sales_service_pb2_grpc.SalesServiceServicer):
        async def CreateOrder(self, request: Any, context: Any) -> Any:
            order_id = await insert("order", request.quote_id, request.deposit)
            return pb.CreateOrderResponse(
                order=sales_pb2.Order(id=order_id, quote_id=request.quote_id, etag="1")
            )

        async def PayDeposit(self, request: Any, context: Any) -> Any:
            await insert("deposit", request.order_id, request.amount)
            return pb.PayDepositResponse(order=sales_pb2.Order(id=request.order_id))

    server = grpc.aio.server()
    sales_service_pb2_grpc.add_SalesServiceServicer_to_server(Naive(), server)
    port = server.add_insecure_port(f"{h.LOOPBACK}:0")
    await server.start()
    print(f"READY {port}", flush=True)
    await h.wait_for_term()
    await server.stop(0)
    await engine.dispose()


async def serve_sales(url: str) -> None:
    """The real sales service, as `make run` starts it but on free ports, its events
    relayed to the run's nats-server (MARQUE_NATS_URL)."""
    from mesh.server import start
    from services.sales.app import build_spec

    running = await start(build_spec(events=True), h.server_settings("sales", url))
    print(f"READY {running.port}", flush=True)
    await h.wait_for_term()
    await running.stop(1.0)


class ServerProcess:
    """A server subprocess: started with `--serve`, stopped with SIGTERM."""

    def __init__(self, kind: str, url: str, core: int | None, env: dict[str, str]) -> None:
        cmd = h.serve_command(SERVER_CMD, kind, url, core)
        try:
            self.proc, line = h.start_server(
                cmd, "READY", on_failure=lambda p: p.kill(), cwd=h.ROOT, env=env, bufsize=1
            )
        except RuntimeError as e:
            raise RuntimeError(f"{kind} server did not start: {e}") from None
        self.target = f"{h.LOOPBACK}:{line[1]}"

    def stop(self) -> None:
        h.stop_server(self.proc, timeout=30)


def _cny(yuan: int) -> Any:
    return money_pb2.Money(currency_code="CNY", units=yuan)


def _vin(n: int) -> str:
    body = f"LSVAU2180N{n:07d}"  # a valid check digit in place 9
    return body[:8] + vins.check_digit(body) + body[9:]


class Client:
    """The bench's calls to one sales (or naive) server, with the dealer's token."""

    def __init__(self, stub: Any, md: Any, oem: Any) -> None:
        self.stub, self.md, self.oem = stub, md, oem
        self.run = uuid.uuid4().hex[:8]
        self.opportunities: list[str] = []
        self.quotes: list[str] = []
        self.cars = [_vin(n) for n in range(1, CARS + 1)]

    async def set_up(self, url: str, customers: int) -> None:
        """The trim, the opportunities (lead's LeadCreated handler), cars and quotes."""
        trim = sales_pb2.Trim(
            model_code="M5", trim_code="M5-LR", name="M5 Long Range", price=_cny(226000),
            nev_listed=True, effective_from="2026-01-01",
            options=[sales_pb2.TrimOption(code="PILOT", name="Pilot pack", price=_cny(11300))],
        )  # fmt: skip
        await self.stub.PutTrim(pb.PutTrimRequest(trim=trim), metadata=self.oem, timeout=30)

        async def work(uow: UnitOfWork) -> list[str]:
            now, leads = dt.datetime.now(dt.UTC), [f"lead-{self.run}-{i}" for i in range(customers)]
            return [(await events.open_or_move(uow, x, "D1", "Marque", now)).id for x in leads]

        db = Database(url)
        try:
            self.opportunities = await transaction(db, work, outbox=OUTBOX)
        finally:
            await db.dispose()
        for v in self.cars:
            car = sales_pb2.TestDriveCar(vin=v, model_code="M5", active=True)
            put = pb.PutTestDriveCarRequest(car=car)
            await self.stub.PutTestDriveCar(put, metadata=self.md, timeout=30)
        for i, opp in enumerate(self.opportunities):
            spec = sales_pb2.QuoteSpec(trim_code="M5-LR", option_codes=["PILOT"])
            req = pb.CreateQuoteRequest(
                opportunity_id=opp, member_id=f"m{i}", request_id=f"q-{self.run}-{i}", quote=spec
            )
            reply = await self.stub.CreateQuote(req, metadata=self.md, timeout=30)
            self.quotes.append(reply.quote.id)


async def quote_phase(client: Client, pid: int, label: str, args: argparse.Namespace) -> Result:
    """CalculateQuote of a 60-month equal-instalment loan, the down payment varying."""

    def call(n: int) -> Awaitable[Any]:
        loan = sales_pb2.Financing(
            down_payment=_cny(50000 + n % 5000), months=60, apr="0.0399",
            method=sales_pb2.REPAYMENT_METHOD_EQUAL_INSTALMENT,
        )  # fmt: skip
        spec = sales_pb2.QuoteSpec(trim_code="M5-LR", option_codes=["PILOT"], financing=loan)
        req = pb.CalculateQuoteRequest(quote=spec)
        return client.stub.CalculateQuote(req, metadata=client.md, timeout=30)

    return await _drive(f"CalculateQuote 60 m ({label})", call, pid, args)


def _drive(
    name: str, call: Callable[[int], Awaitable[Any]], pid: int, args: argparse.Namespace
) -> Awaitable[Result]:
    kw = {"concurrency": args.concurrency, "warmup": args.warmup, "seconds": args.seconds}
    return drive(name, call, server_pid=pid, **kw)


async def contest(client: Client, k: int, concurrency: int) -> tuple[int, int, list[float]]:
    """Round `k`: `concurrency` bookings of the 10 cars at one hour (Shanghai), at once.
    Returns (booked, refused FAILED_PRECONDITION, latencies); asserts 10 and the rest."""
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1 + k // 6)
    start = dt.datetime.combine(day, dt.time(10 + k % 6 - 8), tzinfo=dt.UTC)  # 10:00-15:00
    latencies: list[float] = []

    async def one(i: int) -> bool:
        opp, car = client.opportunities[i % len(client.opportunities)], client.cars[i % CARS]
        req = pb.BookTestDriveRequest(opportunity_id=opp, vin=car, consultant_id=f"sc-{k}-{i}",
                                      request_id=f"td-{client.run}-{k}-{i}")  # fmt: skip
        req.start_time.FromDatetime(start)
        t0 = time.perf_counter()
        try:
            await client.stub.BookTestDrive(req, metadata=client.md, timeout=30)
            return True
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            return False
        finally:
            latencies.append(time.perf_counter() - t0)

    won = await asyncio.gather(*(one(i) for i in range(concurrency)))
    booked = sum(won)
    assert booked == CARS, f"round {k}: {booked} bookings of {CARS} slots"
    return booked, len(won) - booked, latencies


@dataclass
class Booked(Result):
    """The contests: `calls` bookings tried, `booked` of them won; `warmup_max` the slowest
    booking of the unmeasured first contest (seconds)."""

    booked: int = 0
    warmup_max: float = 0.0


async def booking_phase(client: Client, label: str, args: argparse.Namespace) -> Booked:
    """`args.contests` measured contests after one unmeasured (the other phases' warm-up:
    the server's first batch pays its connection and statement compilation), whose
    slowest booking is printed beside the figures."""
    _, _, first = await contest(client, args.contests, args.concurrency)  # a later hour
    out = Booked(f"BookTestDrive ({label})", 0, 0, 0.0, [], warmup_max=max(first))
    with h.quiet_collector():
        t0 = time.perf_counter()
        for k in range(args.contests):
            booked, refused, latencies = await contest(client, k, args.concurrency)
            out.calls, out.booked = out.calls + booked + refused, out.booked + booked
            out.latencies += latencies
        out.seconds = time.perf_counter() - t0
    return out


async def order_phase(client: Client, pid: int, label: str, args: argparse.Namespace) -> Result:
    """CreateOrder, then PayDeposit on it: a pair per call; QPS counts both calls."""

    async def call(n: int) -> None:
        quote = client.quotes[n % len(client.quotes)]
        req = pb.CreateOrderRequest(
            quote_id=quote, deposit=_cny(5000), request_id=f"o-{client.run}-{n}"
        )
        order = (await client.stub.CreateOrder(req, metadata=client.md, timeout=30)).order
        paid = pb.PayDepositRequest(order_id=order.id, amount=_cny(5000), etag=order.etag)
        await client.stub.PayDeposit(paid, metadata=client.md, timeout=30)

    pairs = await _drive(f"{label} CreateOrder+PayDeposit", call, pid, args)
    pairs.seconds /= 2  # two calls per pair: QPS of calls
    pairs.cpu_seconds /= 2
    return pairs


async def count_events(url: str) -> str:
    """The order events written to the sales outbox, and how many the relay has sent."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            q = sa.select(outbox.c.type, sa.func.count(), sa.func.count(outbox.c.sent_time))
            rows = list(await conn.execute(q.group_by(outbox.c.type)))
    finally:
        await db.dispose()
    kept = [(t.rpartition(".")[2], n, s) for t, n, s in rows]
    return ", ".join(f"{t} {n} ({s} relayed)" for t, n, s in kept if t in ORDER_EVENTS)


def _tokens(env: dict[str, str]) -> tuple[Any, Any]:
    """The dealer D1's metadata and the OEM's, signed with the servers' dev key."""
    keys = load_keys(env)
    dealer, oem = Caller(Kind.DEALER, "D1-staff", dealer_id="D1"), Caller(Kind.OEM, "staff-1")
    return h.bearer_metadata(mint_token(dealer, keys=keys)), h.bearer_metadata(
        mint_token(oem, keys=keys)
    )


async def sales_phases(
    label: str, url: str, env: dict[str, str], core: int | None, args: argparse.Namespace
) -> tuple[list[Result], str]:
    """Set up, then CalculateQuote, BookTestDrive contests and orders on a sales server."""
    server = ServerProcess("sales", url, core, env)
    try:
        async with grpc.aio.insecure_channel(server.target) as ch:
            md, oem = _tokens(env)
            client = Client(sales_service_pb2_grpc.SalesServiceStub(ch), md, oem)
            await client.set_up(url, args.concurrency)
            pid = server.proc.pid
            results = [
                await quote_phase(client, pid, label, args),
                await booking_phase(client, label, args),
                await order_phase(client, pid, f"sales ({label})", args),
            ]
            await asyncio.sleep(1.0)  # the relay's next pass
            return results, await count_events(url)
    finally:
        server.stop()


async def naive_phase(
    label: str, url: str, env: dict[str, str], core: int | None, args: argparse.Namespace
) -> Result:
    server = ServerProcess("naive", url, core, env)
    try:
        async with grpc.aio.insecure_channel(server.target) as ch:
            client = Client(sales_service_pb2_grpc.SalesServiceStub(ch), (), ())
            client.quotes = [f"quo_naive_{i}" for i in range(args.concurrency)]
            return await order_phase(client, server.proc.pid, f"naive ({label})", args)
    finally:
        server.stop()


def print_table(label: str, rows: list[Result], events: str) -> None:
    echo, quote, booking, naive, orders = rows
    assert isinstance(booking, Booked)

    def of(r: Result, base: Result, fmt: str) -> str:
        return format(r.qps / base.qps, fmt) if base.qps else "n/a"

    ratios = ["", f"{of(quote, echo, '.0%')} of echo", f"{booking.booked} booked", "1.00x",
              f"{of(orders, naive, '.2f')}x naive"]  # fmt: skip
    print(f"\n{label}, load average {member_earn.load_average()}")
    print(f"{'server':<38} {'calls':>7} {'err':>4} {'QPS':>7} {'p50 ms':>7} {'p99 ms':>7}"
          f" {'CPU us':>7} {'ratio':>14}")  # fmt: skip
    for r, ratio in zip(rows, ratios, strict=True):
        calls = r.calls * (2 if r in (naive, orders) else 1)  # a pair is two calls
        qps, cpu = ("", "") if r is booking else (f"{r.qps:.0f}", f"{r.cpu_us_per_call:.0f}")
        print(f"{r.name:<38} {calls:>7} {r.errors:>4} {qps:>7} {r.pct(0.5):>7.1f}"
              f" {r.pct(0.99):>7.1f} {cpu:>7} {ratio:>14}", flush=True)  # fmt: skip
    refused = booking.calls - booking.booked
    print(f"  BookTestDrive: {booking.booked} of {booking.calls} booked, {refused} refused "
          f"FAILED_PRECONDITION ({booking.calls // 64} contests for {CARS} cars; the unmeasured "
          f"warm-up contest's slowest {booking.warmup_max * 1000:.0f} ms)")  # fmt: skip
    print(f"  events written: {events}")


async def run(args: argparse.Namespace, env: dict[str, str]) -> None:
    from mesh.nats_server import NatsServer

    core, client_cores = member_earn._cores()
    if client_cores:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, client_cores)
    tmp = Path(env["MARQUE_VAR_DIR"])
    nats = NatsServer(tmp / "nats", port=0, monitor_port=0, mqtt_port=0, log_path=tmp / "nats.log")
    nats.start()
    env["MARQUE_NATS_URL"] = nats.url
    try:
        bare = ServerProcess("bare", "", core, env)
        try:
            echo = await echo_phase(bare, args)  # type: ignore[arg-type]
        finally:
            bare.stop()
        backends = [("SQLite", None), ("PostgreSQL", h.bench_postgres_url(args.no_postgres))]
        for label, base in backends:
            if label == "PostgreSQL" and not base:
                continue
            with throwaway_postgres(base) as pg_sales, throwaway_postgres(base) as pg_naive:
                sales_url = pg_sales or f"sqlite+aiosqlite:///{tmp / f'sales-{label}.db'}"
                naive_url = pg_naive or f"sqlite+aiosqlite:///{tmp / f'naive-{label}.db'}"
                naive = await naive_phase(label, naive_url, env, core, args)
                (quote, booking, orders), events = await sales_phases(
                    label, sales_url, env, core, args
                )
            print_table(label, [echo, quote, booking, naive, orders], events)
    finally:
        nats.stop()


def main() -> None:
    """Run the benchmark (or, with --serve, be one of its server subprocesses)."""
    parser = argparse.ArgumentParser(prog="python -m bench.sales", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--contests", type=int, default=20, help="BookTestDrive rounds")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--serve", choices=["bare", "naive", "sales"], help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        h.pin_to_core(args.core)
        serve: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "bare": serve_bare,
            "naive": lambda: serve_naive(args.url),
            "sales": lambda: serve_sales(args.url),
        }
        asyncio.run(serve[args.serve]())
        return
    with h.server_env("bench-sales-") as env:
        asyncio.run(run(args, env))


if __name__ == "__main__":
    main()
