"""A dealer's DMS reports a car delivered, across real processes as `make run` starts them
(issue 15): an invoiced order in sales, the dealer's signed RDR posted to the DMS adapter's
inbound endpoint -> RetailDeliveryReported over NATS -> sales delivers the order ->
OrderDelivered -> the DMS adapter posts Marque's RDR of the order to the DMS simulator (its
own process); DmsService shows the inbound document to its dealer only, and the delivery
to the OEM. A resend of the RDR changes nothing; a forged one is refused."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc.aio
import httpx
import pytest
from marque.dms.v1 import dms_pb2, dms_service_pb2, dms_service_pb2_grpc
from marque.lead.v1 import lead_service_pb2_grpc
from marque.sales.v1 import sales_pb2, sales_service_pb2_grpc
from marque.sales.v1 import sales_service_pb2 as pb

from mesh import vin as vins
from mesh.identity import Caller, Kind
from services.adapters.dms.domain import signature
from services.adapters.dms.domain.config import DEFAULT_HTTP_PORT, SIMULATOR_PORT, dev_secret
from tests.e2e.test_erp_journey import _confirmed_order
from tests.e2e.test_platform import _auth, platform
from tests.e2e.test_sales_journey import _poll

pytestmark = pytest.mark.e2e
__all__ = ["platform"]
INBOUND = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}/star/v1/dealers"


def _received() -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{SIMULATOR_PORT}/_sim/received"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return list(json.load(resp)["received"])


def _rdr(vin: str) -> bytes:
    return json.dumps(
        {
            "retail_delivery_report_id": f"RDR-{vin}",
            "oem_rdr_status_type": "TRANSMITTED",
            "purchase_type": "RETAIL",
            "occurrence_date_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "vehicle": {"vehicle_identifier": {"vin": vin}},
            "party_references": [{"party_reference_id": "CUST-1", "party_name": "李雷"}],
        }
    ).encode()


async def _post(http: httpx.AsyncClient, dealer: str, body: bytes, secret: str, at: int) -> Any:
    head = {"Content-Type": "application/json", **signature.headers(secret.encode(), at, body)}
    return await http.post(
        f"{INBOUND}/{dealer}/retail-delivery-reports", content=body, headers=head
    )


def test_a_dealers_rdr_delivers_the_order_and_marques_rdr_reaches_the_dms(
    platform: tuple[Path, str],
) -> None:
    var, banner = platform
    assert "dms-adapter" in banner
    oem = _auth(var, Caller(Kind.OEM, "staff-1"))
    car = "LSVAU2180N2183777"
    car = car[:8] + vins.check_digit(car) + car[9:]

    async def journey() -> None:
        async with (
            grpc.aio.insecure_channel("127.0.0.1:50051") as lc,
            grpc.aio.insecure_channel("127.0.0.1:50053") as sc,
            grpc.aio.insecure_channel("127.0.0.1:50062") as dc,
            httpx.AsyncClient(timeout=10) as http,
        ):
            sales = sales_service_pb2_grpc.SalesServiceStub(sc)
            dms = dms_service_pb2_grpc.DmsServiceStub(dc)
            order = await _confirmed_order(sales, lead_service_pb2_grpc.LeadServiceStub(lc), var)
            dealer_id = order.dealer_id
            dealer = _auth(var, Caller(Kind.DEALER, "sc-1", dealer_id=dealer_id))
            stock = sales_pb2.StockVehicle(vin=car, model_code="M5", trim_code="M5-LR")
            await sales.PutStockVehicle(pb.PutStockVehicleRequest(vehicle=stock), metadata=dealer)
            allocate = pb.AllocateVehicleRequest(order_id=order.id, vin=car)
            await sales.AllocateVehicle(allocate, metadata=dealer)
            invoice = pb.InvoiceOrderRequest(order_id=order.id, invoice_number="FP-DMS-1")
            order = (await sales.InvoiceOrder(invoice, metadata=dealer)).order
            assert order.state == sales_pb2.ORDER_STATE_INVOICED

            body, secret = _rdr(car), dev_secret(dealer_id)
            forged = await _post(http, dealer_id, body, "not-the-dealers-secret", int(time.time()))
            assert forged.status_code == 401
            first = await _post(http, dealer_id, body, secret, int(time.time()))
            assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
            again = await _post(http, dealer_id, body, secret, int(time.time()) + 1)
            assert again.json()["duplicate"] is True

            async def delivered() -> sales_pb2.Order | None:
                got = await sales.GetOrder(pb.GetOrderRequest(order_id=order.id), metadata=oem)
                return got.order if got.order.state == sales_pb2.ORDER_STATE_DELIVERED else None

            done = await _poll(delivered, "sales delivers the order from the dealer's RDR", 30)
            assert done.vin == car

            async def sent() -> list[dict[str, Any]]:
                return [r for r in _received() if r["id"] == order.id]

            (rdr,) = await _poll(sent, "Marque's RDR of the order reaches the DMS simulator", 30)
            assert rdr["dealer"] == dealer_id and rdr["document"]["vehicle"]["vin"] == car
            got = await dms.GetDelivery(
                dms_service_pb2.GetDeliveryRequest(order_id=order.id), metadata=oem
            )
            assert got.delivery.state == dms_pb2.DELIVERY_STATE_SENT
            assert got.delivery.dms_reference == rdr["reference"]
            mine = await dms.ListInboundDocuments(
                dms_service_pb2.ListInboundDocumentsRequest(), metadata=dealer
            )
            assert [d.document_id for d in mine.documents] == [first.json()["document_id"]]
            other = _auth(var, Caller(Kind.DEALER, "x", dealer_id="D-OTHER"))
            theirs = await dms.ListInboundDocuments(
                dms_service_pb2.ListInboundDocumentsRequest(), metadata=other
            )
            assert list(theirs.documents) == []

    asyncio.run(journey())
