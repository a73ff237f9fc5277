"""The real OData V2 client of API_SALES_ORDER_SRV, over httpx.

One `httpx.AsyncClient` per adapter process: connections are kept alive and reused (no
per-call TCP or TLS set-up; up to MARQUE_ERP_ADAPTER_SAP_MAX_CONNECTIONS, in the small
pools of sap/transport.py), the CSRF token is fetched once (`X-CSRF-Token: Fetch` on a
HEAD of the service root, which also sets SAP's session cookie, kept by the client's cookie
jar) and fetched again, once, when SAP answers 403 "CSRF token validation failed". Auth is
Basic or an OAuth2 client-credentials bearer token, cached until shortly before it expires.

Errors come out as mesh errors (domain/odata.py maps SAP's envelope); a timeout is
`SapTimeout`, which for a create means "SAP may have done it" (backend.py looks it up).
Each request is a CLIENT span in the caller's trace and a `marque_backend_requests_total`
sample. Nothing of an order's content is logged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.adapters.erp import metrics
from services.adapters.erp.domain import errors, odata
from services.adapters.erp.domain.config import ErpConfig
from services.adapters.erp.sap.transport import ShardedTransport

BACKEND = "sap"
_CSRF = "X-CSRF-Token"
_tracer = trace.get_tracer("services.adapters.erp")


def _csrf_failed(resp: httpx.Response) -> bool:
    return resp.status_code == 403 and (
        resp.headers.get(_CSRF, "").lower() == "required"
        or "CSRF token validation failed" in resp.text
    )


class ODataClient:
    """Sales orders in SAP: create (deep insert), find by PurchaseOrderByCustomer, read."""

    def __init__(
        self,
        config: ErpConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._config = config
        self._tracer = tracer or _tracer  # tests pass a private one
        self._base = config.sap_url.rstrip("/")
        auth = httpx.BasicAuth(config.user, config.password) if config.auth == "basic" else None
        self._http = httpx.AsyncClient(
            auth=auth,
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            headers={"Accept": "application/json"},
            transport=transport or ShardedTransport(config.max_connections),
        )
        self._csrf: str | None = None
        self._csrf_lock = asyncio.Lock()
        self._bearer: tuple[str, float] | None = None  # token, monotonic expiry
        self._bearer_lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        await self._http.aclose()

    # -- transport ---------------------------------------------------------------------------

    async def _send(self, method: str, url: str, operation: str, **kw: Any) -> httpx.Response:
        """One request, as a span and a metric, its transport failures as mesh errors."""
        started = time.monotonic()
        code = "error"
        with self._tracer.start_as_current_span(f"SAP {operation}", kind=SpanKind.CLIENT) as span:
            span.set_attribute("http.request.method", method)
            try:
                resp = await self._http.request(method, url, **kw)
                code = str(resp.status_code)
                span.set_attribute("http.response.status_code", resp.status_code)
                return resp
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                code = "connect_error"  # never reached SAP: certainly not done
                raise errors.unavailable(f"SAP unreachable ({operation})") from None
            except httpx.TimeoutException:
                code = "timeout"
                raise errors.timed_out(operation) from None
            except httpx.TransportError:
                code = "protocol_error"  # the connection broke mid-call: as unclear as a timeout
                raise errors.timed_out(operation) from None
            finally:
                metrics.record_request(BACKEND, operation, code, time.monotonic() - started)

    async def _headers(self) -> dict[str, str]:
        if self._config.auth != "oauth2":
            return {}
        return {"Authorization": f"Bearer {await self._token()}"}

    async def _token(self) -> str:
        """The OAuth2 client-credentials token, fetched when missing or about to expire."""
        async with self._bearer_lock:
            if self._bearer is not None and self._bearer[1] > time.monotonic():
                return self._bearer[0]
            resp = await self._send(
                "POST",
                self._config.token_url,
                "oauth_token",
                data={"grant_type": "client_credentials"},
                auth=httpx.BasicAuth(self._config.client_id, self._config.client_secret),
            )
            body = self._json(resp)
            lifetime = float(body.get("expires_in", 300))
            self._bearer = (str(body["access_token"]), time.monotonic() + max(1.0, lifetime - 30))
            return self._bearer[0]

    def _json(self, resp: httpx.Response) -> dict[str, Any]:
        """The body of a 2xx answer; SAP's error envelope raised as a mesh error otherwise."""
        try:
            body = resp.json() if resp.content else {}
        except ValueError:
            body = None
        if resp.is_success:
            if not isinstance(body, dict):
                raise errors.bad_response(resp.status_code)
            return body
        raise odata.envelope_error(resp.status_code, body)

    # -- CSRF ----------------------------------------------------------------------------------

    async def _csrf_token(self, stale: str | None = None) -> str:
        """The session's CSRF token; `stale` is the one SAP refused (fetched again once, even
        when many calls saw it refused at the same time)."""
        async with self._csrf_lock:
            if self._csrf is not None and self._csrf != stale:
                return self._csrf
            resp = await self._send(
                "HEAD",
                self._base + "/",
                "csrf_fetch",
                headers={_CSRF: "Fetch", **await self._headers()},
            )
            token = resp.headers.get(_CSRF, "")
            if not resp.is_success or not token or token.lower() == "required":
                raise odata.envelope_error(resp.status_code if not resp.is_success else 503, None)
            self._csrf = token
            return token

    # -- operations --------------------------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST the deep insert; the created `A_SalesOrder` (`d`)."""
        token = await self._csrf_token()
        for attempt in (1, 2):
            headers = {_CSRF: token, "Content-Type": "application/json", **await self._headers()}
            resp = await self._send(
                "POST", self._base + "/A_SalesOrder", "create", json=body, headers=headers
            )
            if attempt == 1 and _csrf_failed(resp):
                token = await self._csrf_token(stale=token)
                continue
            return dict(self._json(resp)["d"])
        raise AssertionError("unreachable")

    async def find(self, order_id: str) -> list[dict[str, Any]]:
        """The sales orders whose PurchaseOrderByCustomer is `order_id` (normally 0 or 1)."""
        params = {
            "$filter": f"PurchaseOrderByCustomer eq {odata.quoted(order_id)}",
            "$top": "2",
            "$format": "json",
        }
        resp = await self._send(
            "GET",
            self._base + "/A_SalesOrder",
            "lookup",
            params=params,
            headers=await self._headers(),
        )
        return odata.results(self._json(resp))

    async def read(self, sap_sales_order: str) -> dict[str, Any] | None:
        """One sales order by its SAP number, None when SAP has none."""
        url = f"{self._base}/A_SalesOrder({odata.quoted(sap_sales_order)})"
        resp = await self._send(
            "GET", url, "read", params={"$format": "json"}, headers=await self._headers()
        )
        if resp.status_code == 404:
            return None
        return dict(self._json(resp)["d"])

    async def metadata(self) -> str:
        """The service's `$metadata` (EDMX)."""
        resp = await self._send(
            "GET", self._base + "/$metadata", "metadata", headers=await self._headers()
        )
        if not resp.is_success:
            raise odata.envelope_error(resp.status_code, None)
        return resp.text
