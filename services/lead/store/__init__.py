"""The lead service's tables and the queries it needs (SQLAlchemy 2.0 Core), by job:
`tables` (the schema, as the migrations make it), `rows` (domain objects to rows and back),
`queries` (reads and writes by aggregate), `batch` with `batch_sqlite` and `batch_postgres`
(the group-committed intake path, written twice for speed). Everything is re-exported here:
callers say `store.leads`, `store.get_lead`."""

from services.lead.domain.model import Touchpoint
from services.lead.store.batch import (
    BatchFound,
    BatchWrites,
    ChannelKey,
    Prior,
    Remembered,
    RequestKey,
)
from services.lead.store.batch_postgres import postgres_batch_lookup, postgres_batch_write
from services.lead.store.batch_sqlite import (
    sqlite_batch_lookup,
    sqlite_batch_write,
    sqlite_lead_values,
    sqlite_value,
)
from services.lead.store.queries import (
    LeadFilter,
    all_dealers,
    bulk_insert,
    count_dealers,
    get_dealer,
    get_lead,
    insert_dealer,
    leads_by_ids,
    list_dealers,
    list_leads,
    touchpoints_of,
    update_leads,
)
from services.lead.store.rows import dealer_row, lead_row, touchpoint_row
from services.lead.store.tables import (
    MIGRATIONS,
    REQUEST_IDS,
    dealer_load,
    dealers,
    lead_keys,
    leads,
    metadata,
    request_ids,
    touchpoints,
)

__all__ = [
    "MIGRATIONS",
    "REQUEST_IDS",
    "BatchFound",
    "BatchWrites",
    "ChannelKey",
    "LeadFilter",
    "Prior",
    "Remembered",
    "RequestKey",
    "Touchpoint",
    "all_dealers",
    "bulk_insert",
    "count_dealers",
    "dealer_load",
    "dealer_row",
    "dealers",
    "get_dealer",
    "get_lead",
    "insert_dealer",
    "lead_keys",
    "lead_row",
    "leads",
    "leads_by_ids",
    "list_dealers",
    "list_leads",
    "metadata",
    "postgres_batch_lookup",
    "postgres_batch_write",
    "request_ids",
    "sqlite_batch_lookup",
    "sqlite_batch_write",
    "sqlite_lead_values",
    "sqlite_value",
    "touchpoint_row",
    "touchpoints",
    "touchpoints_of",
    "update_leads",
]
