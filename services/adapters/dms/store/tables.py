"""The DMS adapter's tables (SQLAlchemy 2.0 Core), as the migrations make them.

- `inbound_documents`: one row per accepted STAR document: its natural key (`natural_key`,
  a digest of dealer, kind, DMS id and revision; unique, so a resend, even to another
  replica, writes nothing), what the adapter made of it (the event's type and id) and a
  digest of the body. Never the body: it carries the dealer's customers (names, phones,
  addresses) and the adapter owns no personal data.
- `seen_signatures`: the signatures accepted within the skew window, so a captured request
  replayed verbatim is refused (409) on any replica; older rows are swept (store/documents.py).
- `deliveries`: one row per order whose RDR a dealer's DMS accepted.
- `request_ids` has the shape every service shares (no mutating RPC yet; kept so the mesh's
  sweep and the shape stay alike); `outbox` and `inbox` (mesh/events).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mesh.events.inbox import Inbox, inbox_table
from mesh.events.outbox import Outbox, outbox_table
from mesh.idempotency import RequestIds, request_ids_table
from mesh.schema import UtcDateTime, new_metadata

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

metadata = new_metadata()

inbound_documents = sa.Table(
    "inbound_documents",
    metadata,
    sa.Column("document_id", sa.String(40), primary_key=True),
    sa.Column("natural_key", sa.String(64), nullable=False),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("source_id", sa.String(170), nullable=False),
    sa.Column("revision", sa.String(80), nullable=False),
    sa.Column("event_type", sa.String(80), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("receive_time", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("natural_key", name="uq_inbound_documents_natural_key"),
    sa.Index("ix_inbound_documents_dealer", "dealer_id", "receive_time", "document_id"),
    sa.Index("ix_inbound_documents_receive", "receive_time", "document_id"),
)

seen_signatures = sa.Table(
    "seen_signatures",
    metadata,
    sa.Column("signature", sa.String(71), primary_key=True),
    sa.Column("seen_time", UtcDateTime(), nullable=False),
    sa.Index("ix_seen_signatures_seen_time", "seen_time"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("order_id", sa.String(40), primary_key=True),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("http_status", sa.Integer(), nullable=False),
    sa.Column("dms_reference", sa.String(80), nullable=False),
    sa.Column("deliver_time", UtcDateTime(), nullable=False),
)

request_ids = request_ids_table(metadata)
REQUEST_IDS = RequestIds(request_ids)

outbox = outbox_table(metadata)
# The producer is "dms" (the proto package marque.dms.v1): its events go to marque.dms.*.
OUTBOX = Outbox(outbox, service="dms")
inbox = inbox_table(metadata)
INBOX = Inbox(inbox)
