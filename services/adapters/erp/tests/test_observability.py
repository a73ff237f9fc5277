"""What an SRE sees of the ERP adapter (issue 15, "Both"): each SAP request as a CLIENT
span in the trace of the event that caused it (a batch's calls each in their own event's
trace), `marque_backend_requests_total` and the latency histogram by operation, and the
breaker's gauges for backend "sap" as the service builds it; no order id in any label."""

from __future__ import annotations

import sqlalchemy as sa
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from prometheus_client import REGISTRY

from mesh.breaker import AdaptiveBreaker
from mesh.db import Database
from services.adapters.erp import store
from services.adapters.erp.app import sap_backend
from services.adapters.erp.engine import ErpEngine
from services.adapters.erp.sap.backend import SapBackend
from services.adapters.erp.sap.client import ODataClient
from services.adapters.erp.store.tables import sap_claims
from services.adapters.erp.tests.helpers import Clock, Sap, an_order
from tests.mesh.serving import traced


def _event(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))


async def test_each_sap_call_of_a_batch_is_a_span_in_its_events_trace(
    database_url: str, sap: Sap
) -> None:
    tracing, exporter = traced()
    client = ODataClient(sap.config, tracer=tracing.tracer)
    breaker = AdaptiveBreaker("sap-test", clock=Clock(), export_metrics=False)
    db = Database(database_url)
    await db.migrate(store.MIGRATIONS)
    engine = ErpEngine(db, sap.config, SapBackend(client, breaker))
    events = {f"ord_{n}": _event(0xA000 + n, 0xB000 + n) for n in range(3)}
    try:
        await engine.prepare([an_order(o) for o in events], list(events.values()))
    finally:
        await client.aclose()
    async with db.engine.connect() as conn:  # claimed and not yet recorded
        claimed = (await conn.execute(sa.select(sap_claims.c.order_id))).scalars().all()
    await db.dispose()
    assert sorted(claimed) == sorted(events)
    creates = [s for s in exporter.get_finished_spans() if s.name == "SAP create"]
    assert len(creates) == 3 and all(s.kind is SpanKind.CLIENT for s in creates)
    by_trace = {s.context.trace_id: s for s in creates}
    for event in events.values():
        span = by_trace[event.trace_id]  # its own event's trace, not the batch's first
        assert span.parent is not None and span.parent.span_id == event.span_id
        assert span.attributes is not None
        assert span.attributes["http.request.method"] == "POST"
        assert span.attributes["http.response.status_code"] == 201
        assert not any("ord_" in str(v) for v in span.attributes.values())


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_backend_metrics_and_the_breaker_gauges_of_the_service(sap: Sap) -> None:
    backend = sap_backend(sap.config)  # as app.py builds it: exported, backend "sap"
    count = "marque_backend_request_seconds_count"
    lookups, seconds = (
        _sample(count, backend="sap", operation="lookup"),
        _sample(count, backend="sap", operation="create"),
    )
    created = _sample(
        "marque_backend_requests_total", backend="sap", operation="create", code="201"
    )
    try:
        await backend.create_sales_order(an_order("ord_m"), look_first=True)
    finally:
        await backend.aclose()
    assert _sample(count, backend="sap", operation="lookup") == lookups + 1
    assert _sample(count, backend="sap", operation="create") == seconds + 1
    assert (
        _sample("marque_backend_requests_total", backend="sap", operation="create", code="201")
        == created + 1
    )
    assert REGISTRY.get_sample_value("marque_breaker_open", {"backend": "sap"}) == 0.0
    assert REGISTRY.get_sample_value("marque_breaker_reject_probability", {"backend": "sap"}) == 0.0
    labels = {
        tuple(sorted(s.labels.items()))
        for metric in REGISTRY.collect()
        if metric.name.startswith("marque_backend")
        for s in metric.samples
    }
    assert not any("ord_" in value for pairs in labels for _, value in pairs)
