"""Test drives and orders over a real server (harness.py), on SQLite and PostgreSQL: the
booking rules and their refusals, exactly one winner of a contested slot, the order from
quote to delivery with its events, etags, illegal steps and who may see what."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
from marque.sales.v1 import sales_events_pb2, sales_pb2
from marque.sales.v1 import sales_service_pb2 as pb

from mesh import vin as vins
from services.sales.tests.harness import (
    CUSTOMER,
    OEM,
    Harness,
    cny,
    dealer,
    fails,
    md,
    reason,
    violations,
    yuan,
)

D1, D2 = dealer("D1"), dealer("D2")


def vin(n: int) -> str:
    body = f"LSVAU2180N{n:07d}"
    return body[:8] + vins.check_digit(body) + body[9:]


def at(hour: int, minute: int = 0, days: int = 1) -> dt.datetime:
    """A time in Shanghai `days` after the harness's Monday 2026-03-02."""
    return dt.datetime(2026, 3, 2 + days, hour - 8, minute, tzinfo=dt.UTC)


async def setup_car(sales: Harness, n: int = 1, caller: object = D1) -> str:
    car = sales_pb2.TestDriveCar(vin=vin(n), model_code="M5", active=True)
    await sales.stub.PutTestDriveCar(pb.PutTestDriveCarRequest(car=car), metadata=md(caller))  # type: ignore[arg-type]
    return car.vin


async def book(
    sales: Harness, opp: str, car: str, start: dt.datetime, who: str = "sc-1", caller: object = D1
) -> sales_pb2.TestDrive:
    req = pb.BookTestDriveRequest(
        opportunity_id=opp, vin=car, consultant_id=who, request_id=sales.rid()
    )
    req.start_time.FromDatetime(start)
    return (await sales.stub.BookTestDrive(req, metadata=md(caller))).test_drive  # type: ignore[arg-type]


async def test_a_test_drive_is_booked_moved_and_completed(sales: Harness) -> None:
    opp, car = await sales.open_opportunity(), await setup_car(sales)
    drive = await book(sales, opp, car, at(10))
    assert drive.state == sales_pb2.TEST_DRIVE_STATE_BOOKED
    assert drive.end_time.ToDatetime(dt.UTC) == at(11)
    moved = pb.RescheduleTestDriveRequest(test_drive_id=drive.id, etag=drive.etag)
    moved.start_time.FromDatetime(at(14, 30))
    drive2 = (await sales.stub.RescheduleTestDrive(moved, metadata=md(D1))).test_drive
    err = await fails(
        sales.stub.RescheduleTestDrive(moved, metadata=md(D1)), grpc.StatusCode.ABORTED
    )
    assert reason(err) == "ETAG_MISMATCH"  # the etag of before the move
    await book(sales, opp, car, at(10))  # 10:00 is free again
    done = pb.CompleteTestDriveRequest(test_drive_id=drive2.id, feedback="quiet", rating=5)
    completed = (await sales.stub.CompleteTestDrive(done, metadata=md(D1))).test_drive
    assert (completed.state, completed.rating) == (sales_pb2.TEST_DRIVE_STATE_COMPLETED, 5)
    await book(sales, opp, car, at(14, 30))  # completed: its slot is free for another drive
    err = await fails(
        sales.stub.CancelTestDrive(
            pb.CancelTestDriveRequest(test_drive_id=drive2.id), metadata=md(D1)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(err) == "ILLEGAL_TRANSITION"
    got = await sales.stub.GetOpportunity(
        pb.GetOpportunityRequest(opportunity_id=opp), metadata=md(D1)
    )
    assert got.opportunity.stage == sales_pb2.STAGE_TEST_DRIVE
    await fails(
        sales.stub.GetTestDrive(pb.GetTestDriveRequest(test_drive_id=drive.id), metadata=md(D2)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_taken_car_or_consultant_or_a_closed_hour_is_refused(sales: Harness) -> None:
    opp, car, car2 = (
        await sales.open_opportunity(),
        await setup_car(sales, 1),
        await setup_car(sales, 2),
    )
    await book(sales, opp, car, at(10))
    err = await fails(
        book(sales, opp, car, at(10, 45), who="sc-2"), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(err) == "CAR_TAKEN"
    err = await fails(book(sales, opp, car2, at(9, 30)), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(err) == "CONSULTANT_TAKEN"
    await book(sales, opp, car, at(11))  # back to back is no overlap
    err = await fails(book(sales, opp, car2, at(17, 30)), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(err) == "OUTSIDE_OPENING_HOURS"  # ends 18:30, the showroom closes at 18:00
    err = await fails(
        book(sales, opp, car2, at(10, 0, days=-1)), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(err) == "SLOT_IN_PAST"
    hours = pb.SetOpeningHoursRequest(days=[pb.OpeningDay(weekday=1, open="10:00", close="16:00")])
    await sales.stub.SetOpeningHours(hours, metadata=md(D1))
    err = await fails(book(sales, opp, car2, at(12, days=1)), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(err) == "OUTSIDE_OPENING_HOURS"  # Tuesday is closed now
    err = await fails(book(sales, opp, vin(9), at(12, days=7)), grpc.StatusCode.NOT_FOUND)
    assert reason(err) == "TEST_DRIVE_CAR_NOT_FOUND"
    other = await setup_car(sales, 3, caller=D2)
    err = await fails(book(sales, opp, other, at(12, days=7)), grpc.StatusCode.NOT_FOUND)
    assert reason(err) == "TEST_DRIVE_CAR_NOT_FOUND"  # D2's car is not D1's to book


async def test_of_concurrent_bookings_of_one_slot_exactly_one_wins(sales: Harness) -> None:
    opp = await sales.open_opportunity()
    cars = [await setup_car(sales, n) for n in range(1, 3)]
    tries = [book(sales, opp, cars[i % 2], at(10), who=f"sc-{i % 3}") for i in range(16)]
    results = await asyncio.gather(*tries, return_exceptions=True)
    won = [r for r in results if isinstance(r, sales_pb2.TestDrive)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 2 and len(lost) == 14, results  # one per car; 3 consultants, 2 cars
    assert {w.vin for w in won} == set(cars) and len({w.consultant_id for w in won}) == 2
    assert {e.code() for e in lost} == {grpc.StatusCode.FAILED_PRECONDITION}


async def order_from_quote(sales: Harness, member: str = "m1") -> sales_pb2.Order:
    await sales.put_trim()
    opp = await sales.open_opportunity()
    quote = (
        await sales.stub.CreateQuote(
            pb.CreateQuoteRequest(
                opportunity_id=opp,
                member_id=member,
                request_id=sales.rid(),
                quote=sales_pb2.QuoteSpec(trim_code="M5-LR", option_codes=["PILOT"]),
            ),
            metadata=md(D1),
        )
    ).quote
    req = pb.CreateOrderRequest(quote_id=quote.id, deposit=cny("5000"), request_id=quote.id)
    order = (await sales.stub.CreateOrder(req, metadata=md(D1))).order
    assert (await sales.stub.CreateOrder(req, metadata=md(D1))).order.id == order.id
    return order


async def test_an_order_goes_from_quote_to_delivery(sales: Harness) -> None:
    order = await order_from_quote(sales)
    assert order.state == sales_pb2.ORDER_STATE_DEPOSIT_PENDING
    assert yuan(order.figures.invoice_price) == "237300.00"  # 226,000 + the pilot pack
    paid = pb.PayDepositRequest(order_id=order.id, amount=cny("5000"), etag=order.etag)
    order = (await sales.stub.PayDeposit(paid, metadata=md(D1))).order
    err = await fails(sales.stub.PayDeposit(paid, metadata=md(D1)), grpc.StatusCode.ABORTED)
    assert reason(err) == "ETAG_MISMATCH"
    stock = sales_pb2.StockVehicle(vin=vin(50), model_code="M5", trim_code="M5-LR")
    await sales.stub.PutStockVehicle(pb.PutStockVehicleRequest(vehicle=stock), metadata=md(D1))
    wrong = sales_pb2.StockVehicle(vin=vin(51), model_code="M5", trim_code="M5-SR")
    await sales.stub.PutStockVehicle(pb.PutStockVehicleRequest(vehicle=wrong), metadata=md(D1))
    err = await fails(
        sales.stub.AllocateVehicle(
            pb.AllocateVehicleRequest(order_id=order.id, vin=vin(51)), metadata=md(D1)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(err) == "VEHICLE_MISMATCH"
    bad_vin = vin(50)[:8] + ("0" if vin(50)[8] != "0" else "1") + vin(50)[9:]
    err = await fails(
        sales.stub.AllocateVehicle(
            pb.AllocateVehicleRequest(order_id=order.id, vin=bad_vin), metadata=md(D1)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "vin" in violations(err)
    err = await fails(
        sales.stub.InvoiceOrder(
            pb.InvoiceOrderRequest(order_id=order.id, invoice_number="FP-1"), metadata=md(D1)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(err) == "ILLEGAL_TRANSITION" and "CONFIRMED" in (err.details() or "")
    for call, request in (
        (sales.stub.AllocateVehicle, pb.AllocateVehicleRequest(order_id=order.id, vin=vin(50))),
        (sales.stub.InvoiceOrder, pb.InvoiceOrderRequest(order_id=order.id, invoice_number="FP-1")),
        (
            sales.stub.RecordDelivery,
            pb.RecordDeliveryRequest(
                order_id=order.id,
                vin=vin(50),
                checklist=[pb.ChecklistItem(item="keys (2)", done=True)],
            ),
        ),
    ):
        order = (await call(request, metadata=md(D1))).order
    assert (order.state, order.vin) == (sales_pb2.ORDER_STATE_DELIVERED, vin(50))
    err = await fails(
        sales.stub.CancelOrder(
            pb.CancelOrderRequest(order_id=order.id, reason="x"), metadata=md(D1)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(err) == "ILLEGAL_TRANSITION"
    types = [t.rsplit(".", 1)[1] for t, s, _ in await sales.outbox() if s == order.id]
    assert types == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderAllocated",
        "OrderInvoiced",
        "OrderDelivered",
    ]
    delivered = [p for t, s, p in await sales.outbox() if t.endswith("OrderDelivered")]
    event = sales_events_pb2.OrderDelivered.FromString(delivered[0])
    assert (event.order.member_id, event.order.vin, event.order.lead_id) == (
        "m1",
        vin(50),
        "lead_1",
    )
    assert event.order.invoice_price.units == 237300
    opp = await sales.stub.GetOpportunity(
        pb.GetOpportunityRequest(opportunity_id=order.opportunity_id), metadata=md(OEM)
    )
    assert opp.opportunity.stage == sales_pb2.STAGE_DELIVERED


async def test_a_cancelled_order_refunds_and_frees_its_car(sales: Harness) -> None:
    order = await order_from_quote(sales)
    order = (
        await sales.stub.PayDeposit(
            pb.PayDepositRequest(order_id=order.id, amount=cny("5000")), metadata=md(D1)
        )
    ).order
    stock = sales_pb2.StockVehicle(vin=vin(60), model_code="M5", trim_code="M5-LR")
    await sales.stub.PutStockVehicle(pb.PutStockVehicleRequest(vehicle=stock), metadata=md(D1))
    await sales.stub.AllocateVehicle(
        pb.AllocateVehicleRequest(order_id=order.id, vin=vin(60)), metadata=md(D1)
    )
    cancelled = (
        await sales.stub.CancelOrder(
            pb.CancelOrderRequest(order_id=order.id, reason="changed their mind"), metadata=md(D1)
        )
    ).order
    assert (
        cancelled.state == sales_pb2.ORDER_STATE_CANCELLED and yuan(cancelled.refund) == "5000.00"
    )
    second = await order_from_quote(sales)
    await sales.stub.PayDeposit(
        pb.PayDepositRequest(order_id=second.id, amount=cny("5000")), metadata=md(D1)
    )
    again = (
        await sales.stub.AllocateVehicle(
            pb.AllocateVehicleRequest(order_id=second.id, vin=vin(60)), metadata=md(D1)
        )
    ).order
    assert again.vin == vin(60)  # the car went back to the stock


async def test_orders_are_the_dealers_and_the_customers(sales: Harness) -> None:
    order = await order_from_quote(sales, member="m1")
    mine = await sales.stub.GetOrder(pb.GetOrderRequest(order_id=order.id), metadata=md(CUSTOMER))
    assert mine.order.id == order.id
    listed = await sales.stub.ListOrders(pb.ListOrdersRequest(), metadata=md(CUSTOMER))
    assert [o.id for o in listed.orders] == [order.id]
    for other in (D2,):
        err = await fails(
            sales.stub.GetOrder(pb.GetOrderRequest(order_id=order.id), metadata=md(other)),
            grpc.StatusCode.NOT_FOUND,
        )
        assert reason(err) == "ORDER_NOT_FOUND"
        assert not (await sales.stub.ListOrders(pb.ListOrdersRequest(), metadata=md(other))).orders
    err = await fails(
        sales.stub.PayDeposit(
            pb.PayDepositRequest(order_id=order.id, amount=cny("5000")), metadata=md(CUSTOMER)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    err = await fails(
        sales.stub.PayDeposit(
            pb.PayDepositRequest(order_id=order.id, amount=cny("5000")), metadata=md(D2)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    naming = await sales.stub.ListOrders(pb.ListOrdersRequest(dealer_id="D2"), metadata=md(D1))
    assert not naming.orders  # another dealer's list: nothing, like an unknown dealer's
    page = await sales.stub.ListOrders(
        pb.ListOrdersRequest(dealer_id="D1", page_size=1), metadata=md(OEM)
    )
    assert [o.id for o in page.orders] == [order.id] and page.next_page_token == ""


async def test_an_erased_member_leaves_no_free_text_in_sales(sales: Harness) -> None:
    from marque.member.v1 import member_events_pb2

    from mesh.events.envelope import Envelope
    from mesh.unit_of_work import UnitOfWork, transaction
    from services.sales import events
    from services.sales.store.tables import OUTBOX, follow_ups, test_drives

    await order_from_quote(sales, member="m1")  # the opportunity names m1 now
    (opp,) = (
        await sales.stub.ListOpportunities(pb.ListOpportunitiesRequest(), metadata=md(D1))
    ).opportunities
    car = await setup_car(sales)
    drive = await book(sales, opp.id, car, at(10))
    await sales.stub.CompleteTestDrive(
        pb.CompleteTestDriveRequest(
            test_drive_id=drive.id, feedback="call me on 13800138000", rating=4
        ),
        metadata=md(D1),
    )
    log = pb.LogFollowUpRequest(
        opportunity_id=opp.id,
        request_id="f1",
        follow_up=sales_pb2.FollowUp(
            channel=sales_pb2.FOLLOW_UP_CHANNEL_CALL, outcome="Mr Li prefers red"
        ),
    )
    await sales.stub.LogFollowUp(log, metadata=md(D1))
    erased = member_events_pb2.MemberErased(member_id="m1")
    envelope = Envelope(
        "e1", "/marque/member", "marque.member.v1.MemberErased", "m1", sales.clock.now
    )

    async def work(uow: UnitOfWork) -> None:
        await events.on_member_erased(uow, erased, envelope)

    await transaction(sales.db, work, outbox=OUTBOX)
    async with sales.db.engine.connect() as conn:
        import sqlalchemy as sa

        texts = [r.outcome for r in await conn.execute(sa.select(follow_ups))]
        feedback = [r.feedback for r in await conn.execute(sa.select(test_drives))]
    assert texts == ["(erased)"] and feedback == [""]
    receipts = [p for t, _, p in await sales.outbox() if t.endswith("SalesDataErased")]
    from marque.sales.v1 import sales_events_pb2 as ev

    assert ev.SalesDataErased.FromString(receipts[0]).records_erased == 2


async def test_concurrent_twins_of_one_booking_get_the_same_drive(sales: Harness) -> None:
    opp, car = await sales.open_opportunity(), await setup_car(sales)
    req = pb.BookTestDriveRequest(
        opportunity_id=opp, vin=car, consultant_id="sc-1", request_id="twin"
    )
    req.start_time.FromDatetime(at(10))
    twins = await asyncio.gather(
        *(sales.stub.BookTestDrive(req, metadata=md(D1)) for _ in range(8))
    )
    assert len({t.test_drive.id for t in twins}) == 1


async def test_a_configured_forfeit_is_kept_once_a_car_is_allocated(database_url: str) -> None:
    from decimal import Decimal

    from services.sales.domain.config import SalesConfig
    from services.sales.tests.harness import serve

    async with serve(database_url, SalesConfig(allocated_forfeit=Decimal("1000"))) as sales:
        order = await order_from_quote(sales)
        order = (
            await sales.stub.PayDeposit(
                pb.PayDepositRequest(order_id=order.id, amount=cny("5000")), metadata=md(D1)
            )
        ).order
        confirmed_refund = await order_from_quote(sales)  # a second order, cancelled confirmed
        await sales.stub.PayDeposit(
            pb.PayDepositRequest(order_id=confirmed_refund.id, amount=cny("5000")), metadata=md(D1)
        )
        stock = sales_pb2.StockVehicle(vin=vin(70), model_code="M5", trim_code="M5-LR")
        await sales.stub.PutStockVehicle(pb.PutStockVehicleRequest(vehicle=stock), metadata=md(D1))
        await sales.stub.AllocateVehicle(
            pb.AllocateVehicleRequest(order_id=order.id, vin=vin(70)), metadata=md(D1)
        )
        allocated = (
            await sales.stub.CancelOrder(
                pb.CancelOrderRequest(order_id=order.id, reason="changed their mind"),
                metadata=md(D1),
            )
        ).order
        confirmed = (
            await sales.stub.CancelOrder(
                pb.CancelOrderRequest(order_id=confirmed_refund.id, reason="changed their mind"),
                metadata=md(D1),
            )
        ).order
    assert yuan(allocated.refund) == "4000.00" and yuan(confirmed.refund) == "5000.00"
