"""The real outbound client of the dealers' DMSs: STAR JSON over HTTPS (httpx).

One `httpx.AsyncClient` per adapter process (connections kept alive and reused across
dealers and calls). Each call is signed as dealers sign theirs to us (domain/signature.py,
with the dealer's secret, so the DMS can tell Marque from anyone), carries the dealer's
bearer token when configured and an `Idempotency-Key` (the order id: the DMS keys the
RDR by it, so the resend after an unclear timeout updates, never duplicates).

Each dealer has its own breaker (mesh/breaker.py, backend "dms/<dealer>"): one dealer's
DMS down is refused locally, fast, while the others are still called. Answers: 2xx is
done; 408, 429 and 5xx, a timeout or a broken connection are `Unavailable` (the event
waits and is delivered later); other 4xx are `InvalidArgument` (a dead letter). Each
request is a CLIENT span in the trace of the event that caused it and a
`marque_backend_requests_total{backend="dms"}` sample. Nothing of the document is logged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from mesh.breaker import AdaptiveBreaker
from services.adapters.dms import metrics
from services.adapters.dms.domain import errors, signature
from services.adapters.dms.domain.config import DmsConfig

BACKEND = "dms"
_tracer = trace.get_tracer("services.adapters.dms")
_RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Answer:
    """The DMS's answer to a document we sent."""

    http_status: int
    reference: str


class StarClient:
    """Sends STAR documents to the dealers' DMSs."""

    def __init__(
        self,
        config: DmsConfig,
        *,
        breaker: Callable[[str], AdaptiveBreaker] | None = None,
        wall: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._wall = wall
        self._make_breaker = breaker or (lambda dealer: AdaptiveBreaker(f"{BACKEND}/{dealer}"))
        self._breakers: dict[str, AdaptiveBreaker] = {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
            headers={"Accept": "application/json"},
            transport=transport,
        )

    def breaker(self, dealer_id: str) -> AdaptiveBreaker:
        """The dealer's breaker (made on first use)."""
        found = self._breakers.get(dealer_id)
        if found is None:
            found = self._breakers[dealer_id] = self._make_breaker(dealer_id)
        return found

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        await self._http.aclose()

    async def send_rdr(self, dealer_id: str, document: dict[str, Any], key: str) -> Answer:
        """POST a retail delivery report to the dealer's DMS."""
        return await self._post(dealer_id, "/retail-delivery-reports", "rdr", document, key)

    async def send_service_appointment(
        self, dealer_id: str, document: dict[str, Any], key: str
    ) -> Answer:
        """POST a service appointment to the dealer's DMS (for aftersales' appointments,
        once aftersales emits them; nothing calls it yet)."""
        return await self._post(dealer_id, "/service-appointments", "appointment", document, key)

    async def _post(
        self, dealer_id: str, path: str, operation: str, document: dict[str, Any], key: str
    ) -> Answer:
        base = self._config.url_of(dealer_id)
        secret = self._config.secret_of(dealer_id)
        if not base or secret is None:
            raise errors.not_configured(dealer_id)
        body = json.dumps(document, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            **signature.headers(secret, int(self._wall()), body),
        }
        token = self._config.dealer_tokens.get(dealer_id)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{base}/dealers/{dealer_id}{path}"
        resp = await self.breaker(dealer_id).call(lambda: self._send(url, operation, body, headers))
        return _answer(resp)

    async def _send(
        self, url: str, operation: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        """One request, as a span and a metric; what the breaker counts as failing raises."""
        started = time.monotonic()
        code = "error"
        with _tracer.start_as_current_span(f"DMS {operation}", kind=SpanKind.CLIENT) as span:
            span.set_attribute("http.request.method", "POST")
            propagate.inject(headers)  # the DMS may continue the trace (W3C traceparent)
            try:
                resp = await self._http.post(url, content=body, headers=headers)
                code = str(resp.status_code)
                span.set_attribute("http.response.status_code", resp.status_code)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                code = "connect_error"
                raise errors.unavailable(f"the DMS is unreachable ({operation})") from None
            except httpx.TimeoutException:
                code = "timeout"
                raise errors.timed_out(operation) from None
            except httpx.TransportError:
                code = "protocol_error"
                raise errors.timed_out(operation) from None
            finally:
                metrics.record_request(BACKEND, operation, code, time.monotonic() - started)
        if resp.status_code >= 500 or resp.status_code in _RETRYABLE_4XX:
            raise errors.unavailable(f"the DMS answered {resp.status_code} ({operation})")
        return resp


def _answer(resp: httpx.Response) -> Answer:
    """A 2xx as the DMS's reference; a refusal as InvalidArgument with its message."""
    try:
        body = resp.json() if resp.content else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if resp.is_success:
        reference = body.get("reference") or body.get("document_id") or ""
        return Answer(resp.status_code, str(reference)[:80])
    error = body.get("error")
    message = error.get("message", "") if isinstance(error, dict) else ""
    raise errors.rejected(resp.status_code, str(message) or resp.reason_phrase)
