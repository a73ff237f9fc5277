"""Tiers from a rolling 12 months, configurable thresholds, recorded reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.member.domain import tiers
from services.member.domain.config import MemberConfig
from services.member.domain.tiers import TierRule

NOW = datetime(2025, 6, 15, tzinfo=UTC)


def test_thresholds() -> None:
    assert tiers.tier_for(0).code == ""
    assert tiers.tier_for(999).code == ""
    assert tiers.tier_for(1000).code == "SILVER"
    assert tiers.tier_for(5000).code == "GOLD"
    assert tiers.tier_for(10**9).code == "PLATINUM"
    assert "courtesy car during service" in tiers.tier_for(20_000).benefits


def test_rolling_window_drops_old_earnings() -> None:
    credits = [
        (NOW - timedelta(days=400), 4000),
        (NOW - timedelta(days=100), 1500),
        (NOW, 10),
    ]
    assert tiers.qualifying_points(credits, NOW) == 1510
    assert tiers.qualifying_points(credits, NOW - timedelta(days=101)) == 4000


def test_review_records_up_and_down_with_reason() -> None:
    up = tiers.review("", 5200, cause="EarnPoints")
    assert up is not None and (up.from_code, up.to_code) == ("", "GOLD")
    assert "reached GOLD (5000)" in up.reason and "EarnPoints" in up.reason
    down = tiers.review("GOLD", 1200)
    assert down is not None and down.to_code == "SILVER" and "fell below GOLD" in down.reason
    gone = tiers.review("SILVER", 10)
    assert gone is not None and gone.to_code == "" and "lowest tier" in gone.reason
    assert tiers.review("GOLD", 6000) is None


def test_configurable_from_env() -> None:
    env = {
        "MARQUE_MEMBER_TIERS": '[{"code":"BLUE","name":"Blue","threshold":10,"benefits":["x"]},'
        '{"code":"BLACK","threshold":100}]',
        "MARQUE_MEMBER_POINTS_EXPIRY_MONTHS": "12",
    }
    config = MemberConfig.from_env(env)
    assert config.expiry_months == 12
    assert [t.code for t in config.tiers] == ["BLUE", "BLACK"]
    assert tiers.tier_for(50, config.tiers) == TierRule("BLUE", "Blue", 10, ("x",))
    assert MemberConfig.from_env({}).tiers == tiers.DEFAULT_TIERS


def test_bad_tier_config_is_refused() -> None:
    with pytest.raises(ValueError):
        tiers.validate_tiers([TierRule("A", "A", 10), TierRule("B", "B", 10)])
    with pytest.raises(ValueError):
        MemberConfig(expiry_months=0)
