"""Lead: request ids belong to their caller, walk-ins to their dealer; vehicle model year.

- `request_ids` takes the platform's shared shape (mesh/idempotency.py): `scope` (the
  caller's ref, part of the key: the same string from two callers is two requests) and
  `fingerprint` (a hash of the request: a reused id with another body is refused), the
  lead or dealer id as `result`. Earlier rows carry no caller, so they cannot be matched to
  one; the table is recreated empty (it only remembers retries, for days).
- `touchpoints.dealer_id`: the dealer a walk-in happened at, part of the channel lead key
  (each dealer numbers its own walk-ins). Existing walk-ins take their lead's dealer.
- `leads.model_year` (年款), 0 when not given.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)
_PARTIAL = {
    "sqlite_where": sa.text("channel_lead_id <> ''"),
    "postgresql_where": sa.text("channel_lead_id <> ''"),
}


def _request_ids(shared: bool) -> None:
    """The table in the shape of mesh/idempotency.py (`shared`), or the old one."""
    if shared:
        op.create_table(
            "request_ids",
            sa.Column("scope", sa.String(160), nullable=False),
            sa.Column("method", sa.String(48), nullable=False),
            sa.Column("request_id", sa.String(128), nullable=False),
            sa.Column("fingerprint", sa.String(64), nullable=False),
            sa.Column("result", sa.String(80), nullable=False),
            sa.Column("create_time", UTC_TIME, nullable=False),
            sa.PrimaryKeyConstraint("scope", "method", "request_id", name="pk_request_ids"),
        )
    else:
        op.create_table(
            "request_ids",
            sa.Column("request_id", sa.String(128), nullable=False),
            sa.Column("method", sa.String(32), nullable=False),
            sa.Column("resource_id", sa.String(32), nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("create_time", UTC_TIME, nullable=False),
            sa.PrimaryKeyConstraint("request_id", "method", name="pk_request_ids"),
        )
    op.create_index("ix_request_ids_create_time", "request_ids", ["create_time"])


def upgrade() -> None:
    op.drop_index("ix_request_ids_create_time", table_name="request_ids")
    op.drop_table("request_ids")
    _request_ids(shared=True)
    # Plain ADD COLUMN (with a default, SQLite needs no table rebuild, which would lose
    # the partial index's WHERE).
    op.add_column(
        "leads", sa.Column("model_year", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "touchpoints", sa.Column("dealer_id", sa.String(32), nullable=False, server_default="")
    )
    op.execute(
        "UPDATE touchpoints SET dealer_id = "
        "(SELECT leads.dealer_id FROM leads WHERE leads.id = touchpoints.lead_id) "
        "WHERE channel = 'DEALER_WALK_IN'"
    )
    op.drop_index("uq_touchpoints_channel_lead", table_name="touchpoints")
    op.create_index(
        "uq_touchpoints_channel_lead",
        "touchpoints",
        ["channel_lead_id", "channel", "dealer_id"],
        unique=True,
        **_PARTIAL,
    )


def downgrade() -> None:
    op.drop_index("uq_touchpoints_channel_lead", table_name="touchpoints")
    op.create_index(
        "uq_touchpoints_channel_lead",
        "touchpoints",
        ["channel_lead_id", "channel"],
        unique=True,
        **_PARTIAL,
    )
    op.drop_column("touchpoints", "dealer_id")
    op.drop_column("leads", "model_year")
    op.drop_index("ix_request_ids_create_time", table_name="request_ids")
    op.drop_table("request_ids")
    _request_ids(shared=False)
