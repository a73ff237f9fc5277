"""Rules that used to be tested only through gRPC and a database, on plain data: the cached
qualifying points and when a read must write first (domain/qualifying.py), the profile
update mask (domain/profile.py), a consent decision's time (domain/consent.py), and what
erasure plans for a member with a tier (domain/erasure.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mesh.errors import InvalidArgument
from services.member.domain import consent, erasure, ledger, profile, qualifying, tiers
from services.member.domain.consent import Action, Channel, Purpose
from services.member.domain.qualifying import QualifyingCache

T0 = datetime(2024, 1, 31, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def test_the_cache_holds_from_asof_until_until() -> None:
    cache = QualifyingCache(700, T0, T0 + timedelta(days=30))
    assert cache.at(T0) == 700
    assert cache.at(T0 + timedelta(days=30) - SECOND) == 700
    assert cache.at(T0 + timedelta(days=30)) is None  # a credit left the window
    assert cache.at(T0 - SECOND) is None  # a clock set back
    assert QualifyingCache(0, None, None).at(T0) is None  # members older than 0002
    assert QualifyingCache(5, T0, None).at(T0 + timedelta(days=9999)) == 5
    # Ran out: rewritten once; written at a later `now` (another replica): read around.
    assert cache.ran_out(T0 + timedelta(days=31))
    assert not cache.ran_out(T0 - SECOND)
    assert QualifyingCache(0, None, None).ran_out(T0)


def test_a_window_sum_holds_until_its_first_credit_leaves_or_a_later_one_enters() -> None:
    first = T0 - timedelta(days=100)
    assert qualifying.leaves(T0) == ledger.add_months(T0, tiers.WINDOW_MONTHS)
    assert qualifying.holds_until(first, None) == ledger.add_months(first, 12)
    assert qualifying.holds_until(first, T0 + SECOND) == T0 + SECOND
    assert qualifying.holds_until(None, None) is None


@pytest.mark.parametrize(
    ("active", "tier", "next_expiry", "points", "expected"),
    [
        (True, "", None, 0, False),  # nothing due, tier right, cache holds
        (True, "", T0, 0, True),  # a lot expires now
        (False, "GOLD", T0, 0, True),  # a due lot: the write decides (nothing, if inactive)
        (True, "", None, 1000, True),  # SILVER reached: the tier is stale
        (False, "", None, 1000, False),  # not active: no tier review
        (True, "SILVER", T0 + SECOND, 1000, False),
    ],
)
def test_when_a_read_writes_first(
    active: bool, tier: str, next_expiry: datetime | None, points: int, expected: bool
) -> None:
    held = QualifyingCache(points, T0, None)
    got = qualifying.needs_refresh(
        active=active, tier=tier, next_expiry=next_expiry, cache=held, qualifying=points,
        now=T0, tier_rules=tiers.DEFAULT_TIERS,
    )  # fmt: skip
    assert got is expected
    ran_out = QualifyingCache(points, T0 - timedelta(days=2), T0 - timedelta(days=1))
    assert qualifying.needs_refresh(
        active=True, tier=tiers.tier_for(points).code, next_expiry=None, cache=ran_out,
        qualifying=points, now=T0, tier_rules=tiers.DEFAULT_TIERS,
    )  # fmt: skip


def test_the_update_mask() -> None:
    values = {"display_name": " Li Lei ", "city": "", "preferred_dealer_id": "D1"}
    assert profile.changes([], values) == {"display_name": "Li Lei", "preferred_dealer_id": "D1"}
    assert profile.changes(["city"], values) == {"city": ""}  # clears it
    with pytest.raises(InvalidArgument) as e:
        profile.changes(["city", "balance"], values)
    assert [v.field for v in e.value.field_violations] == ["update_mask"]
    assert "cannot update ['balance']" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        profile.changes(["preferred_dealer_id"], {"preferred_dealer_id": "D" * 33})
    assert [v.field for v in e.value.field_violations] == ["member.preferred_dealer_id"]
    assert profile.changes(["display_name"], {"display_name": "x" * 100})


def test_a_consent_decision_cannot_lie_in_the_future() -> None:
    decision = (Purpose.MARKETING_SMS, Channel.APP, Action.GRANT)
    soon = T0 + timedelta(minutes=5)
    e = consent.event("m1", decision, occur_time=soon, source=" app ", actor="app", now=T0)
    assert (e.occur_time, e.source, e.actor, e.seq) == (soon, "app", "app", 0)
    with pytest.raises(InvalidArgument) as bad:
        consent.event("m1", decision, occur_time=soon + SECOND, source="", actor="", now=T0)
    assert [v.field for v in bad.value.field_violations] == ["occur_time"]


def test_erasure_ends_a_tier_and_forfeits_what_is_left() -> None:
    p = erasure.plan(already_erased=False, identity_ids=[7], balance=40, owned_vins=[], tier="GOLD")
    assert p.tier_change == tiers.TierChangeDecision("GOLD", "", erasure.REASON)
    assert p.forfeit_points == 40 and p.release_vins == ()
    assert erasure.plan(
        already_erased=False, identity_ids=[], balance=-3, owned_vins=[]
    ) == erasure.ErasurePlan(False, (), 0, (), None)
    fp = erasure.erased_fingerprint("EarnPoints", "m1")
    assert len(fp) == 64 and fp != erasure.erased_fingerprint("EarnPoints", "m2")
