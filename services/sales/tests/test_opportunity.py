"""Opportunity rules on plain data: the pipeline only moves forward, follow-ups, lost, and
what lead hears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import FailedPrecondition, InvalidArgument
from services.sales.domain.opportunity import (
    CLOSED,
    Channel,
    FollowUp,
    Opportunity,
    Stage,
    advance,
    assign_consultant,
    is_overdue,
    lead_status_for,
    log_follow_up,
    mark_lost,
    open_for_lead,
    reassign,
    with_member,
)

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
OPEN = [s for s in Stage if s not in CLOSED]


def opp(stage: Stage = Stage.PROSPECT) -> Opportunity:
    o = open_for_lead("opp1", "lead1", "D1", "", " M5 ", T0)
    return o if stage is Stage.PROSPECT else _at(o, stage)


def _at(o: Opportunity, stage: Stage) -> Opportunity:
    return mark_lost(o, "bought elsewhere", T0) if stage is Stage.LOST else advance(o, stage, T0)


def follow(o: Opportunity, **kw: object) -> tuple[Opportunity, FollowUp]:
    args: dict[str, object] = {
        "follow_up_id": "fu1",
        "channel": Channel.CALL,
        "outcome": "wants a test drive",
        "note": "",
        "next_action": "book the drive",
        "next_action_due": LATER + timedelta(days=1),
        "actor": "dealer:D1/u7",
        "now": LATER,
    }
    args.update(kw)
    return log_follow_up(o, **args)  # type: ignore[arg-type]


def test_opened_as_prospect() -> None:
    o = opp()
    assert (o.stage, o.version, o.create_time, o.update_time) == (Stage.PROSPECT, 1, T0, T0)
    assert (o.model_interest, o.member_id, o.owner_consultant, o.next_action_due) == (
        "M5",
        "",
        "",
        None,
    )


def test_rank_is_the_pipeline_order() -> None:
    assert [s.rank for s in Stage] == list(range(7))
    assert Stage.QUOTE.rank < Stage.ORDER.rank < Stage.DELIVERED.rank
    assert {s for s in Stage if s.closed} == {Stage.DELIVERED, Stage.LOST}


def test_reassign_moves_an_open_one_and_drops_the_consultant() -> None:
    o = assign_consultant(opp(Stage.QUOTE), "u7", T0)
    moved = reassign(o, "D2", LATER)
    assert (moved.dealer_id, moved.owner_consultant, moved.stage) == ("D2", "", Stage.QUOTE)
    assert (moved.version, moved.update_time) == (o.version + 1, LATER)
    assert reassign(moved, "D2", LATER) is moved


@pytest.mark.parametrize("stage", sorted(CLOSED))
def test_reassign_leaves_a_closed_one(stage: Stage) -> None:
    o = opp(stage)
    assert reassign(o, "D2", LATER) is o


def test_follow_up_qualifies_a_prospect_and_sets_the_plan() -> None:
    o = opp()
    after, f = follow(o, note="  called at noon ")
    assert after.stage is Stage.QUALIFIED
    assert (after.next_action, after.next_action_due) == ("book the drive", f.next_action_due)
    assert (after.version, after.update_time) == (2, LATER)
    assert (f.opportunity_id, f.dealer_id, f.channel, f.note, f.time) == (
        "opp1",
        "D1",
        Channel.CALL,
        "called at noon",
        LATER,
    )


def test_follow_up_keeps_a_later_stage_and_an_empty_plan_clears_it() -> None:
    after, _ = follow(opp(Stage.QUOTE), next_action="", next_action_due=None)
    assert after.stage is Stage.QUOTE
    assert (after.next_action, after.next_action_due) == ("", None)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"outcome": "   "}, "follow_up.outcome"),
        ({"outcome": "x" * 501}, "follow_up.outcome"),
        ({"next_action": "x" * 201}, "follow_up.next_action"),
        ({"next_action_due": LATER - timedelta(seconds=1)}, "follow_up.next_action_due"),
        ({"next_action_due": datetime(2027, 1, 1)}, "follow_up.next_action_due"),
    ],
)
def test_follow_up_validation_names_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        follow(opp(), **kw)
    assert [v.field for v in caught.value.field_violations] == [field]


def test_follow_up_limits_are_inclusive() -> None:
    after, f = follow(opp(), outcome="x" * 500, next_action_due=LATER)
    assert len(f.outcome) == 500 and after.next_action_due == LATER


@pytest.mark.parametrize("stage", sorted(CLOSED))
def test_closed_takes_no_follow_up(stage: Stage) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        follow(opp(stage))
    assert caught.value.reason == "ILLEGAL_TRANSITION"
    assert caught.value.metadata["current_state"] == stage.value


def test_advance_moves_forward_only() -> None:
    o = opp()
    drive = advance(o, Stage.TEST_DRIVE, LATER)
    assert (drive.stage, drive.version) == (Stage.TEST_DRIVE, 2)
    assert advance(drive, Stage.QUALIFIED, LATER) is drive
    assert advance(drive, Stage.TEST_DRIVE, LATER) is drive
    assert advance(drive, Stage.ORDER, LATER).stage is Stage.ORDER  # a quote may be skipped


@given(st.sampled_from(OPEN), st.sampled_from(list(Stage)))
def test_advance_never_goes_back(start: Stage, target: Stage) -> None:
    o = opp(start)
    after = advance(o, target, LATER, reason="price")
    if target is Stage.LOST or target.rank > start.rank:
        assert after.stage is target and after.version == o.version + 1
    else:
        assert after is o


def test_advance_to_lost_needs_a_reason() -> None:
    with pytest.raises(InvalidArgument):
        advance(opp(), Stage.LOST, LATER)
    assert advance(opp(), Stage.LOST, LATER, reason="too dear").lost_reason == "too dear"


@pytest.mark.parametrize("stage", sorted(CLOSED))
def test_a_closed_one_does_not_advance(stage: Stage) -> None:
    o = opp(stage)
    assert advance(o, Stage.ORDER, LATER) is o
    assert advance(o, Stage.DELIVERED, LATER) is o


@pytest.mark.parametrize("stage", OPEN)
def test_mark_lost_from_every_open_stage(stage: Stage) -> None:
    o, _ = follow(opp(stage))
    lost = mark_lost(o, "  bought a rival  ", LATER)
    assert (lost.stage, lost.lost_reason, lost.next_action, lost.next_action_due) == (
        Stage.LOST,
        "bought a rival",
        "",
        None,
    )
    assert mark_lost(lost, "again", LATER) is lost


def test_mark_lost_refusals() -> None:
    with pytest.raises(InvalidArgument) as blank:
        mark_lost(opp(), " ", LATER)
    assert blank.value.field_violations[0].field == "reason"
    with pytest.raises(InvalidArgument):
        mark_lost(opp(), "x" * 201, LATER)
    with pytest.raises(FailedPrecondition) as delivered:
        mark_lost(opp(Stage.DELIVERED), "late", LATER)
    assert delivered.value.metadata == {"current_state": "DELIVERED", "step": "mark lost"}


def test_is_overdue() -> None:
    o, _ = follow(opp(), next_action_due=LATER + timedelta(hours=2))
    due = LATER + timedelta(hours=2)
    assert not is_overdue(o, due)  # due at that instant, not yet overdue
    assert is_overdue(o, due + timedelta(seconds=1))
    assert not is_overdue(opp(), due)  # nothing planned
    assert not is_overdue(mark_lost(o, "gone", LATER), due + timedelta(days=1))


def test_with_member_learns_the_first_id_only() -> None:
    o = opp()
    known = with_member(o, "m1", LATER)
    assert (known.member_id, known.version) == ("m1", 2)
    assert with_member(known, "m2", LATER) is known
    assert with_member(o, "", LATER) is o


def test_assign_consultant() -> None:
    o = opp()
    owned = assign_consultant(o, "u7", LATER)
    assert owned.owner_consultant == "u7" and assign_consultant(owned, "u7", LATER) is owned


def test_lead_statuses_are_leads_own_names() -> None:
    from marque.lead.v1 import lead_pb2

    expected = {
        Stage.TEST_DRIVE: "TEST_DRIVE_BOOKED",
        Stage.DELIVERED: "WON",
        Stage.LOST: "LOST",
    }
    for stage in Stage:
        status = lead_status_for(stage)
        assert status == expected.get(stage)
        if status is not None:
            assert lead_pb2.LeadStatus.Value(f"LEAD_STATUS_{status}")
