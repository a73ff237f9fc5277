"""Member: the open lots of every ledger stored (`point_lots`), so expiry reads the due lots
and FIFO debits the head of the queue instead of replaying the member's whole ledger.

The table is filled from the existing ledgers: each member's entries are replayed in
booking order (credits open lots, FIFO debits consume them first-expiring first, EXPIRE
entries close their lot), the rule of `services.member.domain.ledger.open_lots` as of this
revision, written out here so that the migration does not change when the domain does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from mesh.schema import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CREDITS = ("earn", "merge_in")
EXPIRE = "expire"
CHUNK = 5_000

_entries = sa.table(
    "point_transactions",
    sa.column("seq", sa.BigInteger()),
    sa.column("id", sa.String()),
    sa.column("member_id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("points", sa.BigInteger()),
    sa.column("create_time", UtcDateTime()),
    sa.column("expire_time", UtcDateTime()),
    sa.column("earned_time", UtcDateTime()),
    sa.column("lot_id", sa.String()),
)
_lots = sa.table(
    "point_lots",
    sa.column("lot_id", sa.String()),
    sa.column("member_id", sa.String()),
    sa.column("expire_time", UtcDateTime()),
    sa.column("earned_time", UtcDateTime()),
    sa.column("remaining", sa.BigInteger()),
)
# lot id -> [remaining, expire time, earn time]
Lots = dict[str, list[Any]]


def _replay(lots: Lots, kind: str, points: int, row: Any) -> None:
    if kind in CREDITS:
        lots[row.id] = [points, row.expire_time, row.earned_time or row.create_time]
    elif kind == EXPIRE:
        lots[row.lot_id][0] += points
    else:
        amount = -points
        for lot_id in sorted(lots, key=lambda k: (lots[k][1], lots[k][2], k)):
            if amount <= 0:
                break
            used = min(lots[lot_id][0], amount)
            lots[lot_id][0] -= used
            amount -= used
    for lot_id in [k for k, v in lots.items() if v[0] <= 0]:
        del lots[lot_id]


def _open_lots(conn: sa.Connection) -> Iterator[tuple[str, str, dt.datetime, dt.datetime, int]]:
    """Every member's open lots, replayed from its entries in booking order."""
    query = sa.select(_entries).order_by(_entries.c.member_id, _entries.c.seq)
    member: str | None = None
    lots: Lots = {}
    for row in conn.execute(query.execution_options(yield_per=CHUNK)):
        if row.member_id != member:
            yield from ((member or "", k, v[1], v[2], v[0]) for k, v in lots.items())
            member, lots = row.member_id, {}
        _replay(lots, row.kind, int(row.points), row)
    yield from ((member or "", k, v[1], v[2], v[0]) for k, v in lots.items())


def upgrade() -> None:
    op.create_table(
        "point_lots",
        sa.Column("lot_id", sa.String(40), nullable=False),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("earned_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("remaining > 0", name="ck_point_lots_lot_remaining_positive"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_point_lots_member_id_members"
        ),
        sa.PrimaryKeyConstraint("lot_id", name="pk_point_lots"),
    )
    op.create_index(
        "ix_point_lots_member_id_fifo",
        "point_lots",
        ["member_id", "expire_time", "earned_time", "lot_id"],
    )
    conn = op.get_bind()
    rows: list[dict[str, Any]] = []
    for member_id, lot_id, expire_time, earned_time, remaining in list(_open_lots(conn)):
        rows.append(
            {
                "lot_id": lot_id,
                "member_id": member_id,
                "expire_time": expire_time,
                "earned_time": earned_time,
                "remaining": remaining,
            }
        )
        if len(rows) >= CHUNK:
            conn.execute(_lots.insert(), rows)
            rows = []
    if rows:
        conn.execute(_lots.insert(), rows)


def downgrade() -> None:
    op.drop_index("ix_point_lots_member_id_fifo", table_name="point_lots")
    op.drop_table("point_lots")
