"""Spans of the asynchronous hop: PRODUCER `publish <subject>` (child of the emitting call),
CONSUMER `process <subject>` (child of the publish), following the OpenTelemetry messaging
conventions. Only sampled traces get spans; an unsampled one passes its `traceparent` on
unchanged, so the trace id still goes from the emitting call to the handler and beyond."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState

from mesh.tracing import parse_traceparent


def remote_context(traceparent: str, tracestate: str = "") -> SpanContext | None:
    """The span context a `traceparent` names (None when absent or malformed)."""
    parsed = parse_traceparent(traceparent) if traceparent else None
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    state = TraceState.from_header([tracestate]) if tracestate else None
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0xFF), trace_state=state
    )


def parent_of(ctx: SpanContext) -> Context:
    """An OpenTelemetry context whose current span is `ctx`."""
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def start(
    tracer: trace.Tracer,
    name: str,
    kind: SpanKind,
    parent: SpanContext | None,
    attributes: dict[str, Any],
) -> Span | None:
    """A span under `parent` when that trace is sampled, else None."""
    if parent is None or not parent.trace_flags.sampled:
        return None
    return tracer.start_span(name, context=parent_of(parent), kind=kind, attributes=attributes)


def messaging_attributes(subject: str, event_id: str, operation: str) -> dict[str, Any]:
    """The messaging semantic conventions' attributes of a publish or a process."""
    return {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.message.id": event_id,
        "messaging.operation.type": operation,
    }
