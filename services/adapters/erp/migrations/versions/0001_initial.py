"""Initial ERP adapter schema: sap_orders, the request ids (mesh/idempotency.py), and the
outbox and inbox of its events (mesh/events, schema version 1).

Written by hand to match services/adapters/erp/store/tables.py (tests/test_store.py
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
        "sap_orders",
        sa.Column("order_id", sa.String(35), nullable=False),
        sa.Column("sap_sales_order", sa.String(10), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("net_amount", sa.String(24), nullable=False),
        sa.Column("currency", sa.String(5), nullable=False),
        sa.Column("sap_create_time", TS(), nullable=True),
        sa.Column("record_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_sap_orders"),
        sa.UniqueConstraint("sap_sales_order", name="uq_sap_orders_sap_sales_order"),
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
    op.drop_table("sap_orders")
