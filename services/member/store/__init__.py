"""The member service's tables and the queries it needs (SQLAlchemy 2.0 Core), by aggregate:
`tables` (the schema, as the migrations make it), `rows` (rows to domain records and back),
`members` (a member's row and identities), `points` (the ledger, the row's points columns,
the tier history), `vehicles`, `relations` (dealers), `consents`, `requests` (what erasure
does to request ids). Queries only: the decisions are the application's (engine.py) and
the domain's. Callers say `store.members.lock(conn, member_id)`, `store.tables.members`."""

from services.member.store import (
    consents,
    members,
    points,
    relations,
    requests,
    rows,
    tables,
    vehicles,
)
from services.member.store.tables import MIGRATIONS, REQUEST_IDS, metadata, request_ids

__all__ = [
    "MIGRATIONS",
    "REQUEST_IDS",
    "consents",
    "members",
    "metadata",
    "points",
    "relations",
    "request_ids",
    "requests",
    "rows",
    "tables",
    "vehicles",
]
