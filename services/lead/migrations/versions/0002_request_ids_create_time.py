"""Lead: an index on request_ids.create_time, so the retention sweep is a range scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_request_ids_create_time", "request_ids", ["create_time"])


def downgrade() -> None:
    op.drop_index("ix_request_ids_create_time", table_name="request_ids")
