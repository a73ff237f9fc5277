"""The sales service's tables (SQLAlchemy 2.0 Core), as the migrations make them.

Money is kept as integer fen (`*_fen`, BigInteger): exact on both back ends, no float and
no driver-specific decimal. A quote's request and figures are kept as JSON text: they are
written once and read whole, never queried inside. Every list the service offers has its
index (dealer, then the sort key; the filter columns before it).

- `opportunities` (one per lead: `lead_id` is unique, so a duplicated LeadAssigned opens
  one), `follow_ups`;
- `trims`: the price book, one row per trim and first effective day;
- `test_drive_cars`, `opening_hours`, `test_drives`, and `slot_claims`: one row per
  quarter hour a booked drive holds for its car and for its consultant, under a primary
  key, so that of concurrent bookings of one slot exactly one commits (both back ends);
- `quotes`, `stock_vehicles` (`order_id` set when allocated), `orders`;
- `request_ids`, `outbox`, `inbox`: the mesh's shapes.
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


def _id(name: str = "id") -> sa.Column[str]:
    return sa.Column(name, sa.String(40), primary_key=True)


opportunities = sa.Table(
    "opportunities",
    metadata,
    _id(),
    sa.Column("lead_id", sa.String(64), nullable=False),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("member_id", sa.String(64), nullable=False),
    sa.Column("model_interest", sa.String(64), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("next_action", sa.String(200), nullable=False),
    sa.Column("next_action_due", UtcDateTime(), nullable=True),
    sa.Column("lost_reason", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("lead_id", name="uq_opportunities_lead_id"),
    sa.Index("ix_opportunities_dealer", "dealer_id", "create_time", "id"),
    sa.Index("ix_opportunities_dealer_stage", "dealer_id", "stage", "create_time", "id"),
    sa.Index("ix_opportunities_dealer_due", "dealer_id", "next_action_due"),
    sa.Index("ix_opportunities_member", "member_id"),
)

follow_ups = sa.Table(
    "follow_ups",
    metadata,
    _id(),
    sa.Column("opportunity_id", sa.String(40), nullable=False),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(500), nullable=False),
    sa.Column("next_action", sa.String(200), nullable=False),
    sa.Column("next_action_due", UtcDateTime(), nullable=True),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Index("ix_follow_ups_opportunity", "opportunity_id", "create_time", "id"),
)

trims = sa.Table(
    "trims",
    metadata,
    sa.Column("trim_code", sa.String(32), primary_key=True),
    sa.Column("effective_from", sa.String(10), primary_key=True),
    sa.Column("effective_until", sa.String(10), nullable=True),
    sa.Column("model_code", sa.String(32), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("price_fen", sa.BigInteger(), nullable=False),
    sa.Column("nev_listed", sa.Boolean(), nullable=False),
    sa.Column("options", sa.Text(), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
)

test_drive_cars = sa.Table(
    "test_drive_cars",
    metadata,
    sa.Column("vin", sa.String(17), primary_key=True),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("model_code", sa.String(32), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Index("ix_test_drive_cars_dealer", "dealer_id"),
)

opening_hours = sa.Table(
    "opening_hours",
    metadata,
    sa.Column("dealer_id", sa.String(32), primary_key=True),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("days", sa.Text(), nullable=False),
)

test_drives = sa.Table(
    "test_drives",
    metadata,
    _id(),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("opportunity_id", sa.String(40), nullable=False),
    sa.Column("vin", sa.String(17), nullable=False),
    sa.Column("consultant_id", sa.String(64), nullable=False),
    sa.Column("start_time", UtcDateTime(), nullable=False),
    sa.Column("end_time", UtcDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("feedback", sa.String(1000), nullable=False),
    sa.Column("rating", sa.Integer(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.Index("ix_test_drives_dealer_start", "dealer_id", "start_time", "id"),
)

slot_claims = sa.Table(
    "slot_claims",
    metadata,
    sa.Column("slot", sa.String(120), primary_key=True),
    sa.Column("test_drive_id", sa.String(40), nullable=False),
    sa.Index("ix_slot_claims_test_drive", "test_drive_id"),
)

quotes = sa.Table(
    "quotes",
    metadata,
    _id(),
    sa.Column("opportunity_id", sa.String(40), nullable=False),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("member_id", sa.String(64), nullable=False),
    sa.Column("spec", sa.Text(), nullable=False),
    sa.Column("figures", sa.Text(), nullable=False),
    sa.Column("valid_until", sa.String(10), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Index("ix_quotes_opportunity", "opportunity_id"),
)

stock_vehicles = sa.Table(
    "stock_vehicles",
    metadata,
    sa.Column("vin", sa.String(17), primary_key=True),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("model_code", sa.String(32), nullable=False),
    sa.Column("trim_code", sa.String(32), nullable=False),
    sa.Column("order_id", sa.String(40), nullable=True),
    sa.Index("ix_stock_vehicles_dealer", "dealer_id", "model_code", "trim_code"),
    sa.Index("ix_stock_vehicles_order", "order_id"),
)

orders = sa.Table(
    "orders",
    metadata,
    _id(),
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
    sa.Column("invoice_time", UtcDateTime(), nullable=True),
    sa.Column("delivery_time", UtcDateTime(), nullable=True),
    sa.Column("checklist", sa.Text(), nullable=False),
    sa.Column("sap_sales_order", sa.String(10), nullable=False),
    sa.Column("cancel_reason", sa.String(200), nullable=False),
    sa.Column("refund_fen", sa.BigInteger(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.Index("ix_orders_dealer", "dealer_id", "create_time", "id"),
    sa.Index("ix_orders_dealer_state", "dealer_id", "state", "create_time", "id"),
    sa.Index("ix_orders_member", "member_id", "create_time", "id"),
    sa.Index("ix_orders_create", "create_time", "id"),
)

# AIP-155 request ids, in the shape every service shares (mesh/idempotency.py).
request_ids = request_ids_table(metadata)
REQUEST_IDS = RequestIds(request_ids)

# Domain events (mesh/events; created by migration 0001 with mesh.events.schema_v1).
outbox = outbox_table(metadata)
OUTBOX = Outbox(outbox, service="sales")
inbox = inbox_table(metadata)
INBOX = Inbox(inbox)
