"""The lead service's tables and the queries it needs (SQLAlchemy 2.0 Core).

Core, not the ORM: the intake path writes whole batches with `executemany` and reads
them with a handful of `IN` queries, and the ORM's unit of work would cost more CPU per row
than everything else on that path together. Every query here is on an index; the index
that serves it is named beside it.

Timestamps are stored as timezone-aware UTC (`UtcDateTime`): PostgreSQL keeps
`timestamptz`, SQLite keeps fixed-width ISO text that sorts like time, and both come back
as aware datetimes so Python never compares naive with aware.
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

dealers = sa.Table(
    "dealers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    # Brands as a JSON list: read whole with the dealer, never filtered on in SQL (the
    # registry is small and cached in memory for routing).
    sa.Column("brands", sa.JSON, nullable=False),
    sa.Column("province", sa.String(64), nullable=False),
    sa.Column("city", sa.String(64), nullable=False),
    sa.Column("daily_capacity", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("create_actor", sa.String(128), nullable=False, server_default=""),
)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("grade", sa.String(2), nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("rating_reasons", sa.JSON, nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("mobile_e164", sa.String(20), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("city", sa.String(64), nullable=False),
    sa.Column("province", sa.String(64), nullable=False),
    sa.Column("brand", sa.String(64), nullable=False),
    sa.Column("series", sa.String(64), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("trim", sa.String(64), nullable=False),
    sa.Column("model_year", sa.Integer, nullable=False, server_default="0"),
    sa.Column("time_frame", sa.String(24), nullable=False),
    sa.Column("test_drive_requested", sa.Boolean, nullable=False),
    sa.Column("channel", sa.String(24), nullable=False),
    sa.Column("channel_lead_id", sa.String(128), nullable=False),
    sa.Column("consent_contact", sa.Boolean, nullable=False),
    sa.Column("consent_marketing", sa.Boolean, nullable=False),
    sa.Column("consent_share", sa.Boolean, nullable=False),
    sa.Column("preferred_dealer_id", sa.String(32), nullable=True),
    # "" is the OEM pool; kept non-null so the (dealer_id, create_time, id) index serves
    # the pool's listing as well as each dealer's.
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("routing_reason", sa.String(200), nullable=False),
    sa.Column("follow_up_due_time", UtcDateTime, nullable=True),
    sa.Column("lost_reason", sa.String(500), nullable=False),
    sa.Column("touch_count", sa.Integer, nullable=False),
    sa.Column("last_touch_time", UtcDateTime, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("create_actor", sa.String(128), nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    sa.Column("update_actor", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # The person as other services name it (mesh/contact.py): erasure and member links find
    # a person's leads by it. NULL once erased.
    sa.Column("contact_digest", sa.String(64), nullable=True),
    # The member the contact belongs to, as member's events say ("" unknown).
    sa.Column("member_id", sa.String(40), nullable=False, server_default=""),
    # Listing: every page is a range scan on one of these in (create_time, id) order, read
    # backwards (queries.list_leads_query). Unfiltered, by time range: (create_time, id); a
    # dealer's or the pool's: (dealer_id, create_time, id). Each filter ListLeads offers
    # (status, channel, grade) has its own, across dealers (the OEM's lists) and within one
    # dealer (or the pool). Each one costs every insert of a lead (README, "Costs as data
    # grows"), so two filters together share one of these, not an index of their own.
    sa.Index(None, "create_time", "id"),
    sa.Index(None, "dealer_id", "create_time", "id"),
    sa.Index(None, "status", "create_time", "id"),
    sa.Index(None, "channel", "create_time", "id"),
    sa.Index(None, "grade", "create_time", "id"),
    sa.Index(None, "dealer_id", "status", "create_time", "id"),
    sa.Index(None, "dealer_id", "grade", "create_time", "id"),
    sa.Index(None, "dealer_id", "channel", "create_time", "id"),
    # The overdue view: open leads by due time.
    sa.Index(None, "follow_up_due_time"),
    # A person's leads, for member's events (link, merge, erasure).
    sa.Index(None, "contact_digest"),
)

# The dedup guard: the current lead of each (contact, brand) — contact is the E.164 mobile,
# or "email:<address>" for the ADF leads that have no mobile; brand is case-folded. Its
# primary key is what makes two concurrent submissions of the same mobile create one lead,
# in one process or several. Contact first: it is the selective column, so
# `contact_key IN (...)` is an index range even before the planner has statistics.
lead_keys = sa.Table(
    "lead_keys",
    metadata,
    sa.Column("contact_key", sa.String(270), primary_key=True),
    sa.Column("brand_key", sa.String(64), primary_key=True),
    sa.Column("lead_id", sa.String(32), nullable=False),
)

touchpoints = sa.Table(
    "touchpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(24), nullable=False),
    sa.Column("channel_lead_id", sa.String(128), nullable=False),
    sa.Column("occur_time", UtcDateTime, nullable=False),
    sa.Column("payload_ref", sa.String(80), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    # The dealer a walk-in happened at ("" for other channels); see model.Touchpoint.
    sa.Column("dealer_id", sa.String(32), nullable=False, server_default=""),
    # A lead's touchpoints, oldest first.
    sa.Index(None, "lead_id", "id"),
    # A resent channel lead is found by (channel, channel_lead_id, dealer); unique where
    # the channel gave an id, so a resend can never become a second touchpoint. The dealer
    # is part of the key because each dealer numbers its own walk-ins.
    # The channel's id first: it is the selective column, so an `IN` list of ids is an
    # index range whatever the planner's statistics say (PostgreSQL, fresh or not).
    sa.Index(
        "uq_touchpoints_channel_lead",
        "channel_lead_id",
        "channel",
        "dealer_id",
        unique=True,
        sqlite_where=sa.text("channel_lead_id <> ''"),
        postgresql_where=sa.text("channel_lead_id <> ''"),
    ),
)

# AIP-155 request ids, in the shape every service shares (mesh/idempotency.py): the
# result is the lead's (or dealer's) id.
request_ids = request_ids_table(metadata)
REQUEST_IDS = RequestIds(request_ids)

# Domain events: what lead emits (LeadCreated, LeadAssigned, LeadStatusChanged,
# LeadDataErased) and the member events it has handled (mesh/events; migration 0004).
outbox = outbox_table(metadata)
OUTBOX = Outbox(outbox, service="lead")
inbox = inbox_table(metadata)
INBOX = Inbox(inbox)

# Leads routed to each dealer per UTC day, to stay within daily capacity across processes.
dealer_load = sa.Table(
    "dealer_load",
    metadata,
    sa.Column("dealer_id", sa.String(32), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("assigned", sa.Integer, nullable=False),
)
