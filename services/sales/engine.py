"""The sales service's application layer: one method per RPC, the caller explicit.

The servicer hands decoded values and the `Caller` to `SalesEngine` and gets domain
records back. Here, and only here: who may touch which row (decided once per call, with
`domain/visibility.py`), which unit of work does what (`mesh.unit_of_work`, with the events
it emits: `events.py`, written to the outbox in the same transaction), and idempotency by
the caller's request id (`mesh.idempotency`, AIP-155). The engine is put together from its
parts, one module per aggregate: `base.py` (state, transactions, request ids),
`opportunities.py`, `quotes.py` (with the price book), `testdrives.py`, `orders.py`. The
rules are in `domain/`, the SQL in `store/`.
"""

from __future__ import annotations

from services.sales.base import Clock, utc_now
from services.sales.orders import Orders
from services.sales.testdrives import TestDrives


class SalesEngine(Orders, TestDrives):
    """Everything the servicer can ask of the sales service."""


__all__ = ["Clock", "SalesEngine", "utc_now"]
