"""GetSalesOrder and the OrderConfirmed handler over a real server against the simulator,
on SQLite and PostgreSQL: one SAP order and one SalesOrderCreated per Marque order, however
often the event comes; SAP's view by either key; an outage raises Unavailable (retried by
the consumer) and writes nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import grpc
import pytest
import sqlalchemy as sa
from marque.erp.v1 import erp_events_pb2, erp_service_pb2

from mesh.convert import decimal_of
from mesh.errors import Unavailable
from mesh.unit_of_work import UnitOfWork, transaction
from services.adapters.erp import events
from services.adapters.erp.store import claims
from services.adapters.erp.store.tables import sap_orders
from services.adapters.erp.tests.harness import DEALER, SALES, Harness, confirmed, fails, serve
from services.adapters.erp.tests.helpers import Sap

CREATED = "marque.erp.v1.SalesOrderCreated"


@pytest.fixture
async def erp(database_url: str, sap: Sap) -> AsyncIterator[Harness]:
    async with serve(database_url, sap) as h:
        yield h


async def _rows(h: Harness) -> list[sa.Row[tuple[object, ...]]]:
    async with h.db.engine.connect() as conn:
        return list((await conn.execute(sa.select(sap_orders))).all())


async def test_a_confirmed_order_becomes_one_sap_order_and_one_event(erp: Harness) -> None:
    await erp.confirm(confirmed("ord_1"))
    await erp.confirm(confirmed("ord_1"))  # redelivered: nothing new
    [row] = await _rows(erp)
    assert erp.sap.sim.creates == 1 and row.state == "CREATED"
    [(kind, subject, payload)] = await erp.outbox()
    event = erp_events_pb2.SalesOrderCreated.FromString(payload)
    assert (kind, subject, event.order_id) == (CREATED, "ord_1", "ord_1")
    assert event.sap_sales_order == row.sap_sales_order
    assert decimal_of(event.net_amount) == Decimal("259900")
    sap_order = erp.sap.sim.orders[event.sap_sales_order]
    materials = [i["Material"] for i in sap_order["to_Item"]["results"]]
    assert materials == ["MZ-SEDAN", "PANO", "TOWBAR"]


async def test_an_order_created_before_a_lost_commit_is_found_not_doubled(erp: Harness) -> None:
    await erp.prepare(confirmed("ord_1"))  # SAP created it; our commit never happened
    assert erp.sap.sim.creates == 1 and await _rows(erp) == []
    with pytest.raises(Unavailable, match="another delivery"):
        await erp.confirm(confirmed("ord_1"))  # redelivered while the claim's lease runs
    erp.moment.advance(erp.sap.config.lease_seconds)
    await erp.confirm(confirmed("ord_1"))  # the lease is over: looked up, found
    [row] = await _rows(erp)
    assert erp.sap.sim.creates == 1 and row.state == "FOUND"
    async with erp.db.engine.connect() as conn:
        assert await claims.of_order(conn, "ord_1") is None  # dropped with the record


async def test_no_transaction_is_open_while_sap_answers(erp: Harness) -> None:
    """The SAP call (here 600 ms) holds no database connection (PostgreSQL: none idle in a
    transaction) and not the write lock (SQLite: another writer commits meanwhile)."""
    erp.sap.sim.knobs.latency_ms = 600
    confirming = asyncio.ensure_future(erp.confirm(confirmed("ord_1")))
    await asyncio.sleep(0.3)
    engine = events.ENGINE.current
    assert engine is not None
    assert engine.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    started = time.monotonic()

    async def write(uow: UnitOfWork) -> None:  # SQLite: BEGIN IMMEDIATE, the write lock
        await uow.conn.execute(sap_orders.delete().where(sap_orders.c.order_id == "none"))

    await transaction(erp.db, write)
    waited = time.monotonic() - started
    assert not confirming.done()  # still inside the SAP call
    await confirming
    assert waited < 0.2, waited
    assert len(await _rows(erp)) == 1


async def test_while_sap_is_down_the_handler_raises_unavailable(erp: Harness) -> None:
    erp.sap.sim.knobs.outage = True
    with pytest.raises(Unavailable):
        await erp.confirm(confirmed("ord_1"))
    assert await _rows(erp) == [] and await erp.outbox() == []
    erp.sap.sim.knobs.outage = False
    erp.breaker_clock.now += 121  # the failures leave the breaker's window
    await erp.confirm(confirmed("ord_1"))
    assert len(await _rows(erp)) == 1 and erp.sap.sim.creates == 1


async def test_get_sales_order_by_either_key(erp: Harness) -> None:
    await erp.confirm(confirmed("ord_1", price="199999.99"))
    by_order = await erp.get(order_id="ord_1")
    by_number = await erp.get(caller=SALES, sap_sales_order=by_order.sap_sales_order)
    assert by_order == by_number and by_order.order_id == "ord_1"
    assert by_order.status == erp_service_pb2.SALES_ORDER_STATUS_OPEN
    assert decimal_of(by_order.net_amount) == Decimal("199999.99")
    assert by_order.net_amount.currency_code == "CNY" and by_order.create_time.seconds > 0
    await fails(erp.get(order_id="ord_404"), grpc.StatusCode.NOT_FOUND)
    await fails(erp.get(sap_sales_order="4999999"), grpc.StatusCode.NOT_FOUND)
    await fails(erp.get(caller=DEALER, order_id="ord_1"), grpc.StatusCode.PERMISSION_DENIED)
    await fails(erp.get(sap_sales_order="bad key"), grpc.StatusCode.INVALID_ARGUMENT)
    erp.sap.sim.knobs.outage = True
    await fails(erp.get(order_id="ord_1"), grpc.StatusCode.UNAVAILABLE)
