"""The sales service's tables and its queries (SQLAlchemy 2.0 Core), by aggregate:
`tables` (the schema, as the migrations make them), `opportunities` (with follow-ups),
`pricebook`, `testdrives` (cars, hours, bookings, slot claims), `quotes`, `orders` (with
the stock). Queries only: the decisions are the engine's and the domain's."""

from services.sales.store import tables
from services.sales.store.tables import (
    INBOX,
    MIGRATIONS,
    OUTBOX,
    REQUEST_IDS,
    metadata,
    request_ids,
)

__all__ = [
    "INBOX",
    "MIGRATIONS",
    "OUTBOX",
    "REQUEST_IDS",
    "metadata",
    "request_ids",
    "tables",
]
