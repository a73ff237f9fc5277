"""One trace from the emitting call to the handler, across the asynchronous hop."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from mesh.db import Database
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from tests.mesh.events import harness as h
from tests.mesh.serving import traced


async def test_the_handler_continues_the_emitting_calls_trace(db: Database, link: Link) -> None:
    tracing, exporter = traced()
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link, tracer=tracing.tracer)
    consumer = h.consumer(db, link, service, tracer=tracing.tracer)
    relay.start()
    consumer.start()
    try:
        with tracing.tracer.start_as_current_span("SubmitThing", kind=SpanKind.SERVER) as call:
            await h.emit_things(db, outbox, [1], thing="traced")
        [effect] = await h.count_effects(db, 1)
    finally:
        await consumer.stop()
        await relay.stop()
    trace_id = call.get_span_context().trace_id
    assert effect.trace_id == f"{trace_id:032x}"
    spans = {s.name: s for s in exporter.get_finished_spans()}
    subject = f"marque.{service}.ThingHappened"
    publish, process = spans[f"publish {subject}"], spans[f"process {subject}"]
    assert publish.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert {publish.context.trace_id, process.context.trace_id} == {trace_id}
    assert publish.parent is not None and publish.parent.span_id == call.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert publish.attributes is not None
    assert publish.attributes["messaging.system"] == "nats"
    assert publish.attributes["messaging.destination.name"] == subject


async def test_an_unsampled_trace_keeps_its_id_and_makes_no_spans(db: Database, link: Link) -> None:
    tracing, exporter = traced()
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link, tracer=tracing.tracer)
    consumer = h.consumer(db, link, service, tracer=tracing.tracer)
    unsampled = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    relay.start()
    consumer.start()
    try:
        with trace.use_span(NonRecordingSpan(unsampled)):
            await h.emit_things(db, outbox, [1], thing="unsampled")
        [effect] = await h.count_effects(db, 1)
    finally:
        await consumer.stop()
        await relay.stop()
    assert effect.trace_id == f"{0xABC:032x}"
    assert exporter.get_finished_spans() == ()
