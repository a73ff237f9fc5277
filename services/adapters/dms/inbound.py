"""The inbound HTTP endpoint (aiohttp): dealers' DMSs post their STAR documents here.

    POST /star/v1/dealers/{dealer}/repair-orders
    POST /star/v1/dealers/{dealer}/repair-status-events
    POST /star/v1/dealers/{dealer}/retail-delivery-reports
    POST /star/v1/dealers/{dealer}/service-appointments
    GET  /healthz

Transport only: the body, the two signature headers and the path go to intake.py; its
answer goes back as JSON. 200 `{"document_id", "event_id", "duplicate"}` when accepted
(duplicate: a resend, nothing changed); refusals are `{"error": {"reason", "message",
"fields"}}` with 400 (malformed JSON, an invalid document: every field path), 401
(unknown dealer, missing, stale or wrong signature), 409 (a replayed signature, a
conflicting document), 413, 415, 503 (stopping). Never a traceback. Each request is a
SERVER span (continuing the DMS's `traceparent` if it sends one), so the event it becomes
carries that trace. Logs name the dealer and the reason, never the document.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from mesh.errors import DomainError
from mesh.groupcommit import WriterFailed, WriterStopped
from services.adapters.dms import metrics
from services.adapters.dms.domain import errors
from services.adapters.dms.domain.model import Kind
from services.adapters.dms.domain.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from services.adapters.dms.intake import Intake

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("services.adapters.dms")
PREFIX = "/star/v1/dealers"
COLLECTIONS = {
    "repair-orders": Kind.REPAIR_ORDER,
    "repair-status-events": Kind.REPAIR_STATUS_EVENT,
    "retail-delivery-reports": Kind.RETAIL_DELIVERY_REPORT,
    "service-appointments": Kind.SERVICE_APPOINTMENT,
}
_TRACE_HEADERS = ("traceparent", "tracestate")
_JSON_TYPES = frozenset({"application/json", "application/star+json"})
_INTAKE: web.AppKey[Intake] = web.AppKey("intake", Intake)


def application(intake: Intake) -> web.Application:
    """The aiohttp application of the endpoint."""
    app = web.Application(client_max_size=intake.config.max_body_bytes)
    app[_INTAKE] = intake
    app.router.add_post(PREFIX + "/{dealer}/{collection}", _post)
    app.router.add_get("/healthz", _health)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "SERVING"})


def _refusal(r: errors.Refused) -> web.Response:
    return web.json_response(r.body(), status=r.status)


async def _read(request: web.Request, kind: Kind) -> bytes:
    if request.content_type not in _JSON_TYPES:
        raise errors.Refused(415, errors.UNSUPPORTED_MEDIA_TYPE, "send application/json")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.Refused(413, errors.BODY_TOO_LARGE, "the body is too large") from None


async def _post(request: web.Request) -> web.Response:
    kind = COLLECTIONS.get(request.match_info["collection"])
    if kind is None:
        return web.json_response(
            {"error": {"reason": "NOT_FOUND", "message": "no such collection"}}, status=404
        )
    dealer = request.match_info["dealer"][:32]
    started = time.monotonic()
    carrier = {k: v for k in _TRACE_HEADERS if (v := request.headers.get(k))}
    parent = propagate.extract(carrier) if carrier else None
    with _tracer.start_as_current_span(
        f"POST {PREFIX}/{{dealer}}/{request.match_info['collection']}",
        context=parent,
        kind=SpanKind.SERVER,
    ) as span:
        span.set_attribute("http.request.method", "POST")
        span.set_attribute("marque.dealer_id", dealer)
        response, outcome = await _handle(request, dealer, kind)
        span.set_attribute("http.response.status_code", response.status)
    metrics.inbound(kind.value, outcome, time.monotonic() - started)
    return response


async def _handle(request: web.Request, dealer: str, kind: Kind) -> tuple[web.Response, str]:
    intake = request.app[_INTAKE]
    try:
        body = await _read(request, kind)
        outcome = await intake.receive(
            dealer,
            kind,
            request.headers.get(TIMESTAMP_HEADER, ""),
            request.headers.get(SIGNATURE_HEADER, ""),
            body,
        )
    except errors.Refused as r:
        log.info("inbound %s from %s refused: %s", kind.value, dealer, r.reason)
        return _refusal(r), r.reason
    except (WriterStopped, DomainError):  # stopping, or the database unavailable
        return _refusal(errors.Refused(503, errors.NOT_READY, "try again shortly")), "unavailable"
    except WriterFailed:
        log.error("inbound %s from %s: the write failed", kind.value, dealer)
        return _refusal(errors.Refused(500, "INTERNAL", "the document was not recorded")), "error"
    doc = outcome.document
    body_out = {
        "document_id": doc.document_id,
        "event_id": doc.event_id,
        "duplicate": outcome.duplicate,
    }
    return web.json_response(body_out, status=200), "duplicate" if outcome.duplicate else "accepted"


async def serve(intake: Intake, host: str, port: int) -> web.AppRunner:
    """Start the endpoint on host:port (0: a free port); the runner stops it."""
    runner = web.AppRunner(application(intake), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the endpoint listens on."""
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("the endpoint is not listening")
