"""Initial sales schema: saleses, the request ids (mesh/idempotency.py), and the outbox
and inbox of its domain events (mesh/events, schema version 1).

Written by hand to match services/sales/store/tables.py (tests/test_store.py compares
the two on both back ends), never generated at run time.

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


# Frozen copies of the store's column types (a migration never imports live code).


def TS() -> sa.DateTime:
    """Timezone-aware timestamps (timestamptz on PostgreSQL)."""
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "saleses",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.Column("create_actor", sa.String(160), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_saleses"),
    )
    op.create_index("ix_saleses_dealer_id", "saleses", ["dealer_id"])
    # The shape of mesh.idempotency.request_ids_table (add the service's own columns there
    # and here together).
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
    # The events' tables, frozen in mesh.events.schema_v1 (a later shape is schema_v2).
    schema_v1.create_outbox(op)
    schema_v1.create_inbox(op)


def downgrade() -> None:
    schema_v1.drop_inbox(op)
    schema_v1.drop_outbox(op)
    op.drop_table("request_ids")
    op.drop_table("saleses")
