"""The relay's statements on an outbox table (mesh/events/relay.py says how they are used).

- `claim_sqlite` / `claim_postgres`: lease up to `:n` pending rows, oldest first, for `:me`
  until `:until`; a row is taken when it is not leased (or its lease ran out, or it is our
  own) and no earlier pending row of its aggregate is leased by another relay right now
  (the partial index `ix_<outbox>_leased` holds only leased pending rows). PostgreSQL
  reads the candidates `FOR UPDATE SKIP LOCKED`; the relay serialises claims with an
  advisory lock, so the check sees every lease committed before it.
- `mark`: the rows JetStream acknowledged are sent (their lease cleared).
- `release`: give back our lease of rows that were not acknowledged.
- `refuse`: set aside rows JetStream kept refusing (lease_owner "refused", no lease time).
- `count`, `oldest`: the pending rows, for the gauges.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.sql.selectable import NamedFromClause

REFUSED = "refused"  # lease_owner of a row the relay gave up on (see `refuse`)


class Claimed(NamedTuple):
    """A claimed row, as the relay reads it (the columns `claim_*` return, in order; times
    in UTC), whichever back end claimed it."""

    seq: int
    id: str
    subject: str
    aggregate: str
    type: str
    payload: bytes
    traceparent: str
    tracestate: str
    create_time: dt.datetime
    attempts: int

    @classmethod
    def of_row(cls, row: Any, seq: int) -> Claimed:
        """The claimed form of an `Outbox.row` committed under `seq` (handed over)."""
        return cls(
            seq,
            row["id"],
            row["subject"],
            row["aggregate"],
            row["type"],
            row["payload"],
            row["traceparent"],
            row["tracestate"],
            row["create_time"],
            row["attempts"],
        )


class OutboxStatements:
    """The relay's statements on one outbox table."""

    def __init__(self, t: sa.Table) -> None:
        o, candidates = _candidates(t)
        returning = (
            t.c.seq,
            t.c.id,
            t.c.subject,
            t.c.aggregate,
            t.c.type,
            t.c.payload,
            t.c.traceparent,
            t.c.tracestate,
            t.c.create_time,
            t.c.attempts,
        )
        values = {
            "lease_owner": sa.bindparam("me"),
            "lease_until": sa.bindparam("until"),
            "attempts": t.c.attempts + 1,
        }
        self.claim_sqlite = (
            t.update().where(t.c.seq.in_(candidates.scalar_subquery())).values(values)
        ).returning(*returning)
        self.claim_pg = (
            t.update()
            .where(
                t.c.seq.in_(candidates.with_for_update(skip_locked=True, of=o).scalar_subquery())
            )
            .values(values)
        ).returning(*returning)
        seqs: sa.BindParameter[Any] = sa.bindparam("seqs", expanding=True)
        self.mark = (
            t.update()
            .where(t.c.seq.in_(seqs))
            .values(sent_time=sa.bindparam("now"), lease_owner=None, lease_until=None)
        )
        self.release = (
            t.update()
            .where(
                t.c.seq.in_(seqs), t.c.lease_owner == sa.bindparam("me"), t.c.sent_time.is_(None)
            )
            .values(lease_owner=None, lease_until=None)
        )
        # A row JetStream refused again and again (another stream's subject): out of the
        # claims for good, still pending (the gauges show it), not holding its aggregate.
        self.refuse = (
            t.update()
            .where(t.c.seq.in_(seqs), t.c.lease_owner == sa.bindparam("me"))
            .values(lease_owner=REFUSED, lease_until=None)
        )
        pending = t.c.sent_time.is_(None)
        self.count = sa.select(sa.func.count()).select_from(t).where(pending)
        self.oldest = sa.select(t.c.create_time).where(pending).order_by(t.c.seq).limit(1)


def _candidates(t: sa.Table) -> tuple[NamedFromClause, sa.Select[Any]]:
    """The rows a claim may lease, oldest first, as `o` (an alias of `t`, which PostgreSQL
    locks): pending, not leased by another relay, and not behind a pending row of their
    aggregate that another relay holds (events of an aggregate go out in order)."""
    o, b = t.alias("o"), t.alias("b")
    blocked = (
        sa.select(sa.literal(1))
        .where(
            b.c.aggregate == o.c.aggregate,
            b.c.sent_time.is_(None),
            b.c.lease_owner.is_not(None),
            b.c.lease_owner != sa.bindparam("me"),
            b.c.lease_until >= sa.bindparam("now"),
            b.c.seq < o.c.seq,
        )
        .exists()
    )
    candidates = (
        sa.select(o.c.seq)
        .where(
            o.c.sent_time.is_(None),
            sa.or_(
                o.c.lease_owner.is_(None),
                o.c.lease_until < sa.bindparam("now"),
                o.c.lease_owner == sa.bindparam("me"),
            ),
            ~blocked,
        )
        .order_by(o.c.seq)
        .limit(sa.bindparam("n"))
    )
    return o, candidates
