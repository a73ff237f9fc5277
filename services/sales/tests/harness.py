"""SalesService over a real in-process grpc.aio server (mesh.server.start), on SQLite and
PostgreSQL through the `database_url` fixture: the harness every servicer test uses.
Tokens are minted for each principal, so the mesh's auth, access policy and validation run
as in production. Time is a fake clock injected into build_spec; events are written to the
outbox but not relayed (`events=False`: no NATS), so tests read the rows (`outbox()`). The
`sales` fixture (conftest.py) serves one.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from grpc_status import rpc_status
from marque.common.v1 import money_pb2
from marque.sales.v1 import (
    sales_pb2,
    sales_service_pb2,
    sales_service_pb2_grpc,
)

from mesh.config import Settings
from mesh.db import Database
from mesh.events.settings import EventSettings
from mesh.identity import Caller, Kind
from mesh.keys import mint_token
from mesh.server import start
from mesh.unit_of_work import UnitOfWork, transaction
from services.sales import events
from services.sales.app import build_spec
from services.sales.domain.config import SalesConfig
from services.sales.store.tables import OUTBOX, outbox

# google.rpc ships no type stubs; imported dynamically so mypy sees a plain module.
error_details_pb2: Any = importlib.import_module("google.rpc.error_details_pb2")

OEM = Caller(Kind.OEM, "staff-1")
SERVICE = Caller(Kind.SERVICE, "sales", service="sales")
CUSTOMER = Caller(Kind.CUSTOMER, "app-m1", member_id="m1")
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in Shanghai


def cny(amount: str) -> money_pb2.Money:
    units, _, cents = amount.partition(".")
    return money_pb2.Money(currency_code="CNY", units=int(units),
                           nanos=int((cents or "0").ljust(2, "0")) * 10_000_000)  # fmt: skip


def yuan(m: money_pb2.Money) -> str:
    """An amount as "226000.00"."""
    return f"{m.units}.{abs(m.nanos) // 10_000_000:02d}"


# A listed new-energy trim at 226,000 CNY with two options, in effect from 2026-01-01.
TRIM = sales_pb2.Trim(
    model_code="M5",
    trim_code="M5-LR",
    name="M5 Long Range",
    price=cny("226000"),
    nev_listed=True,
    effective_from="2026-01-01",
    options=[
        sales_pb2.TrimOption(code="PAINT-RED", name="Red paint", price=cny("4520")),
        sales_pb2.TrimOption(code="PILOT", name="Pilot pack", price=cny("11300")),
    ],
)


def dealer(dealer_id: str) -> Caller:
    return Caller(Kind.DEALER, f"{dealer_id}-staff", dealer_id=dealer_id)


def md(caller: Caller) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(caller)}"),)


class Clock:
    """A settable clock for the server."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Harness:
    stub: sales_service_pb2_grpc.SalesServiceStub
    db: Database
    clock: Clock
    seq: int = 0

    def rid(self) -> str:
        self.seq += 1
        return f"req-{self.seq}"

    async def open_opportunity(
        self, lead_id: str = "lead_1", dealer_id: str = "D1", model: str = "Marque"
    ) -> str:
        """What lead's LeadCreated does: the dealer's opportunity for the lead (its id)."""

        async def work(uow: UnitOfWork) -> str:
            opp = await events.open_or_move(uow, lead_id, dealer_id, model, self.clock.now)
            return opp.id

        return await transaction(self.db, work, outbox=OUTBOX)

    async def put_trim(self, trim: sales_pb2.Trim | None = None) -> sales_pb2.Trim:
        """A price-book entry (OEM)."""
        resp = await self.stub.PutTrim(
            sales_service_pb2.PutTrimRequest(trim=trim or TRIM), metadata=md(OEM)
        )
        return resp.trim

    async def count(self, table: sa.Table) -> int:
        async with self.db.engine.connect() as conn:
            q = sa.select(sa.func.count()).select_from(table)
            return int((await conn.execute(q)).scalar_one())

    async def outbox(self) -> list[tuple[str, str, bytes]]:
        """The outbox rows, oldest first: (event type, subject id, payload)."""
        t = outbox.c
        q = sa.select(t.type, t.aggregate, t.payload).order_by(t.seq)
        async with self.db.engine.connect() as conn:
            return [(r.type, r.aggregate, r.payload) for r in await conn.execute(q)]


@asynccontextmanager
async def serve(
    database_url: str,
    config: SalesConfig | None = None,
    nats_url: str = "",
    **settings_kw: Any,
) -> AsyncIterator[Harness]:
    """A served SalesService; with `nats_url`, its relay and consumers run against it."""
    clock = Clock(T0)
    settings = Settings(
        service="sales",
        grpc_port=0,
        metrics_port=0,
        database_url=database_url,
        **settings_kw,
    )
    event_settings = EventSettings.from_env({"MARQUE_NATS_URL": nats_url}) if nats_url else None
    spec = build_spec(
        config=config or SalesConfig(),
        clock=clock,
        events=bool(nats_url),
        event_settings=event_settings,
    )
    running = await start(spec, settings)
    db = Database(database_url)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            yield Harness(sales_service_pb2_grpc.SalesServiceStub(ch), db, clock)
    finally:
        await db.dispose()
        await running.stop(1.0)


async def fails(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    assert e.value.code() == code, e.value.details()
    return e.value


def _details(err: grpc.aio.AioRpcError, kind: Any) -> list[Any]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status details"
    out = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            out.append(message)
    return out


def reason(err: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call."""
    infos = _details(err, error_details_pb2.ErrorInfo)
    return str(infos[0].reason) if infos else ""


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of a failed call, field -> description."""
    return {
        v.field: v.description
        for br in _details(err, error_details_pb2.BadRequest)
        for v in br.field_violations
    }
