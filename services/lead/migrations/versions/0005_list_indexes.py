"""Lead: an index for each filter ListLeads offers, in its keyset order.

A filter that matches few rows (`status=WON`, `channel=DEALER_WALK_IN` with none) walked
the create-time index checking every row: 426 ms at a million leads. Each of these is the
filter's equality followed by (create_time, id), read backwards, so a page is a range:

- across dealers (the OEM's lists): `status`, `channel`, `grade`;
- one dealer's (or the pool's, dealer_id ""): the same three after `dealer_id`.

On PostgreSQL the indexes are built with a plain CREATE INDEX (the table is locked against
writes while each is built: a few seconds per million leads); build them CONCURRENTLY by
hand beforehand on a large live table and this revision finds them made.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("status", "create_time", "id"),
    ("channel", "create_time", "id"),
    ("grade", "create_time", "id"),
    ("dealer_id", "status", "create_time", "id"),
    ("dealer_id", "grade", "create_time", "id"),
    ("dealer_id", "channel", "create_time", "id"),
)


def _name(columns: Sequence[str]) -> str:
    return f"ix_leads_{'_'.join(columns)}"


def upgrade() -> None:
    for columns in _INDEXES:
        op.create_index(_name(columns), "leads", list(columns), if_not_exists=True)


def downgrade() -> None:
    for columns in reversed(_INDEXES):
        op.drop_index(_name(columns), table_name="leads")
