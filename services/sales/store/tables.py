"""The sales service's tables (SQLAlchemy 2.0 Core), as the migrations make them.

- `saleses`: one row per sales, looked up by id; `dealer_id` is indexed for the
  dealer-scoped queries a List method will need.
- `request_ids` has the shape every service shares (mesh/idempotency.py); its result is
  the sales id. The mesh sweeps it after the retention (mesh/retention.py).
- `outbox` and `inbox` (mesh/events): the events the service emits, written in the
  transaction of their change, and the events of others it has handled.

Timestamps are stored as timezone-aware UTC (`UtcDateTime`).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mesh.events.inbox import Inbox, inbox_table
from mesh.events.outbox import Outbox, outbox_table
from mesh.idempotency import RequestIds, request_ids_table
from mesh.schema import UtcDateTime, new_metadata

# The hand-written Alembic scripts that create these tables (tests compare both).
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

metadata = new_metadata()

saleses = sa.Table(
    "saleses",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("create_actor", sa.String(160), nullable=False),
    sa.Index("ix_saleses_dealer_id", "dealer_id"),
)

# AIP-155 request ids, in the shape every service shares (mesh/idempotency.py).
request_ids = request_ids_table(metadata)
REQUEST_IDS = RequestIds(request_ids)

# Domain events: what sales emits (SalesCreated) and what it has handled (mesh/events;
# created by migration 0001 with mesh.events.schema_v1).
outbox = outbox_table(metadata)
OUTBOX = Outbox(outbox, service="sales")
inbox = inbox_table(metadata)
INBOX = Inbox(inbox)
