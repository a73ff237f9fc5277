"""Lead: domain events (the outbox and inbox of mesh/events, schema version 1) and how a
lead's person is named across services.

- `leads.contact_digest`: the keyed digest of the lead's contact (mesh/contact.py), indexed:
  member's events (MemberRegistered, MemberMerged, MemberErased) find a person's leads by
  it. Leads taken in before this revision have none until they are touched again; an
  erasure still reaches them through `lead_keys` (the current lead of each contact).
- `leads.member_id`: the member the contact belongs to, "" while unknown.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mesh.events import schema_v1

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("contact_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("member_id", sa.String(40), nullable=False, server_default=""))
    op.create_index("ix_leads_contact_digest", "leads", ["contact_digest"])
    schema_v1.create_outbox(op)
    schema_v1.create_inbox(op)


def downgrade() -> None:
    schema_v1.drop_inbox(op)
    schema_v1.drop_outbox(op)
    op.drop_index("ix_leads_contact_digest", table_name="leads")
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("member_id")
        batch.drop_column("contact_digest")
