"""The member service's tables (SQLAlchemy 2.0 Core), as the migrations make them.

Invariants the schema and the application keep together:
- `members.balance` always equals the sum of the member's `point_transactions` (it is
  changed only in the transaction that appends the entry) and is never negative (checked
  under the member's row lock, by a conditional UPDATE, and by a CHECK).
- `point_transactions` is append-only; nothing updates or deletes a row.
- a live identity (type, app_id, value) belongs to one member: a partial unique index
  over rows whose `erase_time` is NULL.
- a VIN has one current owner: `vehicles` has one row per VIN with `owner_id`, and the
  ownership history has a partial unique index on the VIN's open period.
- `request_ids` has the shape every service shares (mesh/idempotency.py), plus the member
  a request concerns.

Timestamps are stored as timezone-aware UTC (`UtcDateTime`).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mesh.events.inbox import Inbox, inbox_table
from mesh.events.outbox import Outbox, outbox_table
from mesh.idempotency import RequestIds, request_ids_table
from mesh.schema import BigId, UtcDateTime, new_metadata

# The hand-written Alembic scripts that create these tables (tests compare both).
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

metadata = new_metadata()
LIVE = sa.text("erase_time IS NULL")
OPEN = sa.text("end_time IS NULL")

members = sa.Table(
    "members",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("merged_into", sa.String(40), nullable=False, server_default=""),
    sa.Column("display_name", sa.String(100), nullable=False, server_default=""),
    sa.Column("city", sa.String(100), nullable=False, server_default=""),
    sa.Column("preferred_dealer_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
    # A lower bound of the earliest open lot's expiry: no ledger replay before it.
    sa.Column("next_expiry", UtcDateTime()),
    sa.Column("tier", sa.String(32), nullable=False, server_default=""),
    # The qualifying points (credits earned in the rolling 12 months), cached: exact for
    # any `now` with qualifying_asof <= now < qualifying_until (NULL until: no credit in
    # the window, none leaves). NULL asof: not computed yet (members older than 0002).
    sa.Column("qualifying", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("qualifying_asof", UtcDateTime()),
    sa.Column("qualifying_until", UtcDateTime()),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("create_actor", sa.String(160), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.Column("update_actor", sa.String(160), nullable=False),
    sa.Column("erase_time", UtcDateTime()),
    sa.CheckConstraint("balance >= 0", name="balance_not_negative"),
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("type", sa.String(24), nullable=False),
    sa.Column("app_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Column("link_time", UtcDateTime(), nullable=False),
    sa.Column("erase_time", UtcDateTime()),
    sa.Index(
        "uq_identities_live",
        "type",
        "app_id",
        "value",
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    ),
    sa.Index("ix_identities_member_id", "member_id"),
)

point_transactions = sa.Table(
    "point_transactions",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(256), nullable=False, server_default=""),
    sa.Column("source_ref", sa.String(128), nullable=False, server_default=""),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("expire_time", UtcDateTime()),
    sa.Column("earned_time", UtcDateTime()),
    sa.Column("lot_id", sa.String(40)),
    sa.Index("ix_point_transactions_member_id_seq", "member_id", "seq"),
    sa.Index("ix_point_transactions_member_id_earned_time", "member_id", "earned_time"),
)

# The open lots of every ledger (derived from `point_transactions`, kept in the same
# transactions as the entries, migration 0006): one row per credit with points left, its
# remaining points; a lot fully spent or expired is deleted. Expiry reads only the due lots
# and FIFO debits only the head of the queue, however long the ledger.
point_lots = sa.Table(
    "point_lots",
    metadata,
    sa.Column("lot_id", sa.String(40), primary_key=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("expire_time", UtcDateTime(), nullable=False),
    sa.Column("earned_time", UtcDateTime(), nullable=False),
    sa.Column("remaining", sa.BigInteger, nullable=False),
    sa.CheckConstraint("remaining > 0", name="lot_remaining_positive"),
    # The FIFO order of `ledger.open_lots`: expiry, then earn time, then id.
    sa.Index("ix_point_lots_member_id_fifo", "member_id", "expire_time", "earned_time", "lot_id"),
)

tier_changes = sa.Table(
    "tier_changes",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("from_tier", sa.String(32), nullable=False),
    sa.Column("to_tier", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(512), nullable=False),
    sa.Column("change_time", UtcDateTime(), nullable=False),
    sa.Index("ix_tier_changes_member_id_seq", "member_id", "seq"),
)

vehicles = sa.Table(
    "vehicles",
    metadata,
    sa.Column("vin", sa.String(17), primary_key=True),
    sa.Column("owner_id", sa.String(40), sa.ForeignKey("members.id")),
    sa.Column("brand", sa.String(64), nullable=False),
    sa.Column("model", sa.String(64), nullable=False, server_default=""),
    sa.Column("purchase_date", sa.String(10), nullable=False, server_default=""),
    sa.Column("dealer_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.Index("ix_vehicles_owner_id", "owner_id"),
)

vehicle_ownerships = sa.Table(
    "vehicle_ownerships",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("vin", sa.String(17), sa.ForeignKey("vehicles.vin"), nullable=False),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("start_time", UtcDateTime(), nullable=False),
    sa.Column("end_time", UtcDateTime()),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Index(
        "uq_vehicle_ownerships_current",
        "vin",
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    ),
    sa.Index("ix_vehicle_ownerships_vin_seq", "vin", "seq"),
)

dealer_relations = sa.Table(
    "dealer_relations",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("relation", sa.String(16), nullable=False),
    sa.Column("vin", sa.String(17), nullable=False, server_default=""),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("member_id", "dealer_id", "relation", "vin"),
    sa.Index("ix_dealer_relations_vin_dealer_id", "vin", "dealer_id"),
)

consent_events = sa.Table(
    "consent_events",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("purpose", sa.String(24), nullable=False),
    sa.Column("channel", sa.String(24), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("occur_time", UtcDateTime(), nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("record_time", UtcDateTime(), nullable=False),
    sa.Index("ix_consent_events_member_id", "member_id"),
)

# Which service has erased a member's personal data, and when: member itself at EraseMember,
# every other service when its answer to MemberErased arrives (lead: LeadDataErased).
erasure_receipts = sa.Table(
    "erasure_receipts",
    metadata,
    sa.Column("member_id", sa.String(40), primary_key=True),
    sa.Column("service", sa.String(40), primary_key=True),
    sa.Column("item_count", sa.Integer(), nullable=False),
    sa.Column("done_time", UtcDateTime(), nullable=False),
)

# The member a request concerns: erasure replaces the fingerprints of its requests.
request_ids = request_ids_table(
    metadata,
    sa.Column("member_id", sa.String(40)),
    sa.Index("ix_request_ids_member_id", "member_id"),  # erasure finds a member's requests
)
REQUEST_IDS = RequestIds(request_ids)

# Domain events: what member emits (MemberRegistered, MemberMerged, MemberErased,
# VehicleBound) and what it has handled (mesh/events; created by migration 0004).
outbox = outbox_table(metadata)
OUTBOX = Outbox(outbox, service="member")
inbox = inbox_table(metadata)
INBOX = Inbox(inbox)
