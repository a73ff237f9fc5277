"""The points batch: what the group-committed EarnPoints/RedeemPoints writer
(points_writer.py) reads and writes in its ONE transaction, and the two back ends' ways of
doing it (batch_sqlite.py: one hand-over to the SQLite thread for the lookups, one for the
writes and the commit; batch_postgres.py: one pipelined round trip for the lookups, one
statement pipelined with the commit for the writes).

The lookup locks first and then reads, so every read sees what the batch may decide on:
SQLite `BEGIN IMMEDIATE` (the whole database); PostgreSQL advisory locks on the batch's
request keys (`mesh.unit_of_work.lock_hash`, sorted: a twin request in another process
waits instead of racing), then the members' rows `FOR UPDATE` (in id order). It reads the
members, their live identities (the replies carry them) and the request ids seen, each
with one indexed query whatever the batch size. The transaction stays open for `write`
(or the connection's rollback).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from services.member.domain.ledger import Entry
from services.member.domain.model import IdentityRecord, MemberRow
from services.member.domain.tiers import TierChangeDecision
from services.member.store.rows import entry_values
from services.member.store.tables import members

# A request id in its caller's namespace, per method: (scope, method, request_id).
RequestKey = tuple[str, str, str]

MEMBER_COLUMNS = tuple(c.name for c in members.c)
# The points columns of a member row a batch writes back (the row is locked meanwhile).
POINTS_COLUMNS = (
    "balance",
    "tier",
    "next_expiry",
    "qualifying",
    "qualifying_asof",
    "qualifying_until",
    "update_time",
    "update_actor",
)
ENTRY_COLUMNS = (
    "id",
    "member_id",
    "kind",
    "points",
    "balance_after",
    "reason",
    "source_ref",
    "actor",
    "create_time",
    "expire_time",
    "earned_time",
    "lot_id",
)
REQUEST_COLUMNS = (
    "scope",
    "method",
    "request_id",
    "fingerprint",
    "member_id",
    "result",
    "create_time",
)
TIER_COLUMNS = ("member_id", "from_tier", "to_tier", "reason", "change_time")


@dataclass(frozen=True, slots=True)
class Prior:
    """An earlier request with the same id: what it did and what it asked."""

    result: str
    fingerprint: str


@dataclass(slots=True)
class BatchFound:
    """What the lookup found (rows locked until the batch ends)."""

    members: dict[str, MemberRow]
    identities: dict[str, tuple[IdentityRecord, ...]]
    requests: dict[RequestKey, Prior]


@dataclass(frozen=True, slots=True)
class Booking:
    """A ledger entry to append, with the balance after it."""

    member_id: str
    entry: Entry
    balance_after: int
    reason: str
    source_ref: str
    actor: str

    def values(self) -> dict[str, Any]:
        """Its `point_transactions` row (without `seq`, which the database gives)."""
        return entry_values(
            self.member_id,
            self.entry,
            balance_after=self.balance_after,
            reason=self.reason,
            source_ref=self.source_ref,
            actor=self.actor,
        )


@dataclass(frozen=True, slots=True)
class Remembered:
    """A request id to remember with what it did, under the member it concerns."""

    key: RequestKey
    fingerprint: str
    member_id: str
    result: str
    create_time: dt.datetime

    def values(self) -> dict[str, Any]:
        scope, method, request_id = self.key
        return {
            "scope": scope,
            "method": method,
            "request_id": request_id,
            "fingerprint": self.fingerprint,
            "member_id": self.member_id,
            "result": self.result,
            "create_time": self.create_time,
        }


@dataclass(frozen=True, slots=True)
class TierChange:
    """A tier change to record."""

    member_id: str
    decision: TierChangeDecision
    at: dt.datetime

    def values(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "from_tier": self.decision.from_code,
            "to_tier": self.decision.to_code,
            "reason": self.decision.reason,
            "change_time": self.at,
        }


@dataclass(slots=True)
class BatchWrites:
    """Everything a batch writes, in booking order: ledger entries, the members' points
    columns (each changed member once), request ids, tier changes."""

    entries: list[Booking] = field(default_factory=list)
    members: list[MemberRow] = field(default_factory=list)
    requests: list[Remembered] = field(default_factory=list)
    tier_changes: list[TierChange] = field(default_factory=list)


def points_values(row: MemberRow) -> dict[str, Any]:
    """The points columns of a member row, and its id."""
    return {
        "id": row.id,
        "balance": row.balance,
        "tier": row.tier,
        "next_expiry": row.next_expiry,
        "qualifying": row.cache.points,
        "qualifying_asof": row.cache.asof,
        "qualifying_until": row.cache.until,
        "update_time": row.update_time,
        "update_actor": row.update_actor,
    }
