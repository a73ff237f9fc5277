"""An order confirmed in sales reaches SAP across real processes, as `make run` starts them
(issue 15): sales' OrderConfirmed over NATS -> the ERP adapter -> a deep insert into the SAP
simulator (its own process, with the right items and amount) -> SalesOrderCreated -> the
SAP number on the order in sales; GetSalesOrder shows SAP's view to the OEM."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from marque.erp.v1 import erp_service_pb2, erp_service_pb2_grpc
from marque.lead.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc
from marque.sales.v1 import sales_pb2, sales_service_pb2_grpc
from marque.sales.v1 import sales_service_pb2 as pb

from mesh.convert import decimal_of
from mesh.identity import Caller, Kind
from services.adapters.erp.domain.config import SIMULATOR_PORT
from tests.e2e.test_platform import _auth, platform
from tests.e2e.test_sales_journey import _cny, _poll

pytestmark = pytest.mark.e2e
__all__ = ["platform"]


def _sap_orders() -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{SIMULATOR_PORT}/_sim/orders"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return list(json.load(resp)["orders"])


async def _confirmed_order(sales: Any, leads: Any, var: Path) -> sales_pb2.Order:
    oem = _auth(var, Caller(Kind.OEM, "staff-1"))
    lead = (
        await leads.SubmitLead(
            lead_service_pb2.SubmitLeadRequest(
                lead=lead_service_pb2.LeadInput(
                    customer=lead_pb2.Customer(name="李雷", mobile="13600136111", city="Shanghai"),
                    vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M5"),
                ),
                channel=lead_pb2.CHANNEL_BRAND_SITE,
                request_id="erp-1",
            ),
            metadata=oem,
            timeout=10,
        )
    ).lead
    dealer = _auth(var, Caller(Kind.DEALER, "sc-1", dealer_id=lead.dealer_id))

    async def opened() -> list[sales_pb2.Opportunity]:
        page = await sales.ListOpportunities(pb.ListOpportunitiesRequest(), metadata=dealer)
        return [o for o in page.opportunities if o.lead_id == lead.id]

    (opp,) = await _poll(opened, "sales opens the dealer's opportunity from LeadCreated")
    trim = sales_pb2.Trim(
        model_code="M5",
        trim_code="M5-LR",
        name="M5 Long Range",
        price=_cny(226000),
        nev_listed=True,
        effective_from="2026-01-01",
    )
    await sales.PutTrim(pb.PutTrimRequest(trim=trim), metadata=oem)
    spec = sales_pb2.QuoteSpec(trim_code="M5-LR")
    quote = (
        await sales.CreateQuote(
            pb.CreateQuoteRequest(
                opportunity_id=opp.id, member_id="m-erp", request_id="erp-q", quote=spec
            ),
            metadata=dealer,
        )
    ).quote
    order = (
        await sales.CreateOrder(
            pb.CreateOrderRequest(quote_id=quote.id, deposit=_cny(5000), request_id="erp-o"),
            metadata=dealer,
        )
    ).order
    paid = pb.PayDepositRequest(order_id=order.id, amount=_cny(5000), etag=order.etag)
    order = (await sales.PayDeposit(paid, metadata=dealer)).order
    assert order.state == sales_pb2.ORDER_STATE_CONFIRMED
    return order


def test_a_confirmed_order_reaches_sap_and_its_number_comes_back(
    platform: tuple[Path, str],
) -> None:
    var, banner = platform
    assert "erp-adapter" in banner
    oem = _auth(var, Caller(Kind.OEM, "staff-1"))

    async def journey() -> None:
        async with (
            grpc.aio.insecure_channel("127.0.0.1:50051") as lc,
            grpc.aio.insecure_channel("127.0.0.1:50053") as sc,
            grpc.aio.insecure_channel("127.0.0.1:50061") as ec,
        ):
            sales = sales_service_pb2_grpc.SalesServiceStub(sc)
            leads = lead_service_pb2_grpc.LeadServiceStub(lc)
            erp = erp_service_pb2_grpc.ErpServiceStub(ec)
            order = await _confirmed_order(sales, leads, var)

            async def numbered() -> sales_pb2.Order | None:
                got = await sales.GetOrder(pb.GetOrderRequest(order_id=order.id), metadata=oem)
                return got.order if got.order.sap_sales_order else None

            numbered_order = await _poll(numbered, "the SAP number on the order in sales", 30)
            [sap] = [o for o in _sap_orders() if o["PurchaseOrderByCustomer"] == order.id]
            assert sap["SalesOrder"] == numbered_order.sap_sales_order
            price = decimal_of(order.figures.invoice_price)
            assert Decimal(sap["TotalNetAmount"]) == price
            items = sap["to_Item"]["results"]
            assert [(i["Material"], i["RequestedQuantity"]) for i in items] == [("M5", "1.000")]
            got = await erp.GetSalesOrder(
                erp_service_pb2.GetSalesOrderRequest(order_id=order.id), metadata=oem
            )
            assert got.sales_order.sap_sales_order == sap["SalesOrder"]
            assert decimal_of(got.sales_order.net_amount) == price

    asyncio.run(journey())
