"""The qualifying points cached on the member row (migration 0002), and when to trust them.

A member's qualifying points are the credits earned in the rolling 12 months (tiers.py).
Summing the window on every read would cost an index range scan per call, so the member
row keeps the sum with the interval in which it is exact: `asof <= now < until` (`until`
None: no credit in the window, none leaves). An earn inside that interval adds to the sum
in place; anything else (a credit leaving the window, a clock set back before `asof`)
recomputes it from the ledger first: a cache that ran out is moved by the credits that left
or entered the window since `asof` (accounts.window_points), only a clock set back or a
merge's credits sum the window again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.member.domain import ledger, tiers
from services.member.domain.tiers import TierRule


@dataclass(frozen=True, slots=True)
class QualifyingCache:
    """The cached sum and the interval in which it holds (`asof` None: not computed yet,
    members older than 0002)."""

    points: int
    asof: datetime | None
    until: datetime | None

    def at(self, now: datetime) -> int | None:
        """The cached points if they hold at `now`, else None."""
        if self.asof is None or self.asof > now or (self.until is not None and self.until <= now):
            return None
        return self.points

    def ran_out(self, now: datetime) -> bool:
        """The cache no longer holds at `now` and was not written at a later `now` (another
        replica's clock): such a cache is rewritten once; a later one is only read around,
        or replicas with different clocks would rewrite it in turn."""
        return self.at(now) is None and not (self.asof is not None and self.asof > now)


def leaves(now: datetime) -> datetime:
    """When a credit earned at `now` leaves the window (the first credit in an empty one
    bounds the cache)."""
    return ledger.add_months(now, tiers.WINDOW_MONTHS)


def holds_until(
    first_in_window: datetime | None, first_after_now: datetime | None
) -> datetime | None:
    """Until when a window sum computed at `now` holds: the first credit in the window
    leaves it no earlier than 12 months after it was earned (add_months never moves a
    date forward and back to a later one); a credit dated after `now` (a clock set back)
    enters it when that time comes. None: for ever."""
    ends = [t for t in (first_in_window and leaves(first_in_window), first_after_now) if t]
    return min(ends, default=None)


def needs_refresh(
    *,
    active: bool,
    tier: str,
    next_expiry: datetime | None,
    cache: QualifyingCache,
    qualifying: int,
    now: datetime,
    tier_rules: tuple[TierRule, ...],
) -> bool:
    """Whether a read at `now` must write first: a lot is due to expire, or an active
    member's tier no longer matches its qualifying points, or its cache ran out."""
    if ledger.due(next_expiry, now):
        return True
    if not active:
        return False
    return tiers.tier_for(qualifying, tier_rules).code != tier or cache.ran_out(now)
