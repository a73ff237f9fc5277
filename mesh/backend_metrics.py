"""The adapters' backend request metrics, written once for every adapter (ERP, DMS...).

`marque_backend_requests_total{backend,operation,code}` and the latency histogram
`marque_backend_request_seconds{backend,operation}` beside the breakers' `marque_breaker_*`
gauges (mesh/breaker.py). Labels are closed sets: the backend ("sap", "dms"), the
operation (csrf_fetch, create, rdr...) and the HTTP status code or transport outcome
(timeout, connect_error, protocol_error, rejected). Never an order id, a dealer's document
id or a person.
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


def record_request(backend: str, operation: str, code: str, seconds: float) -> None:
    """One request's outcome and latency."""
    BACKEND_REQUESTS.labels(backend, operation, code).inc()
    BACKEND_SECONDS.labels(backend, operation).observe(seconds)
