"""Sales' OrderDelivered in member (deliveries.py): the buyer becomes the car's registered
owner (VehicleBound) and earns the purchase's points, once however often the event comes;
a merged buyer's car goes to the survivor, an unknown one's nowhere."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from marque.common.v1 import money_pb2
from marque.sales.v1 import sales_events_pb2

from mesh.events.envelope import Envelope
from mesh.unit_of_work import UnitOfWork, transaction
from services.member import deliveries, events
from services.member.store import tables
from services.member.tests.direct import Direct, direct, w
from services.member.tests.test_events import T0, mobile

VIN = "LZ91AE3A4J3LSA560"


def _delivered(
    member_id: str, order_id: str = "ord_1", units: int = 237300
) -> sales_events_pb2.OrderDelivered:
    facts = sales_events_pb2.OrderFacts(
        order_id=order_id,
        dealer_id="D001",
        member_id=member_id,
        model_code="M5",
        vin=VIN,
        invoice_price=money_pb2.Money(currency_code="CNY", units=units, nanos=990_000_000),
    )
    event = sales_events_pb2.OrderDelivered(order=facts)
    event.delivery_time.FromDatetime(T0)
    return event


async def _handle(d: Direct, event: sales_events_pb2.OrderDelivered) -> None:
    envelope = Envelope(
        "e-" + event.order.order_id,
        "/marque/sales",
        "marque.sales.v1.OrderDelivered",
        event.order.order_id,
        T0,
    )

    async def work(uow: UnitOfWork) -> None:
        await events.on_order_delivered(uow, event, envelope)

    await transaction(d.db, work, outbox=tables.OUTBOX)


async def _owner(d: Direct) -> str | None:
    async with d.db.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(tables.vehicles.c.owner_id).where(tables.vehicles.c.vin == VIN)
            )
        ).first()
    return None if row is None else row.owner_id


def test_a_purchase_earns_a_point_per_whole_100_cny() -> None:
    from decimal import Decimal

    assert deliveries.purchase_points(Decimal("237399.99"), 1) == 2373
    assert deliveries.purchase_points(Decimal("99.99"), 1) == 0


async def test_the_buyer_owns_the_car_and_earns_once(database_url: str) -> None:
    async with direct(database_url) as d:
        buyer, _ = await d.register(w("b", T0), mobile(), "B", "")
        await _handle(d, _delivered(buyer.id))
        await _handle(d, _delivered(buyer.id))  # replayed: nothing twice
        assert await _owner(d) == buyer.id
        got = await d.get_member(buyer.id, T0 + dt.timedelta(minutes=1))
        assert got.balance == 2373
        async with d.db.engine.connect() as conn:
            bound = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(tables.outbox)
                    .where(tables.outbox.c.type == "marque.member.v1.VehicleBound")
                )
            ).scalar()
        assert bound == 1


async def test_a_merged_buyers_car_goes_to_the_survivor(database_url: str) -> None:
    async with direct(database_url) as d:
        a, _ = await d.register(w("a", T0), mobile(), "A", "")
        b, _ = await d.register(w("b", T0), mobile("+8613900000001"), "B", "")
        await d.merge(w("m", T0), a.id, b.id, "same person")
        await _handle(d, _delivered(b.id))
        assert await _owner(d) == a.id
        await _handle(d, _delivered("m_unknown", order_id="ord_2"))  # nobody to give it to
        assert await _owner(d) == a.id
