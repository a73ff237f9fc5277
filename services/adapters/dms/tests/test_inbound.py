"""The inbound endpoint over real HTTP (aiohttp) with the adapter's real database, on both
back ends: what is accepted once, what is refused and why; and the documents read back
through DmsService with each dealer seeing its own."""

from __future__ import annotations

import asyncio
import time

import grpc
from marque.dms.v1 import dms_events_pb2, dms_pb2, dms_service_pb2

from services.adapters.dms.tests.harness import CUSTOMER, D1, D2, OEM, fails, md, serve
from services.adapters.dms.tests.helpers import (
    VIN,
    Dms,
    body_of,
    post,
    rdr,
    sample,
    signed,
    status_event,
)

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_a_document_is_accepted_once_with_its_event_in_its_trace(
    database_url: str, dms: Dms
) -> None:
    async with serve(database_url, dms) as h:
        body = sample("star_detailed_repair_cost.json")
        head = {**signed("D1", body), "traceparent": TRACE}
        first = await post(h.http, h.base, "D1", "repair-orders", body, head)
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["duplicate"] is False and answer["document_id"].startswith("doc_")
        # The DMS sends it again (a new timestamp, so a new signature): nothing changes.
        await asyncio.sleep(1.01)
        again = await post(h.http, h.base, "D1", "repair-orders", body)
        assert again.status_code == 200 and again.json() == {**answer, "duplicate": True}
        rows = await h.outbox()
        assert len(rows) == 1
        kind, subject, payload, traceparent = rows[0]
        assert kind == "marque.dms.v1.RepairOrderReceived" and subject == "D1/RO-GA-88291"
        assert traceparent.split("-")[1] == TRACE.split("-")[1]  # the HTTP request's trace
        event = dms_events_pb2.RepairOrderReceived.FromString(payload)
        assert [x.labor_operation_id for x in event.lines] == ["OP-FILTER-001", "OP-WIPER-002"]
        assert event.lines[0].amount.currency_code == "USD" and event.lines[0].amount.units == 45
        assert event.document_id == answer["document_id"]
        got = await h.stub.GetInboundDocument(
            dms_service_pb2.GetInboundDocumentRequest(document_id=answer["document_id"]),
            metadata=md(D1),
        )
        doc = got.document
        assert doc.kind == dms_pb2.DOCUMENT_KIND_REPAIR_ORDER and doc.source_id == "RO-GA-88291"
        assert doc.event_id == answer["event_id"] and len(doc.body_sha256) == 64


async def test_signatures_replays_and_bodies_are_refused_with_their_reason(
    database_url: str, dms: Dms
) -> None:
    async with serve(database_url, dms) as h:
        body = body_of(status_event())
        head = signed("D1", body)
        ok = await post(h.http, h.base, "D1", "repair-status-events", body, head)
        assert ok.status_code == 200
        replay = await post(h.http, h.base, "D1", "repair-status-events", body, head)
        assert (replay.status_code, replay.json()["error"]["reason"]) == (409, "SIGNATURE_REPLAYED")
        cases = [
            ("D2", signed("D1", body), 401, "SIGNATURE_INVALID"),  # D1's signature on D2's door
            ("D1", signed("D1", body, at=time.time() - 301), 401, "TIMESTAMP_STALE"),
            ("D1", {"Content-Type": "application/json"}, 401, "SIGNATURE_MISSING"),
            ("D9", signed("D1", body), 401, "UNKNOWN_DEALER"),
        ]
        for dealer, headers, status, reason in cases:
            resp = await post(h.http, h.base, dealer, "repair-status-events", body, headers)
            assert (resp.status_code, resp.json()["error"]["reason"]) == (status, reason)
        cut = sample("star_service_appointment_initiate.json")
        resp = await post(h.http, h.base, "D1", "service-appointments", cut)
        assert (resp.status_code, resp.json()["error"]["reason"]) == (400, "MALFORMED_JSON")
        assert "line" in resp.json()["error"]["message"]
        resp = await post(
            h.http, h.base, "D1", "retail-delivery-reports", sample("star_rdr_example_1.json")
        )
        error = resp.json()["error"]
        assert (resp.status_code, error["reason"]) == (400, "INVALID_DOCUMENT")
        assert [f["field"] for f in error["fields"]] == ["$.vehicle.vehicle_identifier.vin"]
        xml = await h.http.post(
            f"{h.base}/star/v1/dealers/D1/repair-orders",
            content=b"<x/>",
            headers={**signed("D1", b"<x/>"), "Content-Type": "application/xml"},
        )
        assert xml.status_code == 415
        unknown = await post(h.http, h.base, "D1", "invoices", body)
        assert unknown.status_code == 404
        assert len(await h.outbox()) == 1  # only the first status event became an event


async def test_one_key_with_another_content_is_a_conflict(database_url: str, dms: Dms) -> None:
    async with serve(database_url, dms) as h:
        first = await post(h.http, h.base, "D1", "retail-delivery-reports", body_of(rdr()))
        assert first.status_code == 200 and first.json()["duplicate"] is False
        other = rdr(vin="LSVAU2181N2183295")
        resp = await post(h.http, h.base, "D1", "retail-delivery-reports", body_of(other))
        assert (resp.status_code, resp.json()["error"]["reason"]) == (409, "DOCUMENT_CONFLICT")
        # The same RDR id from another dealer is that dealer's own document.
        d2 = await post(h.http, h.base, "D2", "retail-delivery-reports", body_of(rdr()))
        assert d2.status_code == 200 and d2.json()["duplicate"] is False
        rows = await h.outbox()
        assert [r[1] for r in rows] == ["D1/RDR-1", "D2/RDR-1"]
        event = dms_events_pb2.RetailDeliveryReported.FromString(rows[0][2])
        assert (event.vin, event.rdr_status, event.dealer_id) == (VIN, "TRANSMITTED", "D1")


async def test_many_concurrent_posts_and_resends_are_each_recorded_once(
    database_url: str, dms: Dms
) -> None:
    async with serve(database_url, dms) as h:
        bodies = [body_of(status_event("RO-C", n)) for n in range(1, 41)]
        # Each resend signed anew (a second later): a verbatim copy would be a replay.
        later = time.time() + 1
        sends = [post(h.http, h.base, "D1", "repair-status-events", b) for b in bodies] + [
            post(h.http, h.base, "D1", "repair-status-events", b, signed("D1", b, at=later))
            for b in bodies
        ]
        answers = await asyncio.gather(*sends)
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers][:3]
        assert sum(1 for a in answers if not a.json()["duplicate"]) == 40
        assert len(await h.outbox()) == 40


async def test_each_dealer_reads_its_own_documents(database_url: str, dms: Dms) -> None:
    async with serve(database_url, dms) as h:
        ids: dict[str, list[str]] = {}
        for dealer in ("D1", "D2"):
            for n in range(1, 4):
                body = body_of(status_event(f"RO-{dealer}", n))
                resp = await post(h.http, h.base, dealer, "repair-status-events", body)
                ids.setdefault(dealer, []).append(resp.json()["document_id"])
        req = dms_service_pb2.GetInboundDocumentRequest(document_id=ids["D2"][0])
        await fails(h.stub.GetInboundDocument(req, metadata=md(D1)), grpc.StatusCode.NOT_FOUND)
        await fails(
            h.stub.GetInboundDocument(req, metadata=md(CUSTOMER)), grpc.StatusCode.PERMISSION_DENIED
        )
        mine = await h.stub.ListInboundDocuments(
            dms_service_pb2.ListInboundDocumentsRequest(dealer_id="D2"), metadata=md(D1)
        )
        assert mine.documents == [] and mine.next_page_token == ""
        own = await h.stub.ListInboundDocuments(
            dms_service_pb2.ListInboundDocumentsRequest(), metadata=md(D1)
        )
        assert [d.document_id for d in own.documents] == ids["D1"][::-1]  # newest first
        seen: list[str] = []
        token = ""
        while True:
            page = await h.stub.ListInboundDocuments(
                dms_service_pb2.ListInboundDocumentsRequest(
                    page_size=4, page_token=token, kind=dms_pb2.DOCUMENT_KIND_REPAIR_STATUS_EVENT
                ),
                metadata=md(OEM),
            )
            seen += [d.document_id for d in page.documents]
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == sorted(ids["D1"] + ids["D2"]) and len(seen) == 6
        bad = dms_service_pb2.ListInboundDocumentsRequest(page_token="forged")
        await fails(
            h.stub.ListInboundDocuments(bad, metadata=md(OEM)), grpc.StatusCode.INVALID_ARGUMENT
        )
        neg = dms_service_pb2.ListInboundDocumentsRequest(page_size=-1)
        await fails(
            h.stub.ListInboundDocuments(neg, metadata=md(OEM)), grpc.StatusCode.INVALID_ARGUMENT
        )
        empty = dms_service_pb2.GetInboundDocumentRequest(document_id="")
        await fails(
            h.stub.GetInboundDocument(empty, metadata=md(OEM)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert D2.dealer_id == "D2"
