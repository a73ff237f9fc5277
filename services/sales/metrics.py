"""Domain metrics of the sales service, next to the mesh's standard `grpc_server_*` ones.

Labels are closed sets (principal kinds), never personal data or ids. The counters live in
prometheus_client's default registry, which the mesh's `/metrics` endpoint serves; add a
panel for them to the service's dashboard (tools/k8s_gen.py).
"""

from __future__ import annotations

from prometheus_client import Counter

SALES_CREATED = Counter(
    "marque_sales_saleses_created",
    "Sales records created (retried request ids not counted), by the kind of caller.",
    ["principal"],
)


def record_created(principal: str) -> None:
    """Count one committed CreateSales by a caller of kind `principal`."""
    SALES_CREATED.labels(principal=principal).inc()
