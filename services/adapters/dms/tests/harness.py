"""The DMS adapter over a real in-process grpc.aio server and its real inbound HTTP
endpoint, against the DMS simulator, on SQLite and PostgreSQL (`database_url`). Events
are written to the outbox, not relayed (`events=False`); `deliver` runs the
OrderDelivered handler in a unit of work as the consumer does."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from marque.dms.v1 import dms_service_pb2_grpc
from marque.sales.v1 import sales_events_pb2

from mesh.config import Settings
from mesh.convert import money, timestamp
from mesh.db import Database
from mesh.events.envelope import Envelope
from mesh.identity import Caller, Kind
from mesh.keys import mint_token
from mesh.server import start
from mesh.unit_of_work import UnitOfWork, transaction
from services.adapters.dms.app import NAME, Endpoint, build_spec
from services.adapters.dms.events import on_order_delivered, prepare_deliveries
from services.adapters.dms.store.tables import OUTBOX, outbox
from services.adapters.dms.tests.helpers import VIN, Clock, Dms

OEM = Caller(Kind.OEM, "staff-1")
D1 = Caller(Kind.DEALER, "D1-staff", dealer_id="D1")
D2 = Caller(Kind.DEALER, "D2-staff", dealer_id="D2")
CUSTOMER = Caller(Kind.CUSTOMER, "m-1", member_id="m-1")
T0 = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def md(caller: Caller) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(caller)}"),)


def delivered(order_id: str, dealer: str = "D1", vin: str = VIN) -> sales_events_pb2.OrderDelivered:
    """Sales' event of a delivered order."""
    facts = sales_events_pb2.OrderFacts(
        order_id=order_id,
        dealer_id=dealer,
        model_code="MZ-SEDAN",
        trim_code="LUX",
        invoice_price=money(Decimal("259900.00")),
        state="ORDER_STATE_DELIVERED",
        vin=vin,
    )
    return sales_events_pb2.OrderDelivered(order=facts, delivery_time=timestamp(T0))


@dataclass
class Harness:
    stub: dms_service_pb2_grpc.DmsServiceStub
    db: Database
    dms: Dms
    http: httpx.AsyncClient
    base: str
    breaker_clock: Clock

    async def deliver(
        self,
        event: sales_events_pb2.OrderDelivered,
        *,
        prepared: bool = True,
        traceparent: str = "",
    ) -> None:
        """As the consumer does: the subscription's prepare (the RDR sent), then the handler
        in a unit of work (`prepared=False`: the handler alone, which then sends it)."""
        envelope = Envelope(
            id=f"ev-{event.order.order_id}",
            source="sales",
            type="t",
            subject="s",
            time=T0,
            traceparent=traceparent,
        )
        if prepared:
            await prepare_deliveries([event], [envelope])

        async def work(uow: UnitOfWork) -> None:
            await on_order_delivered(uow, event, envelope)

        await transaction(self.db, work, outbox=OUTBOX)

    async def outbox(self) -> list[tuple[str, str, bytes, str]]:
        t = outbox.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(t.type, t.aggregate, t.payload, t.traceparent).order_by(t.seq)
            )
            return [(r.type, r.aggregate, r.payload, r.traceparent) for r in rows]


@asynccontextmanager
async def serve(database_url: str, dms: Dms, **config: Any) -> AsyncIterator[Harness]:
    settings = Settings(service=NAME, grpc_port=0, metrics_port=0, database_url=database_url)
    clock = Clock()
    endpoint = Endpoint()
    spec = build_spec(
        config=replace(dms.config, **config),
        client=dms.client(clock=clock, **config),
        events=False,
        endpoint=endpoint,
    )
    running = await start(spec, settings)
    db = Database(database_url)
    try:
        async with (
            grpc.aio.insecure_channel(running.address) as ch,
            httpx.AsyncClient(timeout=10) as http,
        ):
            yield Harness(
                dms_service_pb2_grpc.DmsServiceStub(ch),
                db,
                dms,
                http,
                f"http://127.0.0.1:{endpoint.port}",
                clock,
            )
    finally:
        await db.dispose()
        await running.stop(1.0)


async def fails(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    assert e.value.code() == code, e.value.details()
    return e.value
