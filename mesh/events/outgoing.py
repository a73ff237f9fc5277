"""What the relay sends for a batch of rows (the NATS messages, with their CloudEvents
header blocks and publish spans) and what it makes of the acks (spans ended, counters).

A publish span is started only for a sampled trace (the low bit of the W3C trace flags,
the last hex digit of the row's `traceparent`); the message then carries the span's own
traceparent, so the consumer's span follows it. Nothing is built for the others: a span's
context and attributes cost more than the rest of the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mesh.events import metrics, spans
from mesh.events.claims import Claimed
from mesh.events.envelope import event_header_block, traceparent_of

EXPECTED_STREAM = "Nats-Expected-Stream"
_ODD_HEX = frozenset("13579bdfBDF")


class Outgoing:
    """The messages of one producing service's stream, and their acks' bookkeeping."""

    def __init__(self, tracer: trace.Tracer, source: str, stream: str) -> None:
        self._tracer = tracer
        self._source = source
        self._expected = f"{EXPECTED_STREAM}: {stream}\r\n"
        self._published: dict[str, Any] = {}  # events_published_total by type

    def messages(self, rows: Sequence[Claimed]) -> tuple[list[tuple[str, bytes, bytes]], list[Any]]:
        """(subject, payload, header block) per row, and each row's span (or None)."""
        messages = []
        started: list[Any] = []
        for row in rows:
            traceparent, span = row.traceparent, None
            if traceparent and traceparent[-1] in _ODD_HEX:
                span = spans.start(
                    self._tracer,
                    f"publish {row.subject}",
                    SpanKind.PRODUCER,
                    spans.remote_context(traceparent, row.tracestate),
                    spans.messaging_attributes(row.subject, row.id, "publish"),
                )
                if span is not None:
                    traceparent = traceparent_of(span.get_span_context())
            started.append(span)
            headers = event_header_block(
                row.id,
                self._source,
                row.type,
                row.aggregate,
                row.create_time,
                traceparent,
                row.tracestate,
                self._expected,
            )
            messages.append((row.subject, row.payload, headers))
        return messages, started

    def settle(
        self, rows: Sequence[Claimed], oks: Sequence[bool], started: Sequence[Any]
    ) -> tuple[list[int], list[int]]:
        """End the spans, count what was published; (acked seqs, failed seqs)."""
        acked: list[int] = []
        failed: list[int] = []
        counts: dict[str, int] = {}
        for row, ok, span in zip(rows, oks, started, strict=True):
            if ok:
                acked.append(row.seq)
                counts[row.type] = counts.get(row.type, 0) + 1
            else:
                failed.append(row.seq)
            if span is not None:
                if not ok:
                    span.set_status(Status(StatusCode.ERROR, "not acknowledged"))
                span.end()
        for type_, n in counts.items():
            counter = self._published.get(type_)
            if counter is None:
                counter = self._published[type_] = metrics.events_published_total.labels(type_)
            counter.inc(n)
        return acked, failed
