"""The outbox's second version (2026-12-03): a partial index of the pending rows in order.

    ix_<outbox>_pending (seq) WHERE sent_time IS NULL

Why (measured on PostgreSQL without autovacuum; the figures are in
docs/performance.md "Domain events"): with 100,000 pending rows behind 200,000 sent ones,
the relay's claim of 1,000, analysed, walked the primary key from the first seq, filtering
out every sent row and dead version (126 ms and 245k buffer hits for the scan alone: the
planner expects pending rows spread evenly, they are all at the end); with this index the
scan reads only pending entries in seq order (5 ms, 3.6k buffers), the claim 17-23 ms
instead of 160-420 ms, and the gap grows with the sent rows kept until the retention sweep.
It costs one index entry per emitted event (the mark to sent adds none: the new version is
outside the predicate). `ix_<outbox>_sent_time_seq` stays: the retention sweep ranges on
`sent_time`.

On PostgreSQL the index is built with a plain CREATE INDEX (writes to the outbox wait while
it is built: a blink on an outbox the retention keeps small; build it CONCURRENTLY by hand
beforehand on a large live one and this revision finds it made). Each service's migration
after its schema_v1 one:

    from mesh.events import schema_v2

    def upgrade() -> None:
        schema_v2.create_pending_index(op)

    def downgrade() -> None:
        schema_v2.drop_pending_index(op)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

PENDING = "sent_time IS NULL"


def pending_index_name(name: str = "outbox") -> str:
    """The partial index's name on outbox table `name`."""
    return f"ix_{name}_pending"


def create_pending_index(op: Any, name: str = "outbox") -> None:
    """Add the pending rows' index to outbox table `name` (unless it is there already)."""
    op.create_index(
        pending_index_name(name),
        name,
        ["seq"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
        if_not_exists=True,
    )


def drop_pending_index(op: Any, name: str = "outbox") -> None:
    """Undo `create_pending_index`."""
    op.drop_index(pending_index_name(name), table_name=name)
