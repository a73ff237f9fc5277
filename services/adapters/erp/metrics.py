"""The ERP adapter's metrics, beside the mesh's `grpc_server_*` ones and the breaker's
`marque_breaker_*` gauges (mesh/breaker.py, backend="sap"); the backend request counter
and histogram are the adapters' shared ones (mesh/backend_metrics.py).

Labels are closed sets: the backend, the operation (csrf_fetch, oauth_token, create,
lookup, read, metadata) and the HTTP status code or transport outcome (timeout,
connect_error, protocol_error). Never an order id or a person.
"""

from __future__ import annotations

from prometheus_client import Counter

from mesh.backend_metrics import BACKEND_REQUESTS, BACKEND_SECONDS, record_request

__all__ = [
    "BACKEND_REQUESTS",
    "BACKEND_SECONDS",
    "ORDERS_CREATED",
    "record_order",
    "record_request",
]

ORDERS_CREATED = Counter(
    "marque_erp_sales_orders_created",
    "SAP sales orders created for Marque orders (found=yes when a look-up found the order "
    "a previous, unclear attempt had created).",
    ["found"],
)


def record_order(found: bool) -> None:
    """A Marque order that has its SAP order now."""
    ORDERS_CREATED.labels("yes" if found else "no").inc()
