"""The ERP adapter's metrics, beside the mesh's `grpc_server_*` ones and the breaker's
`marque_breaker_*` gauges (mesh/breaker.py, backend="sap").

Labels are closed sets: the backend, the operation (csrf_fetch, oauth_token, create,
lookup, read, metadata) and the HTTP status code or transport outcome (timeout,
connect_error, protocol_error). Never an order id or a person.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BACKEND_REQUESTS = Counter(
    "marque_backend_requests",
    "Requests the adapters sent to their backends, by backend, operation and outcome code.",
    ["backend", "operation", "code"],
)
BACKEND_SECONDS = Histogram(
    "marque_backend_request_seconds",
    "Latency of the adapters' requests to their backends.",
    ["backend", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ORDERS_CREATED = Counter(
    "marque_erp_sales_orders_created",
    "SAP sales orders created for Marque orders (found=yes when a look-up found the order "
    "a previous, unclear attempt had created).",
    ["found"],
)


def record_request(backend: str, operation: str, code: str, seconds: float) -> None:
    """One request's outcome and latency."""
    BACKEND_REQUESTS.labels(backend, operation, code).inc()
    BACKEND_SECONDS.labels(backend, operation).observe(seconds)


def record_order(found: bool) -> None:
    """A Marque order that has its SAP order now."""
    ORDERS_CREATED.labels("yes" if found else "no").inc()
