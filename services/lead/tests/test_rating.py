"""Rating: grade thresholds, score components and their reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.lead.domain.config import LeadConfig
from services.lead.domain.model import Channel, Grade, TimeFrame
from services.lead.domain.rating import RatingFacts, grade_for, rate

CONFIG = LeadConfig()
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def facts(**changes: object) -> RatingFacts:
    base: dict[str, object] = {
        "time_frame": TimeFrame.WITHIN_30_DAYS,
        "channels": (Channel.AUTOHOME,),
        "touchpoints": 1,
        "test_drive_requested": False,
        "present": (True, True, False, True, True, False),
        "age_seconds": 0.0,
    }
    base.update(changes)
    return RatingFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame", "grade"),
    [
        (TimeFrame.WITHIN_7_DAYS, Grade.H),
        (TimeFrame.WITHIN_15_DAYS, Grade.A),
        (TimeFrame.WITHIN_30_DAYS, Grade.B),
        (TimeFrame.WITHIN_90_DAYS, Grade.C),
        (TimeFrame.LATER, Grade.N),
        (TimeFrame.UNKNOWN, Grade.N),
    ],
)
def test_default_grades(frame: TimeFrame, grade: Grade) -> None:
    assert grade_for(frame, CONFIG) is grade


def test_thresholds_are_configuration() -> None:
    strict = LeadConfig(grade_h_days=3, grade_a_days=7, grade_b_days=15, grade_c_days=30)
    assert grade_for(TimeFrame.WITHIN_7_DAYS, strict) is Grade.A
    assert grade_for(TimeFrame.WITHIN_15_DAYS, strict) is Grade.B
    assert grade_for(TimeFrame.WITHIN_90_DAYS, strict) is Grade.N
    with pytest.raises(ValueError):
        LeadConfig(grade_h_days=20, grade_a_days=15)


def test_time_frame_buckets_from_days() -> None:
    assert TimeFrame.from_days(0) is TimeFrame.WITHIN_7_DAYS
    assert TimeFrame.from_days(7) is TimeFrame.WITHIN_7_DAYS
    assert TimeFrame.from_days(8) is TimeFrame.WITHIN_15_DAYS
    assert TimeFrame.from_days(90) is TimeFrame.WITHIN_90_DAYS
    assert TimeFrame.from_days(91) is TimeFrame.LATER
    assert TimeFrame.from_days(None) is TimeFrame.UNKNOWN


def test_score_components_and_reasons() -> None:
    rating = rate(facts(), CONFIG)
    assert rating.grade is Grade.B
    assert rating.reasons == (
        "time frame WITHIN_30_DAYS -> grade B",
        "grade B +15",
        "channel AUTOHOME quality +18",
        "completeness 4/6 +13",
        "1 touchpoint +0",
        "enquiry within 24h +10",
    )
    assert rating.score == 15 + 18 + 13 + 0 + 10


def test_the_best_channel_of_all_touchpoints_counts() -> None:
    rating = rate(facts(channels=(Channel.TENCENT_ADS, Channel.DEALER_WALK_IN)), CONFIG)
    assert "channel DEALER_WALK_IN quality +25" in rating.reasons


def test_touchpoints_test_drive_and_recency() -> None:
    three = rate(facts(touchpoints=3), CONFIG)
    assert "3 touchpoints +10" in three.reasons
    many = rate(facts(touchpoints=9), CONFIG)
    assert "9 touchpoints +10" in many.reasons  # capped
    assert "test drive requested +10" in rate(facts(test_drive_requested=True), CONFIG).reasons
    week = rate(facts(age_seconds=timedelta(days=3).total_seconds()), CONFIG)
    assert "enquiry within 7 days +5" in week.reasons
    old = rate(facts(age_seconds=timedelta(days=40).total_seconds()), CONFIG)
    assert "enquiry 40 days old +0" in old.reasons


def test_the_best_lead_scores_exactly_100_with_defaults() -> None:
    best = facts(
        time_frame=TimeFrame.WITHIN_7_DAYS,
        channels=(Channel.DEALER_WALK_IN,),
        touchpoints=3,
        test_drive_requested=True,
        present=(True,) * 6,
    )
    assert rate(best, CONFIG).score == 100


def test_weights_are_configuration() -> None:
    config = LeadConfig.from_env({"MARQUE_LEAD_CHANNEL_QUALITY": "AUTOHOME=40"})
    assert "channel AUTOHOME quality +40" in rate(facts(), config).reasons


@settings(deadline=None)
@given(
    st.sampled_from(list(TimeFrame)),
    st.lists(st.sampled_from(list(Channel)), min_size=1, max_size=4),
    st.integers(1, 50),
    st.booleans(),
    st.tuples(*[st.booleans()] * 6),
    st.floats(0, 10**9),
)
def test_score_is_always_0_to_100_with_a_reason_per_component(
    frame: TimeFrame,
    channels: list[Channel],
    touchpoints: int,
    test_drive: bool,
    present: tuple[bool, ...],
    age: float,
) -> None:
    rating = rate(
        RatingFacts(frame, tuple(channels), touchpoints, test_drive, present, age), CONFIG
    )
    assert 0 <= rating.score <= 100
    assert rating.reasons[0].startswith("time frame")
    assert len(rating.reasons) == 6 + int(test_drive)


def test_facts_from_a_clean_lead_use_its_request_time() -> None:
    from services.lead.domain.model import CleanLead, Consents

    clean = CleanLead(
        channel=Channel.ADF,
        name="",
        mobile_e164=None,
        email="a@b.com",
        city="",
        province="",
        brand="Marque",
        series="",
        model="",
        trim="",
        time_frame=TimeFrame.UNKNOWN,
        preferred_dealer_id=None,
        consents=Consents(),
        test_drive_requested=False,
        channel_lead_id="",
        request_id="",
        request_time=NOW - timedelta(days=2),
    )
    got = RatingFacts.of_clean(clean, NOW)
    assert got.present == (False, False, True, False, False, False)
    assert got.age_seconds == timedelta(days=2).total_seconds()
    assert RatingFacts.of_clean(clean, NOW - timedelta(days=5)).age_seconds == 0
