"""A delivered order's RDR to the dealer's DMS: the real client against the DMS simulator
over real HTTP (signed, in the event's trace, once), its failures (outage, refusal, an
unclear timeout, a dealer without a DMS) and the per-dealer breaker; GetDelivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import grpc
import pytest
import sqlalchemy as sa
from marque.dms.v1 import dms_service_pb2
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY

from mesh.errors import InvalidArgument, Unavailable
from mesh.unit_of_work import UnitOfWork, transaction
from services.adapters.dms import events as dms_events
from services.adapters.dms.domain import errors, outbound, star
from services.adapters.dms.domain.model import Kind
from services.adapters.dms.events import delivered_order
from services.adapters.dms.store import deliveries
from services.adapters.dms.store.tables import deliveries as delivery_rows
from services.adapters.dms.tests.harness import D1, D2, OEM, delivered, fails, md, serve
from services.adapters.dms.tests.helpers import VIN, Clock, Dms

_tracer = TracerProvider().get_tracer("test")


def _sent(code: str) -> float:
    labels = {"backend": "dms", "operation": "rdr", "code": code}
    return REGISTRY.get_sample_value("marque_backend_requests_total", labels) or 0.0


async def _count(h: object) -> int:
    async with h.db.engine.connect() as conn:  # type: ignore[attr-defined]
        return await deliveries.count(conn)


async def test_a_delivered_order_reaches_its_dealers_dms_once(database_url: str, dms: Dms) -> None:
    async with serve(database_url, dms) as h:
        before = _sent("201")
        with _tracer.start_as_current_span("OrderDelivered") as span:
            await h.deliver(delivered("ord_1"))
            trace_id = format(span.get_span_context().trace_id, "032x")
        await h.deliver(delivered("ord_1"))  # a redelivery: nothing sent again
        assert dms.sim.posts == 1 and _sent("201") == before + 1
        ((key, (reference, document)),) = dms.sim.received.items()
        assert key == ("D1", "retail-delivery-reports", "ord_1")
        assert document["vehicle"]["vin"] == VIN and document["sales_transaction_number"] == "ord_1"
        assert "party_references" not in document  # no buyer data leaves Marque
        assert dms.sim.traceparents[0].split("-")[1] == trace_id
        got = await h.stub.GetDelivery(
            dms_service_pb2.GetDeliveryRequest(order_id="ord_1"), metadata=md(D1)
        )
        assert (got.delivery.dms_reference, got.delivery.http_status) == (reference, 201)
        assert (
            await h.stub.GetDelivery(
                dms_service_pb2.GetDeliveryRequest(order_id="ord_1"), metadata=md(OEM)
            )
        ).delivery.dealer_id == "D1"
        other = dms_service_pb2.GetDeliveryRequest(order_id="ord_1")
        await fails(h.stub.GetDelivery(other, metadata=md(D2)), grpc.StatusCode.NOT_FOUND)
        none = dms_service_pb2.GetDeliveryRequest(order_id="ord_9")
        await fails(h.stub.GetDelivery(none, metadata=md(OEM)), grpc.StatusCode.NOT_FOUND)


async def test_an_outage_waits_and_a_refusal_is_a_dead_letter(database_url: str, dms: Dms) -> None:
    async with serve(database_url, dms) as h:
        dms.sim.knobs.outage = True
        with pytest.raises(Unavailable) as e:
            await h.deliver(delivered("ord_2"))
        assert e.value.reason == errors.DMS_UNAVAILABLE
        dms.sim.knobs.outage = False
        h.breaker_clock.now += 121  # the outage leaves the breaker's window
        dms.sim.knobs.reject_next = 1
        with pytest.raises(InvalidArgument) as refused:
            await h.deliver(delivered("ord_2"))
        assert refused.value.reason == errors.DMS_REJECTED and "refused" in refused.value.message
        assert await _count(h) == 0
        await h.deliver(delivered("ord_2"))  # replayed once the DMS takes it
        assert await _count(h) == 1
        with pytest.raises(InvalidArgument) as unknown:
            await h.deliver(delivered("ord_3", dealer="D9"))  # no secret for D9
        assert unknown.value.reason == errors.DMS_NOT_CONFIGURED


async def test_an_unclear_timeout_is_sent_again_and_not_doubled(
    database_url: str, dms: Dms
) -> None:
    async with serve(database_url, dms, timeout_seconds=0.5) as h:
        dms.sim.knobs.hang_after_record = 1
        dms.sim.knobs.hang_seconds = 1.5
        with pytest.raises(Unavailable) as e:
            await h.deliver(delivered("ord_4"))
        assert e.value.reason == errors.DMS_TIMEOUT
        assert len(dms.sim.received) == 1  # the DMS has it, Marque does not know
        h.breaker_clock.now += 121
        await h.deliver(delivered("ord_4"))
        assert len(dms.sim.received) == 1 and dms.sim.resends == 1
        assert await _count(h) == 1


async def test_one_dealers_breaker_opens_while_the_others_are_served(dms: Dms) -> None:
    clock = Clock()
    client = dms.client(clock=clock)
    engine_d1 = client.breaker("D1")
    try:
        dms.sim.knobs.outage = True
        order = delivered_order(delivered("ord_5"))
        with pytest.raises(Unavailable):
            await client.send_rdr("D1", {"retail_delivery_report_id": "x"}, "x")
        posts = dms.sim.posts
        for _ in range(5):  # refused locally, fast: the DMS sees none of them
            with pytest.raises(Unavailable) as e:
                await client.send_rdr("D1", {"retail_delivery_report_id": "x"}, "x")
            assert e.value.reason == "BACKEND_THROTTLED"
        assert dms.sim.posts == posts and engine_d1.state != "closed"
        dms.sim.knobs.outage = False
        answer = await client.send_rdr("D2", {"retail_delivery_report_id": order.order_id}, "k")
        assert answer.http_status == 201  # D2's DMS is still called
        clock.now += 121
        assert engine_d1.state == "closed"
        assert (
            await client.send_rdr("D1", {"retail_delivery_report_id": "y"}, "y")
        ).http_status == 201
    finally:
        await client.aclose()


async def test_nothing_is_recorded_when_the_rdr_is_not_taken(database_url: str, dms: Dms) -> None:
    async with serve(database_url, dms) as h:
        dms.sim.knobs.error_rate = 1.0
        with pytest.raises(Unavailable):
            await h.deliver(delivered("ord_6"))
        async with h.db.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT count(*) FROM inbox"))).scalar_one()
        assert rows == 0 and await _count(h) == 0


async def test_what_we_send_is_star_our_own_endpoint_would_accept(dms: Dms) -> None:
    order = delivered_order(delivered("ord_7"))
    report = star.parse(Kind.RETAIL_DELIVERY_REPORT, outbound.rdr(order)).document
    assert (report.vin, report.order_id) == (VIN, "ord_7")  # type: ignore[union-attr]
    start = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)
    booked = outbound.BookedAppointment(
        "appt_1", "D1", VIN, ("SCHEDULED_SERVICE",), start, start + dt.timedelta(hours=1)
    )
    document = outbound.appointment(booked)
    parsed = star.parse(Kind.SERVICE_APPOINTMENT, document)
    assert parsed.source_id == "appt_1"
    client = dms.client()
    try:
        first = await client.send_service_appointment("D1", document, "appt_1")
        again = await client.send_service_appointment("D1", document, "appt_1")
    finally:
        await client.aclose()
    assert (first.http_status, again.http_status) == (201, 200)
    assert first.reference == again.reference and dms.sim.resends == 1


async def test_no_transaction_is_open_while_the_dms_answers(database_url: str, dms: Dms) -> None:
    """The RDR (here 600 ms to answer) is sent before the unit of work: no database
    connection is held meanwhile (PostgreSQL: none idle in a transaction), and another
    writer commits at once (SQLite: the write lock is free)."""
    async with serve(database_url, dms) as h:
        dms.sim.knobs.latency_ms = 600
        delivering = asyncio.ensure_future(h.deliver(delivered("ord_7")))
        await asyncio.sleep(0.3)
        engine = dms_events.ENGINE.current
        assert engine is not None
        assert engine.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        started = time.monotonic()

        async def write(uow: UnitOfWork) -> None:  # SQLite: BEGIN IMMEDIATE, the write lock
            await uow.conn.execute(sa.delete(delivery_rows).where(delivery_rows.c.order_id == "-"))

        await transaction(engine.db, write)
        assert time.monotonic() - started < 0.25 and not delivering.done()
        await delivering
        assert dms.sim.posts == 1 and await _count(h) == 1


async def test_a_handler_prepare_did_not_run_for_still_sends_once(
    database_url: str, dms: Dms
) -> None:
    """A batch run again event by event (or the replay command) calls the handler alone:
    it sends the RDR itself, and a redelivery after that sends nothing."""
    async with serve(database_url, dms) as h:
        await h.deliver(delivered("ord_8"), prepared=False)
        await h.deliver(delivered("ord_8"))
        assert dms.sim.posts == 1 and await _count(h) == 1


async def test_each_rdr_is_sent_in_the_trace_of_its_event(database_url: str, dms: Dms) -> None:
    """prepare sends outside the consumer's span: each HTTP call carries the trace of the
    event that caused it (its envelope's traceparent), not whatever is current."""
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with serve(database_url, dms) as h:
        with _tracer.start_as_current_span("elsewhere"):
            await h.deliver(delivered("ord_9"), traceparent=f"00-{trace}-00f067aa0ba902b7-01")
        assert dms.sim.posts == 1 and dms.sim.traceparents[0].split("-")[1] == trace
