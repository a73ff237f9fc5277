"""The sales service's tables and the queries it needs (SQLAlchemy 2.0 Core), by job:
`tables` (the schema, as the migrations make it) and `queries` (reads and writes, rows to
domain records and back). Queries only: the decisions are the engine's and the domain's.
Callers say `store.get_sales(conn, id)`, `store.REQUEST_IDS`, `store.OUTBOX`,
`store.tables.saleses`."""

from services.sales.store import queries, tables
from services.sales.store.queries import get_sales, insert_sales
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
    "get_sales",
    "insert_sales",
    "metadata",
    "queries",
    "request_ids",
    "tables",
]
