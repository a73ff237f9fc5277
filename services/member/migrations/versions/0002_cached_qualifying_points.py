"""Member service: the qualifying points of the rolling 12 months cached on the member row.

`qualifying` holds for any `now` with qualifying_asof <= now < qualifying_until, so a
points write updates it in place instead of summing the member's ledger. Existing members
start with no `qualifying_asof` and are recomputed (from the ledger) on their next read or
points write.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def TS() -> sa.DateTime:
    """Timezone-aware timestamps (timestamptz on PostgreSQL)."""
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "members", sa.Column("qualifying", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("members", sa.Column("qualifying_asof", TS()))
    op.add_column("members", sa.Column("qualifying_until", TS()))


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_column("qualifying_until")
        batch.drop_column("qualifying_asof")
        batch.drop_column("qualifying")
