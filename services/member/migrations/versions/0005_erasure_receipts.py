"""Member: erasure receipts, which service has erased a member's personal data and when.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_receipts",
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("service", sa.String(40), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("done_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "service", name="pk_erasure_receipts"),
    )


def downgrade() -> None:
    op.drop_table("erasure_receipts")
