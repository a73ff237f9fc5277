"""The customer journey across real processes (DESIGN.md §6), as `make run` starts them: a
lead submitted to lead becomes the dealer's opportunity in sales (LeadCreated over NATS), is
test-driven (lead: TEST_DRIVE_BOOKED), quoted, ordered, delivered; then member shows the
buyer as the car's owner with the purchase's points, and lead shows the lead WON."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from marque.common.v1 import money_pb2
from marque.lead.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc
from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc
from marque.sales.v1 import sales_pb2, sales_service_pb2_grpc
from marque.sales.v1 import sales_service_pb2 as pb

from mesh import vin as vins
from mesh.identity import Caller, Kind
from tests.e2e.test_platform import _auth, platform

pytestmark = pytest.mark.e2e
__all__ = ["platform"]
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def _vin(body: str) -> str:
    """A VIN with its check digit put right (body: 17 characters, position 9 any)."""
    return body[:8] + vins.check_digit(body) + body[9:]


def _cny(units: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="CNY", units=units)


async def _poll(probe: Any, what: str, seconds: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    pytest.fail(f"not within {seconds:g} s: {what}")


def test_a_lead_becomes_a_delivered_car_of_a_member(platform: tuple[Path, str]) -> None:
    var, _ = platform
    oem = _auth(var, Caller(Kind.OEM, "staff-1"))
    svc = _auth(var, Caller(Kind.SERVICE, "app-backend", service="app-backend"))
    mobile = "13600136000"
    test_car, sold_car = _vin("LSVAU2180N2183290"), _vin("LSVAU2180N2183300")

    async def journey() -> None:
        async with (
            grpc.aio.insecure_channel("127.0.0.1:50051") as lc,
            grpc.aio.insecure_channel("127.0.0.1:50052") as mc,
            grpc.aio.insecure_channel("127.0.0.1:50053") as sc,
        ):
            leads = lead_service_pb2_grpc.LeadServiceStub(lc)
            members = member_service_pb2_grpc.MemberServiceStub(mc)
            sales = sales_service_pb2_grpc.SalesServiceStub(sc)
            lead = (
                await leads.SubmitLead(
                    lead_service_pb2.SubmitLeadRequest(
                        lead=lead_service_pb2.LeadInput(
                            customer=lead_pb2.Customer(
                                name="韩梅梅", mobile=mobile, city="Shanghai"
                            ),
                            vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M5"),
                        ),
                        channel=lead_pb2.CHANNEL_BRAND_SITE,
                        request_id="j-1",
                    ),
                    metadata=oem,
                    timeout=10,
                )
            ).lead
            assert lead.dealer_id, "routing gave the lead a dealer"
            dealer = _auth(var, Caller(Kind.DEALER, "sc-1", dealer_id=lead.dealer_id))

            async def opened() -> list[sales_pb2.Opportunity]:
                page = await sales.ListOpportunities(pb.ListOpportunitiesRequest(), metadata=dealer)
                return [o for o in page.opportunities if o.lead_id == lead.id]

            (opp,) = await _poll(opened, "sales opens the dealer's opportunity from LeadCreated")
            member = (
                await members.RegisterMember(
                    member_service_pb2.RegisterMemberRequest(
                        identity=member_service_pb2.IdentityKey(
                            type=member_pb2.IDENTITY_TYPE_MOBILE, value=mobile
                        ),
                        request_id="j-m1",
                    ),
                    metadata=svc,
                    timeout=10,
                )
            ).member

            await sales.PutTrim(
                pb.PutTrimRequest(
                    trim=sales_pb2.Trim(
                        model_code="M5",
                        trim_code="M5-LR",
                        name="M5 Long Range",
                        price=_cny(226000),
                        nev_listed=True,
                        effective_from="2026-01-01",
                    )
                ),
                metadata=oem,
            )
            await sales.PutTestDriveCar(
                pb.PutTestDriveCarRequest(
                    car=sales_pb2.TestDriveCar(vin=test_car, model_code="M5", active=True)
                ),
                metadata=dealer,
            )
            tomorrow = dt.datetime.now(SHANGHAI).date() + dt.timedelta(days=1)
            start = dt.datetime.combine(tomorrow, dt.time(10), SHANGHAI)
            when = pb.BookTestDriveRequest(
                opportunity_id=opp.id, vin=test_car, consultant_id="sc-1", request_id="j-td"
            )
            when.start_time.FromDatetime(start.astimezone(dt.UTC))
            drive = (await sales.BookTestDrive(when, metadata=dealer)).test_drive

            async def booked() -> bool:
                got = await leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=oem)
                return got.lead.status == lead_pb2.LEAD_STATUS_TEST_DRIVE_BOOKED

            await _poll(booked, "lead follows the booked test drive")
            await sales.CompleteTestDrive(
                pb.CompleteTestDriveRequest(
                    test_drive_id=drive.id, feedback="quiet and quick", rating=5
                ),
                metadata=dealer,
            )

            quote = (
                await sales.CreateQuote(
                    pb.CreateQuoteRequest(
                        opportunity_id=opp.id,
                        member_id=member.id,
                        request_id="j-q",
                        quote=sales_pb2.QuoteSpec(trim_code="M5-LR"),
                    ),
                    metadata=dealer,
                )
            ).quote
            order = (
                await sales.CreateOrder(
                    pb.CreateOrderRequest(quote_id=quote.id, deposit=_cny(5000), request_id="j-o"),
                    metadata=dealer,
                )
            ).order
            order = (
                await sales.PayDeposit(
                    pb.PayDepositRequest(order_id=order.id, amount=_cny(5000), etag=order.etag),
                    metadata=dealer,
                )
            ).order
            await sales.PutStockVehicle(
                pb.PutStockVehicleRequest(
                    vehicle=sales_pb2.StockVehicle(vin=sold_car, model_code="M5", trim_code="M5-LR")
                ),
                metadata=dealer,
            )
            for call, request in (
                (sales.AllocateVehicle, pb.AllocateVehicleRequest(order_id=order.id, vin=sold_car)),
                (
                    sales.InvoiceOrder,
                    pb.InvoiceOrderRequest(order_id=order.id, invoice_number="FP-1"),
                ),
                (
                    sales.RecordDelivery,
                    pb.RecordDeliveryRequest(
                        order_id=order.id,
                        vin=sold_car,
                        checklist=[pb.ChecklistItem(item="keys (2)", done=True)],
                    ),
                ),
            ):
                order = (await call(request, metadata=dealer)).order
            assert order.state == sales_pb2.ORDER_STATE_DELIVERED

            async def owner() -> bool:
                cars = await members.ListVehicles(
                    member_service_pb2.ListVehiclesRequest(member_id=member.id), metadata=svc
                )
                return any(v.vin == sold_car for v in cars.vehicles)

            await _poll(owner, "member registers the buyer as the car's owner")
            got = await members.GetMember(
                member_service_pb2.GetMemberRequest(member_id=member.id), metadata=svc
            )
            assert got.member.points_balance == 2260  # 1 point per whole 100 CNY

            async def won() -> bool:
                got = await leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=oem)
                return got.lead.status == lead_pb2.LEAD_STATUS_WON

            await _poll(won, "lead marks the lead WON on OrderDelivered")

    asyncio.run(journey())
