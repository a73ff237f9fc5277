"""Follow-up: the status machine, lost reasons, deadlines by grade, overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mesh.errors import FailedPrecondition, InvalidArgument
from services.lead.domain.config import LeadConfig
from services.lead.domain.followup import can_transition, follow_up_due, is_overdue, transition
from services.lead.domain.intake import new_lead
from services.lead.domain.model import (
    ALLOWED_TRANSITIONS,
    Channel,
    CleanLead,
    Consents,
    Grade,
    Lead,
    LeadStatus,
    RoutingDecision,
    TimeFrame,
)

CONFIG = LeadConfig()
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
S = LeadStatus


def make(frame: TimeFrame = TimeFrame.WITHIN_7_DAYS) -> Lead:
    clean = CleanLead(
        channel=Channel.BRAND_SITE,
        name="张伟",
        mobile_e164="+8613912345670",
        email=None,
        city="Shanghai",
        province="Shanghai",
        brand="Marque",
        series="M5",
        model="",
        trim="",
        time_frame=frame,
        preferred_dealer_id=None,
        consents=Consents(),
        test_drive_requested=False,
        channel_lead_id="",
        request_id="r",
    )
    return new_lead(
        clean,
        lead_id="L1",
        routing=RoutingDecision("D-SH-01", "city"),
        now=T0,
        actor="service:web",
        payload_ref="",
        config=CONFIG,
    )


def move(lead: Lead, status: LeadStatus, reason: str = "", hours: int = 1) -> Lead:
    return transition(
        lead,
        status,
        lost_reason=reason,
        now=T0 + timedelta(hours=hours),
        actor="dealer:D-SH-01",
        config=CONFIG,
    )


def test_the_happy_path() -> None:
    lead = make()
    assert lead.status is S.NEW
    contacted = move(lead, S.CONTACTED)
    booked = move(contacted, S.TEST_DRIVE_BOOKED, hours=2)
    won = move(booked, S.WON, hours=3)
    assert [x.status for x in (contacted, booked, won)] == [S.CONTACTED, S.TEST_DRIVE_BOOKED, S.WON]
    assert won.follow_up_due is None
    assert won.update_actor == "dealer:D-SH-01" and won.version == lead.version + 3


@pytest.mark.parametrize(
    ("start", "end", "allowed"),
    [
        (S.NEW, S.TEST_DRIVE_BOOKED, True),
        (S.NEW, S.WON, True),
        (S.CONTACTED, S.WON, True),
        (S.TEST_DRIVE_BOOKED, S.CONTACTED, False),
        (S.CONTACTED, S.NEW, False),
        (S.WON, S.LOST, False),
        (S.LOST, S.CONTACTED, False),
        (S.LOST, S.NEW, False),
        (S.WON, S.WON, True),
    ],
)
def test_transition_table(start: LeadStatus, end: LeadStatus, allowed: bool) -> None:
    assert can_transition(start, end) is allowed


def test_every_open_status_can_be_lost_and_finals_are_final() -> None:
    for status in S:
        assert (S.LOST in ALLOWED_TRANSITIONS[status]) is status.is_open
    assert not ALLOWED_TRANSITIONS[S.WON] and not ALLOWED_TRANSITIONS[S.LOST]


def test_a_refused_move_is_failed_precondition() -> None:
    booked = move(make(), S.TEST_DRIVE_BOOKED)
    with pytest.raises(FailedPrecondition) as caught:
        move(booked, S.CONTACTED)
    assert caught.value.reason == "INVALID_STATUS_TRANSITION"
    assert caught.value.metadata == {"from": "TEST_DRIVE_BOOKED", "to": "CONTACTED"}


def test_lost_needs_a_reason_and_only_lost_takes_one() -> None:
    lead = make()
    with pytest.raises(InvalidArgument) as caught:
        move(lead, S.LOST, "   ")
    assert caught.value.field_violations[0].field == "lost_reason"
    with pytest.raises(InvalidArgument):
        move(lead, S.CONTACTED, "bought elsewhere")
    lost = move(lead, S.LOST, "  bought   a competitor ")
    assert lost.lost_reason == "bought a competitor"
    assert lost.follow_up_due is None and not lost.status.is_open


def test_setting_the_same_status_again_changes_nothing() -> None:
    contacted = move(make(), S.CONTACTED)
    assert move(contacted, S.CONTACTED, hours=5) is contacted


@pytest.mark.parametrize(
    ("frame", "grade", "days"),
    [
        (TimeFrame.WITHIN_7_DAYS, Grade.H, 2),
        (TimeFrame.WITHIN_15_DAYS, Grade.A, 7),
        (TimeFrame.WITHIN_30_DAYS, Grade.B, 14),
        (TimeFrame.WITHIN_90_DAYS, Grade.C, 30),
        (TimeFrame.UNKNOWN, Grade.N, 30),
    ],
)
def test_deadlines_by_grade(frame: TimeFrame, grade: Grade, days: int) -> None:
    lead = make(frame)
    assert lead.grade is grade
    assert lead.follow_up_due == T0 + timedelta(days=days)
    assert follow_up_due(grade, T0, CONFIG) == T0 + timedelta(days=days)


def test_deadlines_are_configuration_and_restart_on_progress() -> None:
    config = LeadConfig.from_env({"MARQUE_LEAD_FOLLOW_UP_DAYS": "H=1"})
    assert follow_up_due(Grade.H, T0, config) == T0 + timedelta(days=1)
    contacted = move(make(), S.CONTACTED, hours=24)
    assert contacted.follow_up_due == T0 + timedelta(hours=24, days=2)


def test_overdue() -> None:
    lead = make()  # H: due T0 + 2 days
    due = T0 + timedelta(days=2)
    assert not is_overdue(lead, due)
    assert is_overdue(lead, due + timedelta(seconds=1))
    won = move(lead, S.WON)
    assert not is_overdue(won, due + timedelta(days=100))
