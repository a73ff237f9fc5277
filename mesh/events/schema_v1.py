"""The outbox and inbox tables as a service's Alembic migration creates them, version 1.

A migration never imports live code that may change under it; these functions are frozen
instead: they create exactly what `outbox_table` and `inbox_table` describe today, and a
later change of those tables comes as `schema_v2` beside this one (the services' model
comparison test catches a drift). Every service migrates the same tables the same way:

    from mesh.events import schema_v1

    def upgrade() -> None:
        schema_v1.create_outbox(op)
        schema_v1.create_inbox(op)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

ERROR_CHARS = 500  # mesh.events.inbox.ERROR_CHARS when this version was written


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def create_outbox(op: Any, name: str = "outbox") -> None:
    """The outbox of `mesh.events.outbox.outbox_table`."""
    op.create_table(
        name,
        sa.Column("seq", _BIG_ID, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("aggregate", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("traceparent", sa.String(64), nullable=False, server_default=""),
        sa.Column("tracestate", sa.String(512), nullable=False, server_default=""),
        sa.Column("create_time", _ts(), nullable=False),
        sa.Column("sent_time", _ts(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_sent_time_seq", name, ["sent_time", "seq"])
    leased = sa.text("sent_time IS NULL AND lease_owner IS NOT NULL")
    op.create_index(
        f"ix_{name}_leased",
        name,
        ["aggregate", "seq"],
        postgresql_where=leased,
        sqlite_where=leased,
    )


def create_inbox(op: Any, name: str = "inbox") -> None:
    """The inbox of `mesh.events.inbox.inbox_table`."""
    op.create_table(
        name,
        sa.Column("consumer", sa.String(120), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("aggregate", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("received_time", _ts(), nullable=False),
        sa.Column("handled_time", _ts(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("error", sa.String(ERROR_CHARS), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_handled_time", name, ["handled_time"])
    dead = sa.text("outcome = 'dead_letter'")
    op.create_index(
        f"ix_{name}_dead_letters",
        name,
        ["consumer", "received_time"],
        postgresql_where=dead,
        sqlite_where=dead,
    )


def drop_outbox(op: Any, name: str = "outbox") -> None:
    """Undo `create_outbox`."""
    op.drop_table(name)


def drop_inbox(op: Any, name: str = "inbox") -> None:
    """Undo `create_inbox`."""
    op.drop_table(name)
