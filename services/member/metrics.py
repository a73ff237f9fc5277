"""Domain metrics of the member service (prometheus_client's default registry, served by
the mesh's `/metrics`). Labels are closed sets, never member ids or identities."""

from __future__ import annotations

from prometheus_client import Counter

POINTS = Counter(
    "marque_points",
    "Points booked in the ledger, by direction (earn, redeem, expire, merge, forfeit).",
    ["direction"],
)
MEMBERS_REGISTERED = Counter(
    "marque_members_registered",
    "RegisterMember calls by outcome: created, or existing (identity already known).",
    ["outcome"],
)
TIER_CHANGES = Counter(
    "marque_member_tier_changes", "Tier changes recorded, by new tier ('none' below all).", ["to"]
)
ERASURES = Counter("marque_member_erasures", "Members erased on request (first erasure only).")
MERGES = Counter("marque_member_merges", "Members merged into another.")
REDEEM_REFUSED = Counter(
    "marque_points_redeem_refused", "Redemptions refused for insufficient points."
)


def points(direction: str, amount: int) -> None:
    """Count `amount` points (absolute) in `direction`."""
    if amount:
        POINTS.labels(direction=direction).inc(abs(amount))
