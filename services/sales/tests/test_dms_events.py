"""RetailDeliveryReported (the DMS adapter's: a dealer's RDR) delivers the invoiced order of
its VIN, on both back ends: OrderDelivered and the opportunity at DELIVERED; a redelivery,
another dealer's RDR or an order not yet invoiced changes nothing; a VIN that is not the
allocated one is the order's refusal (a dead letter for an operator)."""

from __future__ import annotations

import datetime as dt

import pytest
from marque.dms.v1 import dms_events_pb2
from marque.sales.v1 import sales_events_pb2, sales_pb2
from marque.sales.v1 import sales_service_pb2 as pb

from mesh.convert import timestamp
from mesh.errors import DomainError
from mesh.events.envelope import Envelope
from mesh.unit_of_work import UnitOfWork, transaction
from services.sales.dms_events import on_retail_delivery_reported
from services.sales.events import EVENTS
from services.sales.store.tables import OUTBOX
from services.sales.tests.harness import OEM, T0, Harness, cny, md
from services.sales.tests.test_deals import D1, order_from_quote, vin


async def _report(sales: Harness, dealer: str, car: str, order_id: str = "") -> None:
    event = dms_events_pb2.RetailDeliveryReported(
        dealer_id=dealer,
        rdr_id=f"RDR-{car}",
        vin=car,
        order_id=order_id,
        rdr_status="TRANSMITTED",
        delivery_time=timestamp(T0 + dt.timedelta(hours=2)),
    )
    envelope = Envelope(id=f"ev-{car}", source="dms", type="t", subject=dealer, time=T0)

    async def work(uow: UnitOfWork) -> None:
        await on_retail_delivery_reported(uow, event, envelope)

    await transaction(sales.db, work, outbox=OUTBOX)


async def _invoiced(sales: Harness, n: int) -> sales_pb2.Order:
    order = await order_from_quote(sales)
    paid = pb.PayDepositRequest(order_id=order.id, amount=cny("5000"), etag=order.etag)
    await sales.stub.PayDeposit(paid, metadata=md(D1))
    stock = sales_pb2.StockVehicle(vin=vin(n), model_code="M5", trim_code="M5-LR")
    await sales.stub.PutStockVehicle(pb.PutStockVehicleRequest(vehicle=stock), metadata=md(D1))
    allocate = pb.AllocateVehicleRequest(order_id=order.id, vin=vin(n))
    await sales.stub.AllocateVehicle(allocate, metadata=md(D1))
    invoice = pb.InvoiceOrderRequest(order_id=order.id, invoice_number=f"FP-{n}")
    return (await sales.stub.InvoiceOrder(invoice, metadata=md(D1))).order


async def _order(sales: Harness, order_id: str) -> sales_pb2.Order:
    return (
        await sales.stub.GetOrder(pb.GetOrderRequest(order_id=order_id), metadata=md(OEM))
    ).order


def test_sales_subscribes_to_retail_delivery_reported() -> None:
    assert "marque.dms.RetailDeliveryReported" in {s.subject for s in EVENTS.subscriptions}


async def test_a_dealers_rdr_delivers_its_invoiced_order_once(sales: Harness) -> None:
    order = await _invoiced(sales, 70)
    await _report(sales, "D2", vin(70))  # another dealer's report of D1's car: nothing
    assert (await _order(sales, order.id)).state == sales_pb2.ORDER_STATE_INVOICED
    before = len(await sales.outbox())
    await _report(sales, "D1", vin(70))  # by VIN: no order id on the RDR
    done = await _order(sales, order.id)
    assert done.state == sales_pb2.ORDER_STATE_DELIVERED and done.vin == vin(70)
    rows = (await sales.outbox())[before:]
    kinds = [kind.rsplit(".", 1)[1] for kind, _, _ in rows]
    assert kinds == ["OrderDelivered", "OpportunityStageChanged"]
    delivered = sales_events_pb2.OrderDelivered.FromString(rows[0][2])
    assert delivered.order.order_id == order.id
    assert delivered.delivery_time.ToDatetime(tzinfo=dt.UTC) == T0 + dt.timedelta(hours=2)
    await _report(sales, "D1", vin(70))  # redelivered, or the DMS reports it again
    assert await _order(sales, order.id) == done
    assert len(await sales.outbox()) == before + 2


async def test_an_order_not_invoiced_stays_and_a_wrong_car_is_refused(sales: Harness) -> None:
    confirmed = await order_from_quote(sales)
    await _report(sales, "D1", vin(71), order_id=confirmed.id)
    assert (await _order(sales, confirmed.id)).state == sales_pb2.ORDER_STATE_DEPOSIT_PENDING
    order = await _invoiced(sales, 72)
    with pytest.raises(DomainError) as e:
        await _report(sales, "D1", vin(73), order_id=order.id)  # not the allocated car
    assert e.value.reason == "VEHICLE_MISMATCH"
    assert (await _order(sales, order.id)).state == sales_pb2.ORDER_STATE_INVOICED
