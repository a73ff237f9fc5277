"""Tiers from points earned in a rolling 12 months.

A member's tier is the highest tier whose threshold their *qualifying points* reach:
credits (earns, and lots carried over by a merge, by their original earn time) booked in
the 12 months up to now. Redemptions do not lower it (spending is what tiers reward);
expiry does not either. The tier is re-evaluated whenever the member is touched, so a
member whose earnings roll out of the window moves down on the next read or write, and
every change is recorded with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.member.domain.ledger import add_months

WINDOW_MONTHS = 12


@dataclass(frozen=True, slots=True)
class TierRule:
    """One tier: code, display name, qualifying threshold and benefits."""

    code: str
    name: str
    threshold: int
    benefits: tuple[str, ...] = ()


NO_TIER = TierRule("", "", 0, ())

DEFAULT_TIERS: tuple[TierRule, ...] = (
    TierRule("SILVER", "Silver", 1_000, ("birthday points x2", "priority service booking")),
    TierRule(
        "GOLD",
        "Gold",
        5_000,
        ("birthday points x2", "priority service booking", "free pick-up and delivery"),
    ),
    TierRule(
        "PLATINUM",
        "Platinum",
        20_000,
        (
            "birthday points x3",
            "priority service booking",
            "free pick-up and delivery",
            "courtesy car during service",
            "dedicated advisor",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class TierChangeDecision:
    """A tier change to record."""

    from_code: str
    to_code: str
    reason: str


def validate_tiers(tiers: Sequence[TierRule]) -> tuple[TierRule, ...]:
    """Tiers sorted by threshold; thresholds positive and distinct, codes unique."""
    ordered = tuple(sorted(tiers, key=lambda t: t.threshold))
    codes = [t.code for t in ordered]
    if len(set(codes)) != len(codes) or any(not c for c in codes):
        raise ValueError("tier codes must be non-empty and unique")
    thresholds = [t.threshold for t in ordered]
    if len(set(thresholds)) != len(thresholds) or any(t <= 0 for t in thresholds):
        raise ValueError("tier thresholds must be positive and distinct")
    return ordered


def tiers_from_env(env: Mapping[str, str]) -> tuple[TierRule, ...]:
    """`MARQUE_MEMBER_TIERS` as JSON `[{"code","name","threshold","benefits"}]`, else the
    defaults (Silver 1,000 / Gold 5,000 / Platinum 20,000)."""
    raw = env.get("MARQUE_MEMBER_TIERS", "").strip()
    if not raw:
        return DEFAULT_TIERS
    items = json.loads(raw)
    return validate_tiers(
        [
            TierRule(
                str(i["code"]),
                str(i.get("name", i["code"])),
                int(i["threshold"]),
                tuple(str(b) for b in i.get("benefits", ())),
            )
            for i in items
        ]
    )


def window_start(now: datetime) -> datetime:
    """Start of the rolling qualifying window ending at `now` (exclusive)."""
    return add_months(now, -WINDOW_MONTHS)


def qualifying_points(credits: Sequence[tuple[datetime, int]], now: datetime) -> int:
    """Sum of (earned_at, points) credits inside the rolling window."""
    start = window_start(now)
    return sum(points for earned_at, points in credits if start < earned_at <= now)


def tier_for(points: int, tiers: Sequence[TierRule] = DEFAULT_TIERS) -> TierRule:
    """The highest tier whose threshold `points` reach, else NO_TIER."""
    best = NO_TIER
    for tier in sorted(tiers, key=lambda t: t.threshold):
        if points >= tier.threshold:
            best = tier
    return best


def by_code(code: str, tiers: Sequence[TierRule] = DEFAULT_TIERS) -> TierRule:
    """The tier with `code` (NO_TIER for "" or a code no longer configured)."""
    return next((t for t in tiers if t.code == code), NO_TIER)


def review(
    current_code: str, points: int, tiers: Sequence[TierRule] = DEFAULT_TIERS, cause: str = ""
) -> TierChangeDecision | None:
    """The change to record if `points` put the member in another tier, with why."""
    target = tier_for(points, tiers)
    if target.code == current_code:
        return None
    current = by_code(current_code, tiers)
    if target.threshold > current.threshold:
        reason = f"qualifying points {points} reached {target.code} ({target.threshold})"
    elif target.code:
        reason = (
            f"qualifying points {points} fell below {current.code or current_code} "
            f"({current.threshold}); {target.code} ({target.threshold}) still reached"
        )
    else:
        reason = (
            f"qualifying points {points} fell below the lowest tier "
            f"{current.code or current_code} ({current.threshold})"
        )
    if cause:
        reason = f"{reason}; {cause}"
    return TierChangeDecision(current_code, target.code, reason)
