"""The points ledger: append-only entries whose sum is the balance.

Every credit (an earn, or a lot carried over by a merge) opens a *lot* with an expiry
time; debits (redeem, merge-out, forfeit) consume lots first-in first-out, i.e. the lot
that expires first goes first, so a member never loses points that could have been spent.
A lot that reaches its expiry with points left gets an EXPIRE entry for exactly that rest.
The ledger is the single truth: the lots are what replaying its entries gives
(`open_lots`), and `balance(entries) == sum(points)` by construction. The store keeps the
open lots as well (store/lots.py, written in the transaction of the entries), so that
expiry and debits read the lots they touch (`expire_lots`, `take`) instead of the whole
ledger; the tests hold them to the replay.

The functions here never book anything themselves: they return the entries to append,
and refuse (FailedPrecondition INSUFFICIENT_POINTS) what would drive the balance below
zero. Expiry is always applied before a debit, so a redemption can never spend points that
were already due to expire.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.member.domain.errors import insufficient_points, invalid

DEFAULT_EXPIRY_MONTHS = 24


class EntryKind(StrEnum):
    """What an entry does; values are stored in the database."""

    EARN = "earn"
    REDEEM = "redeem"
    EXPIRE = "expire"
    MERGE_IN = "merge_in"
    MERGE_OUT = "merge_out"
    FORFEIT = "forfeit"


CREDITS = frozenset({EntryKind.EARN, EntryKind.MERGE_IN})
FIFO_DEBITS = frozenset({EntryKind.REDEEM, EntryKind.MERGE_OUT, EntryKind.FORFEIT})


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry. `points` is signed; credits carry `expire_at` and `earned_at`
    (the original earn time, kept across merges); an EXPIRE names the lot it closes."""

    id: str
    kind: EntryKind
    points: int
    at: datetime
    expire_at: datetime | None = None
    earned_at: datetime | None = None
    lot_id: str | None = None


@dataclass(slots=True)
class Lot:
    """Unspent points of one credit."""

    id: str
    remaining: int
    expire_at: datetime
    earned_at: datetime


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole calendar months; the 31st becomes the month's last day."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _fifo_key(lot: Lot) -> tuple[datetime, datetime, str]:
    return (lot.expire_at, lot.earned_at, lot.id)


def open_lots(entries: Iterable[Entry]) -> list[Lot]:
    """Replay the ledger (in booking order) into its lots with points left, FIFO order."""
    lots: dict[str, Lot] = {}
    for e in entries:
        if e.kind in CREDITS:
            assert e.expire_at is not None
            lots[e.id] = Lot(e.id, e.points, e.expire_at, e.earned_at or e.at)
        elif e.kind is EntryKind.EXPIRE:
            lot = lots[e.lot_id or ""]
            lot.remaining += e.points
        else:
            _consume(sorted(lots.values(), key=_fifo_key), -e.points)
        lots = {k: v for k, v in lots.items() if v.remaining > 0}
    return sorted(lots.values(), key=_fifo_key)


def _consume(lots: Sequence[Lot], amount: int) -> None:
    for lot in lots:
        if amount <= 0:
            return
        take = min(lot.remaining, amount)
        lot.remaining -= take
        amount -= take
    if amount > 0:
        raise ValueError("ledger inconsistent: a debit exceeds the open lots")


def balance(entries: Iterable[Entry]) -> int:
    """The balance is the ledger sum, nothing else."""
    return sum(e.points for e in entries)


def next_expiry(entries: Iterable[Entry]) -> datetime | None:
    """When the earliest open lot expires (None if no points are left)."""
    lots = open_lots(entries)
    return lots[0].expire_at if lots else None


def due(next_expiry: datetime | None, now: datetime) -> bool:
    """True when a lot expires at or before `now` (expire it before anything else)."""
    return next_expiry is not None and next_expiry <= now


def earn(
    entry_id: str, points: int, now: datetime, expiry_months: int = DEFAULT_EXPIRY_MONTHS
) -> Entry:
    """An EARN entry opening a lot that expires `expiry_months` after `now`."""
    if points <= 0:
        raise invalid("points", "must be positive")
    return Entry(
        entry_id,
        EntryKind.EARN,
        points,
        now,
        expire_at=add_months(now, expiry_months),
        earned_at=now,
    )


def expire(entries: Sequence[Entry], now: datetime, new_id: Callable[[], str]) -> list[Entry]:
    """EXPIRE entries for every lot whose expiry is at or before `now`, oldest first."""
    return [
        Entry(new_id(), EntryKind.EXPIRE, -lot.remaining, now, lot_id=lot.id)
        for lot in open_lots(entries)
        if lot.expire_at <= now
    ]


def redeem(entry_id: str, current_balance: int, points: int, now: datetime) -> Entry:
    """A REDEEM entry, or FailedPrecondition INSUFFICIENT_POINTS. `current_balance` must
    already exclude expired lots (apply `expire` first, in the same transaction)."""
    if points <= 0:
        raise invalid("points", "must be positive")
    if points > current_balance:
        raise insufficient_points(points, current_balance)
    return Entry(entry_id, EntryKind.REDEEM, -points, now)


def carry_over(
    loser_entries: Sequence[Entry], now: datetime, new_id: Callable[[], str]
) -> tuple[Entry | None, list[Entry]]:
    """Merge support: the loser's MERGE_OUT of all its unspent points, and one MERGE_IN
    per open lot for the winner, keeping each lot's expiry and original earn time.
    Expire the loser's due lots first."""
    lots = open_lots(loser_entries)
    total = sum(lot.remaining for lot in lots)
    if total == 0:
        return None, []
    out = Entry(new_id(), EntryKind.MERGE_OUT, -total, now)
    ins = [
        Entry(
            new_id(),
            EntryKind.MERGE_IN,
            lot.remaining,
            now,
            expire_at=lot.expire_at,
            earned_at=lot.earned_at,
        )
        for lot in lots
    ]
    return out, ins


def forfeit(entry_id: str, current_balance: int, now: datetime) -> Entry | None:
    """Erasure closes the remaining balance with one FORFEIT entry (None if zero)."""
    if current_balance <= 0:
        return None
    return Entry(entry_id, EntryKind.FORFEIT, -current_balance, now)


# ------------------------------------------------------------------------------ stored lots
# The store keeps every ledger's open lots (store/lots.py), so expiry and debits work on
# the lots they touch instead of replaying the whole ledger; these are the same rules on
# them, and `open_lots` of the ledger is what the stored lots must always equal.


def fifo(lots: Iterable[Lot]) -> list[Lot]:
    """Lots in the order debits consume them (and `open_lots` returns them)."""
    return sorted(lots, key=_fifo_key)


def expire_lots(lots: Iterable[Lot], now: datetime, new_id: Callable[[], str]) -> list[Entry]:
    """`expire` on stored open lots (the due ones suffice): an EXPIRE entry for every lot
    whose expiry is at or before `now`, in FIFO order."""
    return [
        Entry(new_id(), EntryKind.EXPIRE, -lot.remaining, now, lot_id=lot.id)
        for lot in fifo(lots)
        if lot.expire_at <= now and lot.remaining > 0
    ]


def take(lots: Sequence[Lot], amount: int) -> tuple[list[Lot], int]:
    """Take `amount` from FIFO-ordered `lots` (new Lot values, the inputs untouched): the
    lots whose remaining changed (0: spent) and what is still to take beyond them."""
    changed: list[Lot] = []
    for lot in lots:
        if amount <= 0:
            break
        used = min(lot.remaining, amount)
        changed.append(Lot(lot.id, lot.remaining - used, lot.expire_at, lot.earned_at))
        amount -= used
    return changed, amount


def lot_of(credit: Entry) -> Lot:
    """The lot a credit (EARN, MERGE_IN) opens."""
    assert credit.kind in CREDITS and credit.expire_at is not None
    return Lot(credit.id, credit.points, credit.expire_at, credit.earned_at or credit.at)


def as_entries(lots: Iterable[Lot]) -> list[Entry]:
    """Open lots as the credits that would open them (`open_lots` of these is `lots`): what
    `carry_over` and `next_expiry` need of a ledger, without reading it."""
    return [
        Entry(lot.id, EntryKind.MERGE_IN, lot.remaining, lot.earned_at, lot.expire_at,
              lot.earned_at)
        for lot in fifo(lots)
        if lot.remaining > 0
    ]  # fmt: skip
