"""SalesOrderCreated (the ERP adapter's) puts SAP's number on the order, once, on both back
ends: a redelivery or a second number changes nothing; an unknown order is no error."""

from __future__ import annotations

from marque.erp.v1 import erp_events_pb2
from marque.sales.v1 import sales_pb2
from marque.sales.v1 import sales_service_pb2 as pb

from mesh.events.envelope import Envelope
from mesh.unit_of_work import UnitOfWork, transaction
from services.sales.erp_events import on_sales_order_created
from services.sales.events import EVENTS
from services.sales.store.tables import OUTBOX
from services.sales.tests.harness import OEM, T0, Harness, md
from services.sales.tests.test_deals import order_from_quote


async def _deliver(sales: Harness, order_id: str, number: str) -> None:
    event = erp_events_pb2.SalesOrderCreated(order_id=order_id, sap_sales_order=number)
    envelope = Envelope(id=f"ev-{number}", source="erp", type="t", subject=order_id, time=T0)

    async def work(uow: UnitOfWork) -> None:
        await on_sales_order_created(uow, event, envelope)

    await transaction(sales.db, work, outbox=OUTBOX)


async def _order(sales: Harness, order_id: str) -> sales_pb2.Order:
    req = pb.GetOrderRequest(order_id=order_id)
    return (await sales.stub.GetOrder(req, metadata=md(OEM))).order


def test_sales_subscribes_to_sales_order_created() -> None:
    subjects = {s.subject for s in EVENTS.subscriptions}
    assert "marque.erp.SalesOrderCreated" in subjects


async def test_the_sap_number_lands_on_the_order_once(sales: Harness) -> None:
    placed = await order_from_quote(sales)
    await _deliver(sales, placed.id, "4000001")
    order = await _order(sales, placed.id)
    assert order.sap_sales_order == "4000001"
    assert order.etag != placed.etag
    await _deliver(sales, placed.id, "4000002")  # a second number for the order: kept the first
    again = await _order(sales, placed.id)
    assert again == order
    await _deliver(sales, "ord_unknown", "4000003")
