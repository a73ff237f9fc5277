"""Initial lead schema: dealers, leads, touchpoints, dedup keys, request ids, dealer loads.

Written by hand to match services/lead/store/tables.py (tests compare the two), never generated
at run time.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dealers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("brands", sa.JSON(), nullable=False),
        sa.Column("province", sa.String(64), nullable=False),
        sa.Column("city", sa.String(64), nullable=False),
        sa.Column("daily_capacity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("create_time", UTC_TIME, nullable=False),
        sa.Column("create_actor", sa.String(128), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_dealers"),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("grade", sa.String(2), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("rating_reasons", sa.JSON(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("mobile_e164", sa.String(20), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("city", sa.String(64), nullable=False),
        sa.Column("province", sa.String(64), nullable=False),
        sa.Column("brand", sa.String(64), nullable=False),
        sa.Column("series", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("trim", sa.String(64), nullable=False),
        sa.Column("time_frame", sa.String(24), nullable=False),
        sa.Column("test_drive_requested", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(24), nullable=False),
        sa.Column("channel_lead_id", sa.String(128), nullable=False),
        sa.Column("consent_contact", sa.Boolean(), nullable=False),
        sa.Column("consent_marketing", sa.Boolean(), nullable=False),
        sa.Column("consent_share", sa.Boolean(), nullable=False),
        sa.Column("preferred_dealer_id", sa.String(32), nullable=True),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("routing_reason", sa.String(200), nullable=False),
        sa.Column("follow_up_due_time", UTC_TIME, nullable=True),
        sa.Column("lost_reason", sa.String(500), nullable=False),
        sa.Column("touch_count", sa.Integer(), nullable=False),
        sa.Column("last_touch_time", UTC_TIME, nullable=False),
        sa.Column("create_time", UTC_TIME, nullable=False),
        sa.Column("create_actor", sa.String(128), nullable=False),
        sa.Column("update_time", UTC_TIME, nullable=False),
        sa.Column("update_actor", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_leads"),
    )
    op.create_index("ix_leads_create_time_id", "leads", ["create_time", "id"])
    op.create_index(
        "ix_leads_dealer_id_create_time_id", "leads", ["dealer_id", "create_time", "id"]
    )
    op.create_index("ix_leads_follow_up_due_time", "leads", ["follow_up_due_time"])
    op.create_table(
        "lead_keys",
        sa.Column("contact_key", sa.String(270), nullable=False),
        sa.Column("brand_key", sa.String(64), nullable=False),
        sa.Column("lead_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("contact_key", "brand_key", name="pk_lead_keys"),
    )
    op.create_table(
        "touchpoints",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("lead_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(24), nullable=False),
        sa.Column("channel_lead_id", sa.String(128), nullable=False),
        sa.Column("occur_time", UTC_TIME, nullable=False),
        sa.Column("payload_ref", sa.String(80), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_touchpoints"),
    )
    op.create_index("ix_touchpoints_lead_id_id", "touchpoints", ["lead_id", "id"])
    op.create_index(
        "uq_touchpoints_channel_lead",
        "touchpoints",
        ["channel_lead_id", "channel"],
        unique=True,
        sqlite_where=sa.text("channel_lead_id <> ''"),
        postgresql_where=sa.text("channel_lead_id <> ''"),
    )
    op.create_table(
        "request_ids",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("create_time", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("request_id", "method", name="pk_request_ids"),
    )
    op.create_table(
        "dealer_load",
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("assigned", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("dealer_id", "day", name="pk_dealer_load"),
    )


def downgrade() -> None:
    op.drop_table("dealer_load")
    op.drop_table("request_ids")
    op.drop_index("uq_touchpoints_channel_lead", table_name="touchpoints")
    op.drop_index("ix_touchpoints_lead_id_id", table_name="touchpoints")
    op.drop_table("touchpoints")
    op.drop_table("lead_keys")
    op.drop_index("ix_leads_follow_up_due_time", table_name="leads")
    op.drop_index("ix_leads_dealer_id_create_time_id", table_name="leads")
    op.drop_index("ix_leads_create_time_id", table_name="leads")
    op.drop_table("leads")
    op.drop_table("dealers")
