"""Member: the outbox and inbox of its domain events (mesh/events, schema version 1).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

from mesh.events import schema_v1

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema_v1.create_outbox(op)
    schema_v1.create_inbox(op)


def downgrade() -> None:
    schema_v1.drop_inbox(op)
    schema_v1.drop_outbox(op)
