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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.member.domain.ledger import Entry, Lot
from services.member.domain.model import IdentityRecord, MemberRow
from services.member.domain.qualifying import QualifyingCache
from services.member.domain.rules import MemberState
from services.member.domain.tiers import TierChangeDecision
from services.member.store.tables import members

# A request id in its caller's namespace, per method: (scope, method, request_id).
RequestKey = tuple[str, str, str]

# What the lookup selects of a member row, in `member_from`'s order (every column).
MEMBER_COLUMNS = (
    "id",
    "state",
    "merged_into",
    "display_name",
    "city",
    "preferred_dealer_id",
    "balance",
    "tier",
    "next_expiry",
    "qualifying",
    "qualifying_asof",
    "qualifying_until",
    "create_time",
    "create_actor",
    "update_time",
    "update_actor",
    "erase_time",
)
assert set(MEMBER_COLUMNS) == {c.name for c in members.c}, "a members column is not read"
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
LOT_COLUMNS = ("lot_id", "member_id", "expire_time", "earned_time", "remaining")
# How many lots of the queue's head the lookup reads for a member with a redemption in the
# batch (one more says whether that is all of them); a redemption beyond them is Slow.
LOT_HEAD = 32
# A time as a back end writes it (None stays None): `Texts` below.
Text = Callable[[dt.datetime | None], Any]


_STATES = {s.value: s for s in MemberState}


def member_from(r: Sequence[Any], time: Callable[[Any], Any]) -> MemberRow:
    """A `members` row as the lookup selects it (MEMBER_COLUMNS), mapped as
    `rows.member_row` maps it, straight from the tuple; `time` reads a stored time as an
    aware UTC datetime."""
    (id_, state, merged_into, display_name, city, dealer_id, balance, tier, next_expiry,
     qualifying, asof, until, create_time, create_actor, update_time, update_actor,
     erase_time) = r  # fmt: skip
    return MemberRow(
        id=id_,
        state=_STATES[state],
        merged_into=merged_into,
        display_name=display_name,
        city=city,
        preferred_dealer_id=dealer_id,
        balance=balance,
        tier=tier,
        next_expiry=time(next_expiry),
        cache=QualifyingCache(int(qualifying), time(asof), time(until)),
        create_time=time(create_time),
        create_actor=create_actor,
        update_time=time(update_time),
        update_actor=update_actor,
        erase_time=time(erase_time),
    )


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
    # The head of the open lots' queue (FIFO, at most LOT_HEAD) of the members asked for,
    # and which of them have no lot beyond it.
    lots: dict[str, list[Lot]] = field(default_factory=dict)
    whole: set[str] = field(default_factory=set)


def lot_heads(
    rows: Sequence[tuple[str, str, int, Any, Any]], time: Callable[[Any], Any]
) -> tuple[dict[str, list[Lot]], set[str]]:
    """The lookup's (member_id, lot_id, remaining, expire_time, earned_time) rows, at most
    LOT_HEAD + 1 per member in FIFO order, as `BatchFound.lots` and `whole`."""
    heads: dict[str, list[Lot]] = {}
    for member_id, lot_id, remaining, expire_time, earned_time in rows:
        heads.setdefault(member_id, []).append(
            Lot(lot_id, int(remaining), time(expire_time), time(earned_time))
        )
    whole = {m for m, lots in heads.items() if len(lots) <= LOT_HEAD}
    return {m: lots[:LOT_HEAD] for m, lots in heads.items()}, whole


@dataclass(frozen=True, slots=True)
class Booking:
    """A ledger entry to append, with the balance after it."""

    member_id: str
    entry: Entry
    balance_after: int
    reason: str
    source_ref: str
    actor: str

    def row(self, text: Text) -> tuple[Any, ...]:
        """Its `point_transactions` row in ENTRY_COLUMNS order (without `seq`, which the
        database gives), the times as `text` has them."""
        e = self.entry
        return (
            e.id,
            self.member_id,
            e.kind.value,
            e.points,
            self.balance_after,
            self.reason,
            self.source_ref,
            self.actor,
            text(e.at),
            text(e.expire_at),
            text(e.earned_at),
            e.lot_id,
        )


@dataclass(frozen=True, slots=True)
class Remembered:
    """A request id to remember with what it did, under the member it concerns."""

    key: RequestKey
    fingerprint: str
    member_id: str
    result: str
    create_time: dt.datetime

    def row(self, text: Text) -> tuple[Any, ...]:
        """Its `request_ids` row in REQUEST_COLUMNS order."""
        scope, method, request_id = self.key
        return (
            scope,
            method,
            request_id,
            self.fingerprint,
            self.member_id,
            self.result,
            text(self.create_time),
        )


@dataclass(frozen=True, slots=True)
class TierChange:
    """A tier change to record."""

    member_id: str
    decision: TierChangeDecision
    at: dt.datetime

    def row(self, text: Text) -> tuple[Any, ...]:
        """Its `tier_changes` row in TIER_COLUMNS order."""
        d = self.decision
        return (self.member_id, d.from_code, d.to_code, d.reason, text(self.at))


@dataclass(slots=True)
class BatchWrites:
    """Everything a batch writes, in booking order: ledger entries, the members' points
    columns (each changed member once), request ids, tier changes."""

    entries: list[Booking] = field(default_factory=list)
    members: list[MemberRow] = field(default_factory=list)
    requests: list[Remembered] = field(default_factory=list)
    tier_changes: list[TierChange] = field(default_factory=list)
    # Lot changes (store/lots.py): lots opened (with what is left of them at the end of
    # the batch), stored lots whose remaining changed, stored lots spent (deleted).
    lots_opened: list[tuple[str, Lot]] = field(default_factory=list)
    lots_set: list[Lot] = field(default_factory=list)
    lots_spent: list[str] = field(default_factory=list)

    def lot_rows(self, text: Text) -> list[tuple[Any, ...]]:
        """`lots_opened` as `point_lots` rows in LOT_COLUMNS order."""
        return [
            (lot.id, member_id, text(lot.expire_at), text(lot.earned_at), lot.remaining)
            for member_id, lot in self.lots_opened
        ]


def points_row(row: MemberRow, text: Text) -> tuple[Any, ...]:
    """The points columns of a member row in POINTS_COLUMNS order, then its id."""
    cache = row.cache
    return (
        row.balance,
        row.tier,
        text(row.next_expiry),
        cache.points,
        text(cache.asof),
        text(cache.until),
        text(row.update_time),
        row.update_actor,
        row.id,
    )


class Texts(dict[dt.datetime | None, Any]):
    """A batch's times as one back end writes them, each converted once (a call's `now` is
    in half a dozen columns of its writes: the entry, the member, the request id); its
    `__getitem__` is the `Text` the rows take (a C call, Python only on a miss)."""

    def __init__(self, convert: Callable[[dt.datetime], Any]) -> None:
        super().__init__()
        self[None] = None
        self._convert = convert

    def __missing__(self, value: dt.datetime | None) -> Any:
        assert value is not None
        text = self[value] = self._convert(value)
        return text
