"""Initial DMS adapter schema: inbound_documents, seen_signatures, deliveries, the request
ids (mesh/idempotency.py), and the outbox and inbox of its events (mesh/events, schema
version 1).

Written by hand to match services/adapters/dms/store/tables.py (tests/test_store.py
compares the two on both back ends).

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mesh.events import schema_v1

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def TS() -> sa.DateTime:
    """Timezone-aware timestamps (timestamptz on PostgreSQL)."""
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbound_documents",
        sa.Column("document_id", sa.String(40), nullable=False),
        sa.Column("natural_key", sa.String(64), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(170), nullable=False),
        sa.Column("revision", sa.String(80), nullable=False),
        sa.Column("event_type", sa.String(80), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("receive_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("document_id", name="pk_inbound_documents"),
        sa.UniqueConstraint("natural_key", name="uq_inbound_documents_natural_key"),
    )
    op.create_index(
        "ix_inbound_documents_dealer",
        "inbound_documents",
        ["dealer_id", "receive_time", "document_id"],
    )
    op.create_index(
        "ix_inbound_documents_receive", "inbound_documents", ["receive_time", "document_id"]
    )
    op.create_table(
        "seen_signatures",
        sa.Column("signature", sa.String(71), nullable=False),
        sa.Column("seen_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("signature", name="pk_seen_signatures"),
    )
    op.create_index("ix_seen_signatures_seen_time", "seen_signatures", ["seen_time"])
    op.create_table(
        "deliveries",
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("dms_reference", sa.String(80), nullable=False),
        sa.Column("deliver_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_deliveries"),
    )
    op.create_table(
        "request_ids",
        sa.Column("scope", sa.String(160), nullable=False),
        sa.Column("method", sa.String(48), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("result", sa.String(80), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "method", "request_id", name="pk_request_ids"),
    )
    op.create_index("ix_request_ids_create_time", "request_ids", ["create_time"])
    schema_v1.create_outbox(op)
    schema_v1.create_inbox(op)


def downgrade() -> None:
    schema_v1.drop_inbox(op)
    schema_v1.drop_outbox(op)
    op.drop_table("request_ids")
    op.drop_table("deliveries")
    op.drop_index("ix_seen_signatures_seen_time", table_name="seen_signatures")
    op.drop_table("seen_signatures")
    op.drop_index("ix_inbound_documents_receive", table_name="inbound_documents")
    op.drop_index("ix_inbound_documents_dealer", table_name="inbound_documents")
    op.drop_table("inbound_documents")
