"""Dedup window edges, duplicates, merge semantics, and the intake decision end to end."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.lead.domain.config import LeadConfig
from services.lead.domain.dedup import decide, merge_into, window_start
from services.lead.domain.demo_dealers import demo_dealers
from services.lead.domain.intake import IntakeResult, intake, new_lead, touchpoint_of
from services.lead.domain.model import (
    Channel,
    CleanLead,
    Consents,
    Grade,
    Lead,
    LeadStatus,
    RoutingDecision,
    SubmitOutcome,
    TimeFrame,
)

CONFIG = LeadConfig()
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def clean(**changes: object) -> CleanLead:
    base: dict[str, object] = {
        "channel": Channel.AUTOHOME,
        "name": "张伟",
        "mobile_e164": "+8613912345670",
        "email": None,
        "city": "Shanghai",
        "province": "Shanghai",
        "brand": "Marque",
        "series": "M5",
        "model": "M5 Long Range",
        "trim": "",
        "time_frame": TimeFrame.WITHIN_90_DAYS,
        "preferred_dealer_id": None,
        "consents": Consents(contact=True),
        "test_drive_requested": False,
        "channel_lead_id": "AH-1",
        "request_id": "r-1",
    }
    base.update(changes)
    return CleanLead(**base)  # type: ignore[arg-type]


def lead(at: datetime = T0, **changes: object) -> Lead:
    made = new_lead(
        clean(),
        lead_id="L1",
        routing=RoutingDecision("D-SH-01", "city"),
        now=at,
        actor="channel:AUTOHOME",
        payload_ref="sha256:x",
        config=CONFIG,
    )
    return replace(made, **changes)  # type: ignore[arg-type]


def decide_for(c: CleanLead, candidates: list[Lead], now: datetime, **kw: object) -> SubmitOutcome:
    return decide(
        c,
        same_request=kw.get("same_request"),  # type: ignore[arg-type]
        same_channel_lead=kw.get("same_channel_lead"),  # type: ignore[arg-type]
        candidates=candidates,
        now=now,
        config=kw.get("config", CONFIG),  # type: ignore[arg-type]
    ).outcome


NEW = clean(channel=Channel.YICHE, channel_lead_id="YC-9", request_id="r-2")


def test_window_edges_are_inclusive() -> None:
    existing = lead()
    edge = T0 + timedelta(days=30)
    assert window_start(edge, CONFIG) == T0
    assert decide_for(NEW, [existing], edge) is SubmitOutcome.MERGED
    assert decide_for(NEW, [existing], edge + timedelta(microseconds=1)) is SubmitOutcome.CREATED
    assert decide_for(NEW, [existing], T0) is SubmitOutcome.MERGED


def test_window_counts_from_the_last_touch() -> None:
    touched = lead(last_touch_time=T0 + timedelta(days=20))
    assert decide_for(NEW, [touched], T0 + timedelta(days=45)) is SubmitOutcome.MERGED


def test_window_is_configurable() -> None:
    week = LeadConfig(dedup_window_days=7)
    existing = lead()
    assert decide_for(NEW, [existing], T0 + timedelta(days=7), config=week) is SubmitOutcome.MERGED
    later = T0 + timedelta(days=8)
    assert decide_for(NEW, [existing], later, config=week) is SubmitOutcome.CREATED


@pytest.mark.parametrize(
    "other",
    [
        clean(brand="Lumen", request_id="r-2", channel_lead_id=""),
        clean(mobile_e164="+8613912345671", request_id="r-2", channel_lead_id=""),
    ],
)
def test_other_brand_or_other_mobile_creates(other: CleanLead) -> None:
    assert decide_for(other, [lead()], T0 + timedelta(days=1)) is SubmitOutcome.CREATED


def test_brand_compares_case_insensitively() -> None:
    other = clean(brand=" marque ", request_id="r-2", channel_lead_id="")
    assert decide_for(other, [lead()], T0 + timedelta(days=1)) is SubmitOutcome.MERGED


@pytest.mark.parametrize("status", [LeadStatus.WON, LeadStatus.LOST])
def test_closed_leads_do_not_absorb(status: LeadStatus) -> None:
    assert decide_for(NEW, [lead(status=status)], T0) is SubmitOutcome.CREATED


def test_email_only_leads_merge_on_email() -> None:
    by_mail = clean(mobile_e164=None, email="a@b.com", request_id="r-2", channel_lead_id="")
    existing = lead(mobile_e164=None, email="a@b.com")
    assert decide_for(by_mail, [existing], T0) is SubmitOutcome.MERGED
    assert decide_for(NEW, [existing], T0) is SubmitOutcome.CREATED


def test_retried_request_and_resent_channel_lead_are_duplicates() -> None:
    existing = lead()
    assert decide_for(clean(), [], T0, same_request=existing) is SubmitOutcome.DUPLICATE
    assert decide_for(clean(), [], T0, same_channel_lead=existing) is SubmitOutcome.DUPLICATE
    # Empty ids never identify anything, whatever a loose lookup returned.
    blank = clean(request_id="", channel_lead_id="")
    assert decide_for(blank, [], T0, same_request=existing) is SubmitOutcome.CREATED
    assert decide_for(blank, [], T0, same_channel_lead=existing) is SubmitOutcome.CREATED


def test_the_most_recently_touched_candidate_wins() -> None:
    older = lead(id="L1", last_touch_time=T0)
    newer = lead(id="L2", last_touch_time=T0 + timedelta(days=2))
    result = decide(
        NEW,
        same_request=None,
        same_channel_lead=None,
        candidates=[older, newer],
        now=T0 + timedelta(days=3),
        config=CONFIG,
    )
    assert result.existing is newer


def test_merge_adds_a_touchpoint_updates_interest_and_rerates() -> None:
    existing = lead()
    at = T0 + timedelta(days=3)
    update = clean(
        channel=Channel.YICHE,
        series="M7",
        model="M7 Performance",
        trim="Pro",
        time_frame=TimeFrame.WITHIN_7_DAYS,
        test_drive_requested=True,
        city="",
        name="Zhang Wei",
        consents=Consents(marketing=True),
        channel_lead_id="YC-9",
        request_id="r-2",
    )
    merged = merge_into(
        existing, update, touchpoint_of(update, at, "sha256:y"), now=at, actor="a", config=CONFIG
    )
    assert len(merged.touchpoints) == 2
    assert merged.touchpoints[-1].channel is Channel.YICHE
    assert merged.last_touch_time == at
    assert (merged.series, merged.model, merged.trim) == ("M7", "M7 Performance", "Pro")
    assert merged.time_frame is TimeFrame.WITHIN_7_DAYS
    assert merged.grade is Grade.H and existing.grade is Grade.C
    assert merged.score > existing.score
    assert "2 touchpoints +5" in merged.rating.reasons
    assert merged.test_drive_requested
    assert merged.city == "Shanghai"  # not given again: kept
    assert merged.name == "张伟"  # the first name stays
    assert merged.consents == Consents(contact=True, marketing=True)
    assert merged.follow_up_due == at + timedelta(days=2)  # H deadline, earlier than C's
    assert merged.version == existing.version + 1
    assert (merged.id, merged.channel, merged.create_time) == ("L1", Channel.AUTOHOME, T0)


def test_merge_keeps_what_the_new_submission_does_not_know() -> None:
    existing = lead()
    vague = clean(series="", model="", time_frame=TimeFrame.UNKNOWN, request_id="r-3")
    at = T0 + timedelta(days=1)
    merged = merge_into(
        existing, vague, touchpoint_of(vague, at, ""), now=at, actor="a", config=CONFIG
    )
    assert (merged.series, merged.time_frame) == ("M5", TimeFrame.WITHIN_90_DAYS)
    assert merged.follow_up_due == existing.follow_up_due  # never later


def run_intake(c: CleanLead, now: datetime, **kw: object) -> IntakeResult:
    return intake(
        c,
        lead_id=str(kw.get("lead_id", "L-new")),
        now=now,
        actor="channel:AUTOHOME",
        payload_ref="sha256:z",
        same_request=kw.get("same_request"),  # type: ignore[arg-type]
        same_channel_lead=kw.get("same_channel_lead"),  # type: ignore[arg-type]
        candidates=kw.get("candidates", []),  # type: ignore[arg-type]
        dealers=demo_dealers(),
        assigned_today=kw.get("assigned_today", {}),  # type: ignore[arg-type]
        config=CONFIG,
        walk_in_dealer_id=kw.get("walk_in_dealer_id"),  # type: ignore[arg-type]
    )


def test_intake_creates_rates_and_routes() -> None:
    result = run_intake(clean(), T0)
    assert result.outcome is SubmitOutcome.CREATED
    assert result.lead.id == "L-new" and result.lead.status is LeadStatus.NEW
    assert result.lead.dealer_id == "D-SH-01"
    assert result.routed == RoutingDecision("D-SH-01", result.lead.routing_reason)
    assert result.lead.grade is Grade.C
    assert result.lead.follow_up_due == T0 + timedelta(days=30)
    assert result.lead.touchpoints[0].payload_ref == "sha256:z"


def test_intake_merge_duplicate_and_pool_rerouting() -> None:
    first = run_intake(clean(city="Lhasa", province="Tibet"), T0).lead
    assert first.dealer_id is None and "OEM pool" in first.routing_reason
    again = run_intake(clean(), T0, same_request=first)
    assert again.outcome is SubmitOutcome.DUPLICATE and again.lead is first and again.routed is None
    moved = clean(city="Chengdu", province="Sichuan", request_id="r-9", channel_lead_id="")
    merged = run_intake(moved, T0 + timedelta(hours=1), candidates=[first])
    assert merged.outcome is SubmitOutcome.MERGED
    assert merged.lead.id == first.id
    assert merged.lead.dealer_id == "D-CD-01"  # left the pool once a dealer fits
    assert merged.routed is not None and merged.routed.dealer_id == "D-CD-01"
    assert merged.lead.routing_reason == merged.routed.reason


def test_intake_merge_keeps_an_assigned_dealer() -> None:
    first = run_intake(clean(), T0).lead
    moved = clean(city="Beijing", province="Beijing", request_id="r-9", channel_lead_id="")
    merged = run_intake(moved, T0 + timedelta(hours=1), candidates=[first])
    assert merged.lead.dealer_id == "D-SH-01" and merged.routed is None


def test_intake_walk_in_stays_with_the_dealer() -> None:
    walk = clean(channel=Channel.DEALER_WALK_IN, city="Shanghai")
    full = {"D-BJ-02": 10_000}
    result = run_intake(walk, T0, walk_in_dealer_id="D-BJ-02", assigned_today=full)
    assert result.lead.dealer_id == "D-BJ-02"
    assert "walk-in" in result.lead.routing_reason
