"""Domain metrics of the sales service, next to the mesh's standard `grpc_server_*` ones.

Labels are closed sets (order states, outcomes), never personal data or ids. The counters
live in prometheus_client's default registry, which the mesh's `/metrics` endpoint serves.
"""

from __future__ import annotations

from prometheus_client import Counter

ORDER_TRANSITIONS = Counter(
    "marque_sales_order_transitions",
    "Orders that entered a state (committed), by the state entered.",
    ["state"],
)
TEST_DRIVES_BOOKED = Counter(
    "marque_sales_test_drives_booked",
    "Test drives booked (committed; retried request ids not counted).",
)


def order_entered(state: str) -> None:
    """Count one committed order transition into `state`."""
    ORDER_TRANSITIONS.labels(state=state).inc()
