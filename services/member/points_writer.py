"""The group-committed points write: many EarnPoints and RedeemPoints, one transaction.

`PointsWriter.write` is the batch function of the member writer (mesh/groupcommit.py),
which answers every caller once the batch has committed. One batch, on the writer's held
connection (and, on SQLite, holding the process's writer queue,
`mesh.unit_of_work.writer_lock`, so units of work and batches take turns):
1. lock and look up in ONE call (store/batch.py): the batch's members (row-locked), their
   live identities and the request ids seen;
2. decide each write in arrival order on the batch's in-memory state, so several writes
   for one member in one batch see each other (a redemption sees the earn before it, a
   retried request id in the same batch gets the first one's entry):
   - a request id this caller sent before: the same request gets the first result
     (`Retried`; an erased member's requests match by `erasure.erased_fingerprint`),
     another is REQUEST_ID_REUSED; then an unknown member is NOT_FOUND, a merged or erased
     one FAILED_PRECONDITION;
   - the fast path, exactly what `store.points.credit` / `debit` do in one UPDATE: an
     active member with no lot due and cached qualifying points that hold at the call's
     time gets the points added (balance, qualifying points, next expiry, a lot opened) or
     taken (more than the balance is INSUFFICIENT_POINTS; from the head of the member's
     lots, which the lookup reads for members with a redemption), the entry booked, the
     tier reviewed;
   - anything else (a lot due, the cache ran out, a clock set back, a redemption beyond
     the lots read) is `Slow`: the caller
     runs the per-call unit of work of accounts.py (expiry, recomputation, then the
     write), and so do the batch's later writes for that member or that request id, in
     order behind it;
3. write, again in ONE call: ledger entries in booking order, each changed member's
   points columns once, request ids, tier changes, the lots opened, changed and spent, and
   commit; then the domain metrics of
   what committed (the batch's after-commit hooks).
A write that is refused (a domain error) fails alone and writes nothing. A batch that
loses a race (a unique key, a serialization failure, a deadlock) is run again from its
lookup, like `mesh.unit_of_work.transaction`; one that keeps failing raises, and the group
committer retries its writes one by one, so a poisoned write fails only its own caller.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.dberrors import loggable
from mesh.errors import DomainError
from mesh.groupcommit import GroupCommitter, HeldConnection
from mesh.idempotency import Asked, RequestIdReused
from mesh.unit_of_work import ATTEMPTS, retryable, writer_lock
from services.member import metrics, store
from services.member.domain import erasure, ledger, qualifying, rules, tiers
from services.member.domain.errors import member_not_found
from services.member.domain.ledger import Entry, Lot
from services.member.domain.model import MemberRecord, MemberRow, TransactionRecord
from services.member.domain.qualifying import QualifyingCache
from services.member.domain.tiers import TierRule
from services.member.store.batch import (
    BatchFound,
    BatchWrites,
    Booking,
    Prior,
    Remembered,
    RequestKey,
    TierChange,
)

# The writer keeps its connection between batches while they follow each other this
# closely; after a longer pause it takes a fresh (pinged) one from the pool.
WRITER_IDLE_SECONDS = 5.0
# While points writes keep the writer busy, it waits this long for more of them before
# each batch (mesh/groupcommit.py: PostgreSQL's commit_delay; a lone caller never waits).
WRITER_LINGER_SECONDS = 0.001
WRITER_MAX_BATCH = 256
EARN = "EarnPoints"
REDEEM = "RedeemPoints"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PointsWrite:
    """One EarnPoints (`earned`: its entry, `ledger.earn`) or RedeemPoints (`points` to
    take, booked as `entry_id`) waiting for the writer, at the call's time `now`."""

    method: str
    member_id: str
    req: Asked
    now: dt.datetime
    entry_id: str
    points: int
    reason: str
    source_ref: str
    earned: Entry | None = None

    @property
    def key(self) -> RequestKey:
        """The request id in its caller's namespace, for this method."""
        return (self.req.scope, self.method, self.req.request_id)


@dataclass(frozen=True, slots=True)
class Retried:
    """The request id was seen: the first call's entry (the caller reads it and the
    member after the commit)."""

    txn_id: str


@dataclass(frozen=True, slots=True)
class Slow:
    """Not decided here: the caller runs the per-call unit of work (accounts.py)."""


SLOW = Slow()
Booked = tuple[TransactionRecord, MemberRecord]
Outcome = Booked | Retried | Slow


def fast(row: MemberRow, now: dt.datetime) -> bool:
    """Whether a points write at `now` updates the row in place: active, no lot due,
    cached qualifying points that hold (what `store.points._fast_path` asks in SQL)."""
    return row.active and not ledger.due(row.next_expiry, now) and row.cache.at(now) is not None


def _points_changed(
    row: MemberRow,
    w: PointsWrite,
    *,
    balance: int,
    tier: str,
    next_expiry: dt.datetime | None,
    cache: QualifyingCache,
) -> MemberRow:
    """`row` with its points columns as a write at `w.now` leaves them (what
    `dataclasses.replace` would give, constructed directly: it costs several times less)."""
    return MemberRow(
        id=row.id,
        state=row.state,
        merged_into=row.merged_into,
        display_name=row.display_name,
        city=row.city,
        preferred_dealer_id=row.preferred_dealer_id,
        balance=balance,
        tier=tier,
        next_expiry=next_expiry,
        cache=cache,
        create_time=row.create_time,
        create_actor=row.create_actor,
        update_time=w.now,
        update_actor=w.req.scope,
        erase_time=row.erase_time,
    )


@dataclass(slots=True)
class _Pending:
    """A booked write waiting for its entry's `seq` (given by the database at commit)."""

    booking: Booking
    record: MemberRecord

    def answer(self, seqs: dict[str, int]) -> Booked:
        b, e = self.booking, self.booking.entry
        txn = TransactionRecord(
            seq=seqs[e.id],
            id=e.id,
            member_id=b.member_id,
            kind=e.kind,
            points=e.points,
            balance_after=b.balance_after,
            reason=b.reason,
            source_ref=b.source_ref,
            actor=b.actor,
            create_time=e.at,
            expire_time=e.expire_at,
        )
        return txn, self.record


@dataclass(slots=True)
class _Batch:
    """A batch's in-memory state while its writes are decided one by one."""

    found: BatchFound
    tier_rules: tuple[TierRule, ...]
    writes: BatchWrites = field(default_factory=BatchWrites)
    changed: dict[str, MemberRow] = field(default_factory=dict)
    slow_members: set[str] = field(default_factory=set)
    slow_keys: set[RequestKey] = field(default_factory=set)
    earned: int = 0  # the points booked by direction, for the metrics
    redeemed: int = 0
    # Lots: opened in this batch (id -> member, lot as the batch leaves it), stored ones
    # changed (id -> lot; 0 remaining: spent).
    opened: dict[str, tuple[str, Lot]] = field(default_factory=dict)
    touched: dict[str, Lot] = field(default_factory=dict)

    def decide(self, w: PointsWrite) -> _Pending | Retried | Slow | DomainError:
        key = w.key if w.req.request_id else None
        if key is not None:
            if key in self.slow_keys:
                return SLOW
            prior = self.found.requests.get(key)
            if prior is not None:
                also = erasure.erased_fingerprint(w.method, w.member_id)
                if prior.fingerprint not in (w.req.fingerprint, also):
                    return RequestIdReused()
                return Retried(prior.result)
        row = self.found.members.get(w.member_id)
        if row is None:
            return member_not_found(w.member_id)
        try:
            rules.require_active(w.member_id, row.state, row.merged_into)
        except DomainError as e:
            return e
        if w.member_id in self.slow_members or not fast(row, w.now):
            self.slow_members.add(w.member_id)
            if key is not None:
                self.slow_keys.add(key)
            return SLOW
        try:
            pending = self._earn(w, row) if w.earned is not None else self._redeem(w, row)
        except DomainError as e:
            return e
        if pending is None:  # a redemption beyond the lots the lookup read
            self.slow_members.add(w.member_id)
            if key is not None:
                self.slow_keys.add(key)
            return SLOW
        if key is not None:
            done = Remembered(key, w.req.fingerprint, w.member_id, w.entry_id, w.now)
            self.writes.requests.append(done)
            self.found.requests[key] = Prior(w.entry_id, w.req.fingerprint)
        self.writes.entries.append(pending.booking)
        return pending

    def _earn(self, w: PointsWrite, row: MemberRow) -> _Pending:
        """`store.points.credit`, the entry, the tier review (accounts.earn's fast path)."""
        entry = w.earned
        assert entry is not None and entry.expire_at is not None
        points, now, cache = entry.points, w.now, row.cache
        held = cache.points + points
        next_expiry = row.next_expiry
        if next_expiry is None or next_expiry > entry.expire_at:
            next_expiry = entry.expire_at
        until = cache.until if cache.until is not None else qualifying.leaves(now)
        tier = row.tier
        decision = tiers.review(tier, held, self.tier_rules, f"earned {points}")
        if decision is not None:
            self.writes.tier_changes.append(TierChange(w.member_id, decision, now))
            tier = decision.to_code
        self.earned += points
        self._open(w.member_id, ledger.lot_of(entry))
        kept = QualifyingCache(held, now, until)
        new = _points_changed(
            row, w, balance=row.balance + points, tier=tier, next_expiry=next_expiry, cache=kept
        )
        return self._booked(w, entry, new, held)

    def _open(self, member_id: str, lot: Lot) -> None:
        """A lot opened: written at the end; in the member's queue head if it falls within
        what the lookup read (beyond it, older unread lots come first)."""
        self.opened[lot.id] = (member_id, lot)
        head = self.found.lots.get(member_id)
        if head is None:
            return
        if member_id in self.found.whole or (head and ledger.fifo([head[-1], lot])[0] is lot):
            self.found.lots[member_id] = ledger.fifo([*head, lot])

    def _take(self, member_id: str, points: int) -> bool:
        """Take `points` from the member's queue head (FIFO); False, changing nothing, when
        the head read does not hold them."""
        head = self.found.lots.get(member_id, [])
        changed, short = ledger.take(head, points)
        if short > 0:
            return False
        for lot in changed:
            if lot.id in self.opened:
                self.opened[lot.id] = (member_id, lot)
            else:
                self.touched[lot.id] = lot
        by_id = {lot.id: lot for lot in changed}
        self.found.lots[member_id] = [
            by_id.get(lot.id, lot) for lot in head if by_id.get(lot.id, lot).remaining > 0
        ]
        return True

    def lot_writes(self) -> None:
        """The batch's lot changes into its writes."""
        w = self.writes
        w.lots_opened = [(m, lot) for m, lot in self.opened.values() if lot.remaining > 0]
        w.lots_set = [lot for lot in self.touched.values() if lot.remaining > 0]
        w.lots_spent = [lot.id for lot in self.touched.values() if lot.remaining <= 0]

    def _redeem(self, w: PointsWrite, row: MemberRow) -> _Pending | None:
        """`store.points.debit` and the entry (accounts.redeem's fast path); more than the
        balance is INSUFFICIENT_POINTS; None (Slow) when the head of the lots read is not
        enough."""
        entry = ledger.redeem(w.entry_id, row.balance, w.points, w.now)
        if not self._take(w.member_id, w.points):
            return None
        new = _points_changed(
            row, w, balance=row.balance - w.points, tier=row.tier, next_expiry=row.next_expiry,
            cache=row.cache,
        )  # fmt: skip
        self.redeemed -= entry.points
        return self._booked(w, entry, new, new.cache.points)

    def committed(self) -> list[Callable[[], object]]:
        """The domain metrics of what the batch booked, to count once it has committed:
        the points by direction (one increment each per batch), the tier changes."""
        hooks: list[Callable[[], object]] = []
        if self.earned:
            hooks.append(partial(metrics.points, "earn", self.earned))
        if self.redeemed:
            hooks.append(partial(metrics.points, "redeem", self.redeemed))
        for change in self.writes.tier_changes:
            to = change.decision.to_code or "none"
            hooks.append(metrics.TIER_CHANGES.labels(to=to).inc)
        return hooks

    def _booked(self, w: PointsWrite, entry: Entry, new: MemberRow, held: int) -> _Pending:
        self.found.members[w.member_id] = self.changed[w.member_id] = new
        idents = self.found.identities.get(w.member_id, ())
        booking = Booking(w.member_id, entry, new.balance, w.reason, w.source_ref, w.req.scope)
        return _Pending(booking, new.record(idents, held))


class PointsWriter:
    """The batch function of the member writer, on its held connection."""

    def __init__(
        self,
        db: Database,
        tier_rules: tuple[TierRule, ...],
        idle_seconds: float = WRITER_IDLE_SECONDS,
    ) -> None:
        self.db = db
        self.tier_rules = tier_rules
        self.connection = HeldConnection(db, idle_seconds)

    def committer(self) -> GroupCommitter[PointsWrite, Outcome]:
        """The member writer: the group committer whose batch function this is."""
        return GroupCommitter(
            self.write,
            max_batch=WRITER_MAX_BATCH,
            name="member-writer",
            linger=WRITER_LINGER_SECONDS,
        )

    async def write(self, batch: Sequence[PointsWrite]) -> list[Outcome | BaseException]:
        """One transaction for the whole batch, run again if it loses a race (see the
        module docstring)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._once(batch)
            except DBAPIError as error:
                if attempt == ATTEMPTS or not retryable(error):
                    raise
                log.info(
                    "points batch retried",
                    extra={"attempt": attempt, "items": len(batch)},
                    exc_info=loggable(error),
                )
        raise AssertionError("unreachable")

    async def _once(self, batch: Sequence[PointsWrite]) -> list[Outcome | BaseException]:
        queue = writer_lock(self.db)
        if queue is not None:
            await queue.acquire()
        try:
            conn = await self.connection.get()
            try:
                results, hooks = await self._write_on(conn, batch)
            except BaseException:
                await self.connection.drop()
                raise
            self.connection.done()
        finally:
            if queue is not None:
                queue.release()
        for hook in hooks:
            try:
                hook()
            except Exception as e:  # the batch is committed and must be answered
                log.error("a post-commit hook failed", exc_info=loggable(e))
        return results

    async def _write_on(
        self, conn: AsyncConnection, batch: Sequence[PointsWrite]
    ) -> tuple[list[Outcome | BaseException], list[Callable[[], object]]]:
        keys = [w.key for w in batch if w.req.request_id]
        debtors = [w.member_id for w in batch if w.earned is None]
        found = await store.batch_lookup(conn, [w.member_id for w in batch], keys, debtors)
        state = _Batch(found, self.tier_rules)
        decided = [state.decide(w) for w in batch]
        state.writes.members = list(state.changed.values())
        state.lot_writes()
        seqs = await store.batch_write(conn, state.writes)
        results: list[Outcome | BaseException] = [
            d.answer(seqs) if isinstance(d, _Pending) else d for d in decided
        ]
        return results, state.committed()
