"""The ERP adapter over a real in-process grpc.aio server against the SAP simulator, on
SQLite and PostgreSQL (`database_url`). Events are written to the outbox, not relayed
(`events=False`); `confirm` runs the OrderConfirmed subscription as the consumer does (its
prepare, then the handler in a unit of work), so tests see the SAP order, the row and the
outbox together."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
import sqlalchemy as sa
from marque.erp.v1 import erp_service_pb2, erp_service_pb2_grpc
from marque.sales.v1 import sales_events_pb2

from mesh.config import Settings
from mesh.convert import money, timestamp
from mesh.db import Database
from mesh.events.envelope import Envelope
from mesh.identity import Caller, Kind
from mesh.keys import mint_token
from mesh.server import start
from mesh.unit_of_work import UnitOfWork, transaction
from services.adapters.erp.app import NAME, build_spec
from services.adapters.erp.events import on_orders_confirmed, prepare_orders
from services.adapters.erp.store.tables import OUTBOX, outbox
from services.adapters.erp.tests.helpers import Clock, Moment, Sap

OEM = Caller(Kind.OEM, "staff-1")
SALES = Caller(Kind.SERVICE, "sales", service="sales")
DEALER = Caller(Kind.DEALER, "D1-staff", dealer_id="D1")
T0 = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def md(caller: Caller) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(caller)}"),)


def confirmed(order_id: str, price: str = "259900.00") -> sales_events_pb2.OrderConfirmed:
    """Sales' event of a confirmed order."""
    from decimal import Decimal

    facts = sales_events_pb2.OrderFacts(
        order_id=order_id,
        dealer_id="D1",
        model_code="MZ-SEDAN",
        trim_code="LUX",
        option_codes=["PANO", "TOWBAR"],
        invoice_price=money(Decimal(price)),
        state="ORDER_STATE_CONFIRMED",
    )
    return sales_events_pb2.OrderConfirmed(order=facts, confirm_time=timestamp(T0))


def _envelope(event: sales_events_pb2.OrderConfirmed) -> Envelope:
    return Envelope(id=f"ev-{event.order.order_id}", source="sales", type="t", subject="s", time=T0)


@dataclass
class Harness:
    stub: erp_service_pb2_grpc.ErpServiceStub
    db: Database
    sap: Sap
    breaker_clock: Clock
    moment: Moment  # the engine's clock

    async def get(self, caller: Caller = OEM, **key: str) -> erp_service_pb2.SalesOrder:
        resp = await self.stub.GetSalesOrder(
            erp_service_pb2.GetSalesOrderRequest(**key), metadata=md(caller)
        )
        return resp.sales_order

    async def prepare(self, event: sales_events_pb2.OrderConfirmed) -> None:
        """The subscription's prepare alone: SAP called, nothing recorded (as if the
        process died before the consumer's commit)."""
        await prepare_orders([event], [_envelope(event)])

    async def confirm(self, event: sales_events_pb2.OrderConfirmed) -> None:
        envelope = _envelope(event)

        async def work(uow: UnitOfWork) -> None:
            await on_orders_confirmed(uow, [event], [envelope])

        await prepare_orders([event], [envelope])

        await transaction(self.db, work, outbox=OUTBOX)

    async def outbox(self) -> list[tuple[str, str, bytes]]:
        t = outbox.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(sa.select(t.type, t.aggregate, t.payload).order_by(t.seq))
            return [(r.type, r.aggregate, r.payload) for r in rows]


@asynccontextmanager
async def serve(database_url: str, sap: Sap) -> AsyncIterator[Harness]:
    settings = Settings(service=NAME, grpc_port=0, metrics_port=0, database_url=database_url)
    clock = Clock()  # the breaker's: a test moves it past the window instead of sleeping
    moment = Moment(T0)
    spec = build_spec(
        config=sap.config, backend=sap.backend(clock=clock), clock=moment, events=False
    )
    running = await start(spec, settings)
    db = Database(database_url)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            yield Harness(erp_service_pb2_grpc.ErpServiceStub(ch), db, sap, clock, moment)
    finally:
        await db.dispose()
        await running.stop(1.0)


async def fails(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    assert e.value.code() == code, e.value.details()
    return e.value
