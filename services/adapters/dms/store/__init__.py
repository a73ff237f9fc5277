"""The DMS adapter's tables and queries: `tables` (the schema, as the migrations make it),
`documents` (accepted inbound documents, seen signatures) and `deliveries` (outbound RDRs).
Queries only."""

from services.adapters.dms.store import deliveries, documents, tables
from services.adapters.dms.store.tables import (
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
    "deliveries",
    "documents",
    "metadata",
    "request_ids",
    "tables",
]
