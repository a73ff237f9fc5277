"""Member service: members, identities, points ledger, tiers, vehicles, consents.

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

# Frozen copies of the store's column types (a migration never imports live code).


def TS() -> sa.DateTime:
    """Timezone-aware timestamps (timestamptz on PostgreSQL)."""
    return sa.DateTime(timezone=True)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = sa.text("erase_time IS NULL")
OPEN = sa.text("end_time IS NULL")


def upgrade() -> None:
    op.create_table(
        "members",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("merged_into", sa.String(40), nullable=False, server_default=""),
        sa.Column("display_name", sa.String(100), nullable=False, server_default=""),
        sa.Column("city", sa.String(100), nullable=False, server_default=""),
        sa.Column("preferred_dealer_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("balance", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("next_expiry", TS()),
        sa.Column("tier", sa.String(32), nullable=False, server_default=""),
        sa.Column("create_time", TS(), nullable=False),
        sa.Column("create_actor", sa.String(160), nullable=False),
        sa.Column("update_time", TS(), nullable=False),
        sa.Column("update_actor", sa.String(160), nullable=False),
        sa.Column("erase_time", TS()),
        sa.PrimaryKeyConstraint("id", name="pk_members"),
        sa.CheckConstraint("balance >= 0", name="ck_members_balance_not_negative"),
    )
    op.create_table(
        "identities",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(24), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("link_time", TS(), nullable=False),
        sa.Column("erase_time", TS()),
        sa.PrimaryKeyConstraint("id", name="pk_identities"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_identities_member_id_members"
        ),
    )
    op.create_index(
        "uq_identities_live",
        "identities",
        ["type", "app_id", "value"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    op.create_index("ix_identities_member_id", "identities", ["member_id"])
    op.create_table(
        "point_transactions",
        sa.Column("seq", BigId, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False, server_default=""),
        sa.Column("source_ref", sa.String(128), nullable=False, server_default=""),
        sa.Column("actor", sa.String(160), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.Column("expire_time", TS()),
        sa.Column("earned_time", TS()),
        sa.Column("lot_id", sa.String(40)),
        sa.PrimaryKeyConstraint("seq", name="pk_point_transactions"),
        sa.UniqueConstraint("id", name="uq_point_transactions_id"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_point_transactions_member_id_members"
        ),
    )
    op.create_index(
        "ix_point_transactions_member_id_seq", "point_transactions", ["member_id", "seq"]
    )
    op.create_index(
        "ix_point_transactions_member_id_earned_time",
        "point_transactions",
        ["member_id", "earned_time"],
    )
    op.create_table(
        "tier_changes",
        sa.Column("seq", BigId, nullable=False, autoincrement=True),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("from_tier", sa.String(32), nullable=False),
        sa.Column("to_tier", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("change_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_tier_changes"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_tier_changes_member_id_members"
        ),
    )
    op.create_index("ix_tier_changes_member_id_seq", "tier_changes", ["member_id", "seq"])
    op.create_table(
        "vehicles",
        sa.Column("vin", sa.String(17), nullable=False),
        sa.Column("owner_id", sa.String(40)),
        sa.Column("brand", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False, server_default=""),
        sa.Column("purchase_date", sa.String(10), nullable=False, server_default=""),
        sa.Column("dealer_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("update_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("vin", name="pk_vehicles"),
        sa.ForeignKeyConstraint(["owner_id"], ["members.id"], name="fk_vehicles_owner_id_members"),
    )
    op.create_index("ix_vehicles_owner_id", "vehicles", ["owner_id"])
    op.create_table(
        "vehicle_ownerships",
        sa.Column("seq", BigId, nullable=False, autoincrement=True),
        sa.Column("vin", sa.String(17), nullable=False),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("start_time", TS(), nullable=False),
        sa.Column("end_time", TS()),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_vehicle_ownerships"),
        sa.ForeignKeyConstraint(
            ["vin"], ["vehicles.vin"], name="fk_vehicle_ownerships_vin_vehicles"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_vehicle_ownerships_member_id_members"
        ),
    )
    op.create_index(
        "uq_vehicle_ownerships_current",
        "vehicle_ownerships",
        ["vin"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    op.create_index("ix_vehicle_ownerships_vin_seq", "vehicle_ownerships", ["vin", "seq"])
    op.create_table(
        "dealer_relations",
        sa.Column("seq", BigId, nullable=False, autoincrement=True),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("dealer_id", sa.String(32), nullable=False),
        sa.Column("relation", sa.String(16), nullable=False),
        sa.Column("vin", sa.String(17), nullable=False, server_default=""),
        sa.Column("create_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_dealer_relations"),
        sa.UniqueConstraint(
            "member_id",
            "dealer_id",
            "relation",
            "vin",
            name="uq_dealer_relations_member_id_dealer_id_relation_vin",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_dealer_relations_member_id_members"
        ),
    )
    op.create_index("ix_dealer_relations_vin_dealer_id", "dealer_relations", ["vin", "dealer_id"])
    op.create_table(
        "consent_events",
        sa.Column("seq", BigId, nullable=False, autoincrement=True),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("purpose", sa.String(24), nullable=False),
        sa.Column("channel", sa.String(24), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("occur_time", TS(), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(160), nullable=False),
        sa.Column("record_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_consent_events"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_consent_events_member_id_members"
        ),
    )
    op.create_index("ix_consent_events_member_id", "consent_events", ["member_id"])
    op.create_table(
        "request_ids",
        sa.Column("scope", sa.String(160), nullable=False),
        sa.Column("method", sa.String(48), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(40)),
        sa.Column("result", sa.String(80), nullable=False),
        sa.Column("create_time", TS(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "method", "request_id", name="pk_request_ids"),
    )
    op.create_index("ix_request_ids_member_id", "request_ids", ["member_id"])


def downgrade() -> None:
    for table in (
        "request_ids",
        "consent_events",
        "dealer_relations",
        "vehicle_ownerships",
        "vehicles",
        "tier_changes",
        "point_transactions",
        "identities",
        "members",
    ):
        op.drop_table(table)
