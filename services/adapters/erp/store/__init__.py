"""The ERP adapter's tables and queries: `tables` (the schema, as the migrations make it)
and `orders` (the Marque order -> SAP order rows). Queries only."""

from services.adapters.erp.store import orders, tables
from services.adapters.erp.store.tables import (
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
    "orders",
    "request_ids",
    "tables",
]
