"""The DMS adapter's metrics, beside the mesh's `grpc_server_*` ones, the breakers'
`marque_breaker_*` gauges (mesh/breaker.py, backend "dms/<dealer>") and the adapters'
shared backend request metrics (mesh/backend_metrics.py, backend "dms").

Labels are closed sets: the document kind and the outcome (accepted, duplicate, or the
refusal reason). Never a dealer's document id, a VIN or a person.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from mesh.backend_metrics import record_request

__all__ = ["INBOUND", "INBOUND_SECONDS", "inbound", "record_request"]

INBOUND = Counter(
    "marque_dms_inbound_documents",
    "STAR documents dealers' DMSs posted, by kind and outcome (accepted, duplicate, or the "
    "reason of the refusal).",
    ["kind", "outcome"],
)
INBOUND_SECONDS = Histogram(
    "marque_dms_inbound_seconds",
    "Time from an inbound request's body read to its answer (the commit included).",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def inbound(kind: str, outcome: str, seconds: float) -> None:
    """One inbound request's outcome."""
    INBOUND.labels(kind, outcome).inc()
    INBOUND_SECONDS.labels(kind).observe(seconds)
