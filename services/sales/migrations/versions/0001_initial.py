"""Initial sales schema: opportunities and follow-ups, the price book, test-drive cars,
hours, bookings and slot claims, quotes, stock and orders; the request ids
(mesh/idempotency.py), and the outbox
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
        "follow_ups",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("opportunity_id", sa.String(40), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(500), nullable=False),
        sa.Column("next_action", sa.String(200), nullable=False),
        sa.Column("next_action_due", TS(), nullable=True),
        sa.Column("actor", sa.String(160), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_follow_ups"),
    )
    op.create_index(
        "ix_follow_ups_opportunity", "follow_ups", ["opportunity_id", "create_time", "id"]
    )
    op.create_table(
        "opening_hours",
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("days", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("dealer_id", name="pk_opening_hours"),
    )
    op.create_table(
        "opportunities",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("model_interest", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("next_action", sa.String(200), nullable=False),
        sa.Column("next_action_due", TS(), nullable=True),
        sa.Column("lost_reason", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.Column("update_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_opportunities"),
        sa.UniqueConstraint("lead_id", name="uq_opportunities_lead_id"),
    )
    op.create_index("ix_opportunities_dealer", "opportunities", ["dealer_id", "create_time", "id"])
    op.create_index(
        "ix_opportunities_dealer_due", "opportunities", ["dealer_id", "next_action_due"]
    )
    op.create_index("ix_opportunities_member", "opportunities", ["member_id"])
    op.create_index(
        "ix_opportunities_dealer_stage",
        "opportunities",
        ["dealer_id", "stage", "create_time", "id"],
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("quote_id", sa.String(40), nullable=False),
        sa.Column("opportunity_id", sa.String(40), nullable=False),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("model_code", sa.String(32), nullable=False),
        sa.Column("trim_code", sa.String(32), nullable=False),
        sa.Column("option_codes", sa.Text(), nullable=False),
        sa.Column("figures", sa.Text(), nullable=False),
        sa.Column("invoice_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("deposit_fen", sa.BigInteger(), nullable=False),
        sa.Column("deposit_paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("vin", sa.String(17), nullable=False),
        sa.Column("invoice_number", sa.String(40), nullable=False),
        sa.Column("invoice_time", TS(), nullable=True),
        sa.Column("delivery_time", TS(), nullable=True),
        sa.Column("checklist", sa.Text(), nullable=False),
        sa.Column("sap_sales_order", sa.String(10), nullable=False),
        sa.Column("cancel_reason", sa.String(200), nullable=False),
        sa.Column("refund_fen", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.Column("update_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )
    op.create_index("ix_orders_create", "orders", ["create_time", "id"])
    op.create_index("ix_orders_dealer", "orders", ["dealer_id", "create_time", "id"])
    op.create_index("ix_orders_dealer_state", "orders", ["dealer_id", "state", "create_time", "id"])
    op.create_index("ix_orders_member", "orders", ["member_id", "create_time", "id"])
    op.create_table(
        "quotes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("opportunity_id", sa.String(40), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("figures", sa.Text(), nullable=False),
        sa.Column("valid_until", sa.String(10), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quotes"),
    )
    op.create_index("ix_quotes_opportunity", "quotes", ["opportunity_id"])
    op.create_table(
        "slot_claims",
        sa.Column("slot", sa.String(120), nullable=False),
        sa.Column("test_drive_id", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("slot", name="pk_slot_claims"),
    )
    op.create_index("ix_slot_claims_test_drive", "slot_claims", ["test_drive_id"])
    op.create_table(
        "stock_vehicles",
        sa.Column("vin", sa.String(17), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("model_code", sa.String(32), nullable=False),
        sa.Column("trim_code", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("vin", name="pk_stock_vehicles"),
    )
    op.create_index(
        "ix_stock_vehicles_dealer", "stock_vehicles", ["dealer_id", "model_code", "trim_code"]
    )
    op.create_index("ix_stock_vehicles_order", "stock_vehicles", ["order_id"])
    op.create_table(
        "test_drive_cars",
        sa.Column("vin", sa.String(17), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("model_code", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("vin", name="pk_test_drive_cars"),
    )
    op.create_index("ix_test_drive_cars_dealer", "test_drive_cars", ["dealer_id"])
    op.create_table(
        "test_drives",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("opportunity_id", sa.String(40), nullable=False),
        sa.Column("vin", sa.String(17), nullable=False),
        sa.Column("consultant_id", sa.String(64), nullable=False),
        sa.Column("start_time", TS(), nullable=False),
        sa.Column("end_time", TS(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("feedback", sa.String(1000), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.Column("update_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_test_drives"),
    )
    op.create_index("ix_test_drives_dealer_start", "test_drives", ["dealer_id", "start_time", "id"])
    op.create_table(
        "trims",
        sa.Column("trim_code", sa.String(32), nullable=False),
        sa.Column("effective_from", sa.String(10), nullable=False),
        sa.Column("effective_until", sa.String(10), nullable=True),
        sa.Column("model_code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("nev_listed", sa.Boolean(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("update_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("trim_code", "effective_from", name="pk_trims"),
    )
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
    op.drop_table("trims")
    op.drop_table("test_drives")
    op.drop_table("test_drive_cars")
    op.drop_table("stock_vehicles")
    op.drop_table("slot_claims")
    op.drop_table("quotes")
    op.drop_table("orders")
    op.drop_table("opportunities")
    op.drop_table("opening_hours")
    op.drop_table("follow_ups")
