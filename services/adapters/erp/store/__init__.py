"""The ERP adapter's tables and queries: `tables` (the schema, as the migrations make it),
`orders` (the Marque order -> SAP order rows) and `claims` (the SAP calls under way or
unrecorded). Queries only."""

from services.adapters.erp.store import claims, orders, tables
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
    "claims",
    "metadata",
    "orders",
    "request_ids",
    "tables",
]
