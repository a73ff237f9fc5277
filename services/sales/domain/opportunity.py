"""Opportunities: a dealer's chance to sell a car to the customer of one lead, and the
follow-ups logged on it.

The pipeline only moves forward (PROSPECT → QUALIFIED → TEST_DRIVE → QUOTE → ORDER →
DELIVERED), each step taken by what happened (a follow-up reached the customer, a drive was
booked, a quote made...). A step to an earlier stage is a no-op, not an error: the second
quote of an opportunity already at ORDER changes nothing. LOST closes an open opportunity
with a reason; DELIVERED and LOST are final. Every change bumps `version` (the store's
optimistic lock and the etag) and `update_time`. Functions that change nothing return the
very same object, so a caller can skip the write with `after is opp`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.sales.domain.errors import illegal_transition, invalid

OUTCOME_MAX = 500
NOTE_MAX = 2000
NEXT_ACTION_MAX = 200
LOST_REASON_MAX = 200


class Stage(StrEnum):
    """Where an opportunity stands; declared in pipeline order (`rank`)."""

    PROSPECT = "PROSPECT"
    QUALIFIED = "QUALIFIED"
    TEST_DRIVE = "TEST_DRIVE"
    QUOTE = "QUOTE"
    ORDER = "ORDER"
    DELIVERED = "DELIVERED"
    LOST = "LOST"

    @property
    def rank(self) -> int:
        """Position in the pipeline (PROSPECT 0 ... DELIVERED 5, LOST 6)."""
        return _RANKS[self]

    @property
    def closed(self) -> bool:
        """DELIVERED and LOST are final."""
        return self in CLOSED


_RANKS = {stage: i for i, stage in enumerate(Stage)}
CLOSED = frozenset({Stage.DELIVERED, Stage.LOST})

# The stage changes lead follows, as lead's LeadStatus names (lead.proto, without the
# LEAD_STATUS_ prefix, as lead's domain spells them). The order itself is not a lead
# status: lead turns WON when the car is delivered (DESIGN §6, OrderDelivered).
LEAD_STATUS = {
    Stage.TEST_DRIVE: "TEST_DRIVE_BOOKED",
    Stage.DELIVERED: "WON",
    Stage.LOST: "LOST",
}


class Channel(StrEnum):
    """How a follow-up reached (or tried to reach) the customer."""

    CALL = "CALL"
    WECHAT = "WECHAT"
    VISIT = "VISIT"
    SMS = "SMS"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True, kw_only=True)
class Opportunity:
    """One lead's opportunity at one dealer (the lead id is unique across opportunities)."""

    id: str
    lead_id: str
    dealer_id: str
    member_id: str  # "" until a quote or an order names the customer
    model_interest: str
    stage: Stage
    owner_consultant: str = ""  # "" until a consultant takes it
    next_action: str
    next_action_due: datetime | None
    create_time: datetime
    update_time: datetime
    lost_reason: str
    version: int


@dataclass(frozen=True, slots=True)
class FollowUp:
    """One contact with the customer, as the dealer logged it (never changed afterwards)."""

    id: str
    opportunity_id: str
    dealer_id: str
    channel: Channel
    outcome: str
    note: str
    next_action: str
    next_action_due: datetime | None
    actor: str
    time: datetime


def _changed(opp: Opportunity, now: datetime, **changes: Any) -> Opportunity:
    """The opportunity with `changes`, one version on, stamped `now`."""
    return replace(opp, **changes, version=opp.version + 1, update_time=now)


def open_for_lead(  # noqa: PLR0917 (the engine and events.py call it positionally)
    id_: str, lead_id: str, dealer_id: str, member_id: str, model_interest: str, now: datetime
) -> Opportunity:
    """A dealer's new opportunity for an assigned lead: PROSPECT, nobody talked to them yet."""
    return Opportunity(
        id=id_,
        lead_id=lead_id,
        dealer_id=dealer_id,
        member_id=member_id,
        model_interest=model_interest.strip(),
        stage=Stage.PROSPECT,
        next_action="",
        next_action_due=None,
        create_time=now,
        update_time=now,
        lost_reason="",
        version=1,
    )


def reassign(opp: Opportunity, dealer_id: str, now: datetime) -> Opportunity:
    """The opportunity moved to the dealer the lead went to. Its consultant belonged to the
    old dealer, so it has none; a closed one (or one already there) is returned unchanged:
    a late LeadAssigned must not reopen a sale that ended."""
    if opp.stage.closed or opp.dealer_id == dealer_id:
        return opp
    return _changed(opp, now, dealer_id=dealer_id, owner_consultant="")


def assign_consultant(opp: Opportunity, consultant_id: str, now: datetime) -> Opportunity:
    """The consultant who owns the opportunity from now on ("" to release it)."""
    if opp.owner_consultant == consultant_id:
        return opp
    return _changed(opp, now, owner_consultant=consultant_id)


def with_member(opp: Opportunity, member_id: str, now: datetime) -> Opportunity:
    """The customer's member id learnt (from a quote or an order). The first one named
    stays: a later, different id is another person's business, not a correction."""
    if not member_id or opp.member_id:
        return opp
    return _changed(opp, now, member_id=member_id)


def _text(field: str, raw: str, limit: int, *, required: bool = False) -> str:
    text = raw.strip()
    if required and not text:
        raise invalid(field, "must not be blank")
    if len(text) > limit:
        raise invalid(field, f"must be at most {limit} characters, got {len(text)}")
    return text


def _due(field: str, due: datetime | None, now: datetime) -> datetime | None:
    if due is None:
        return None
    if due.utcoffset() is None:
        raise invalid(field, "must carry a time zone")
    if due < now:
        raise invalid(field, "must not be in the past")
    return due


def log_follow_up(  # noqa: PLR0917 (the follow-up's fields, in the record's order)
    opp: Opportunity,
    follow_up_id: str,
    channel: Channel,
    outcome: str,
    note: str,
    next_action: str,
    next_action_due: datetime | None,
    actor: str,
    now: datetime,
) -> tuple[Opportunity, FollowUp]:
    """A contact logged: the follow-up, and the opportunity with the agreed next action
    (an empty one clears the plan) and QUALIFIED if it was a PROSPECT. A closed opportunity
    takes no follow-up. Field paths are the LogFollowUp request's (`follow_up.outcome`)."""
    outcome = _text("follow_up.outcome", outcome, OUTCOME_MAX, required=True)
    note = _text("follow_up.note", note, NOTE_MAX)
    next_action = _text("follow_up.next_action", next_action, NEXT_ACTION_MAX)
    due = _due("follow_up.next_action_due", next_action_due, now)
    if opp.stage.closed:
        raise illegal_transition("opportunity", opp.stage.value, "log a follow-up")
    follow_up = FollowUp(
        id=follow_up_id,
        opportunity_id=opp.id,
        dealer_id=opp.dealer_id,
        channel=channel,
        outcome=outcome,
        note=note,
        next_action=next_action,
        next_action_due=due,
        actor=actor,
        time=now,
    )
    stage = Stage.QUALIFIED if opp.stage is Stage.PROSPECT else opp.stage
    after = _changed(opp, now, stage=stage, next_action=next_action, next_action_due=due)
    return after, follow_up


def advance(opp: Opportunity, stage: Stage, now: datetime, *, reason: str = "") -> Opportunity:
    """The opportunity moved forward to `stage`; an earlier (or the same) stage, or any
    stage of a closed opportunity, is a no-op returning `opp`. LOST needs a `reason` and is
    `mark_lost`."""
    if stage is Stage.LOST:
        return mark_lost(opp, reason, now)
    if opp.stage.closed or stage.rank <= opp.stage.rank:
        return opp
    return _changed(opp, now, stage=stage)


def mark_lost(opp: Opportunity, reason: str, now: datetime) -> Opportunity:
    """The customer went elsewhere: LOST with the reason, nothing more is planned. Losing a
    lost one again changes nothing; a delivered car cannot be lost."""
    reason = _text("reason", reason, LOST_REASON_MAX, required=True)
    if opp.stage is Stage.LOST:
        return opp
    if opp.stage is Stage.DELIVERED:
        raise illegal_transition("opportunity", opp.stage.value, "mark lost")
    return _changed(
        opp, now, stage=Stage.LOST, lost_reason=reason, next_action="", next_action_due=None
    )


def is_overdue(opp: Opportunity, now: datetime) -> bool:
    """An open opportunity whose next action was due before `now` (the dealer's to-do list)."""
    due = opp.next_action_due
    return not opp.stage.closed and due is not None and due < now


def lead_status_for(stage: Stage) -> str | None:
    """The lead status (lead's LeadStatus name) a move to `stage` tells lead; None for the
    stages lead does not follow."""
    return LEAD_STATUS.get(stage)
