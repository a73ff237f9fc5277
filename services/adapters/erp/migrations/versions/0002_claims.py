"""sap_claims: the orders whose SAP create is under way or unrecorded (store/tables.py).

Written by hand to match services/adapters/erp/store/tables.py (tests/test_store.py
compares the two on both back ends).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sap_claims",
        sa.Column("order_id", sa.String(35), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_sap_claims"),
    )


def downgrade() -> None:
    op.drop_table("sap_claims")
