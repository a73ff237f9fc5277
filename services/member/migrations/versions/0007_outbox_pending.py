"""Member: the outbox's pending rows indexed in order (mesh/events/schema_v2.py says why:
the relay's claim reads only pending entries instead of walking the sent rows).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

from mesh.events import schema_v2

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema_v2.create_pending_index(op)


def downgrade() -> None:
    schema_v2.drop_pending_index(op)
