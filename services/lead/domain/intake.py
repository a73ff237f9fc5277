"""Intake: one cleansed submission in, the lead to write out.

This is the whole SubmitLead decision as one pure function, so the servicer and the store
only do I/O: the store looks up what `intake` needs (by request id, by channel lead id,
merge candidates, dealers, today's counts), calls it, and writes the result in one
transaction. Also here: the other lead lifecycle change that is not a status move,
reassignment by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from mesh.errors import FailedPrecondition
from services.lead.domain import errors
from services.lead.domain.config import LeadConfig
from services.lead.domain.dedup import decide, merge_into
from services.lead.domain.followup import follow_up_due
from services.lead.domain.model import (
    CleanLead,
    Dealer,
    Lead,
    LeadStatus,
    RoutingDecision,
    SubmitOutcome,
    Touchpoint,
)
from services.lead.domain.rating import RatingFacts, rate
from services.lead.domain.routing import route, walk_in


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What to write: the outcome, the lead (unchanged for DUPLICATE), and the routing
    decision when a dealer received the lead in this call (the store then adds one to that
    dealer's count for today); None when nothing was (re)routed."""

    outcome: SubmitOutcome
    lead: Lead
    routed: RoutingDecision | None
    reason: str


def touchpoint_of(
    clean: CleanLead, now: datetime, payload_ref: str, walk_in_dealer_id: str | None = None
) -> Touchpoint:
    """The touchpoint recording this submission's arrival (at a dealer, for walk-ins)."""
    return Touchpoint(
        channel=clean.channel,
        time=now,
        channel_lead_id=clean.channel_lead_id,
        request_id=clean.request_id,
        payload_ref=payload_ref,
        dealer_id=walk_in_dealer_id or "",
    )


def record_visit(lead: Lead, touchpoint: Touchpoint, *, now: datetime, actor: str) -> Lead:
    """Another dealer's walk-in of this lead's customer: the visit is one more touchpoint
    (it keeps the dedup window open and shows the OEM the conflict); nothing the walk-in
    dealer typed replaces what the lead's own dealer knows."""
    return replace(
        lead,
        touchpoints=(*lead.touchpoints, touchpoint),
        last_touch_time=touchpoint.time,
        update_time=now,
        update_actor=actor,
        version=lead.version + 1,
    )


def new_lead(
    clean: CleanLead,
    *,
    lead_id: str,
    routing: RoutingDecision,
    now: datetime,
    actor: str,
    payload_ref: str,
    config: LeadConfig,
    walk_in_dealer_id: str | None = None,
) -> Lead:
    """A fresh lead from a first submission: rated, routed, with a follow-up deadline."""
    rating = rate(RatingFacts.of_clean(clean, now), config)
    return Lead(
        id=lead_id,
        status=LeadStatus.NEW,
        rating=rating,
        name=clean.name,
        mobile_e164=clean.mobile_e164,
        email=clean.email,
        city=clean.city,
        province=clean.province,
        brand=clean.brand,
        series=clean.series,
        model=clean.model,
        trim=clean.trim,
        model_year=clean.model_year,
        time_frame=clean.time_frame,
        test_drive_requested=clean.test_drive_requested,
        channel=clean.channel,
        channel_lead_id=clean.channel_lead_id,
        consents=clean.consents,
        preferred_dealer_id=clean.preferred_dealer_id,
        dealer_id=routing.dealer_id,
        routing_reason=routing.reason,
        touchpoints=(touchpoint_of(clean, now, payload_ref, walk_in_dealer_id),),
        follow_up_due=follow_up_due(rating.grade, now, config),
        lost_reason="",
        create_time=now,
        update_time=now,
        last_touch_time=now,
        create_actor=actor,
        update_actor=actor,
    )


def _routing(
    clean: CleanLead,
    preferred: str | None,
    *,
    dealers: Iterable[Dealer],
    assigned_today: Mapping[str, int],
    walk_in_dealer_id: str | None,
) -> RoutingDecision:
    """Where the lead goes: a dealer's own walk-in stays with that dealer, anything else
    is routed by brand, area, preference and today's load (`routing.route`)."""
    if walk_in_dealer_id:
        return walk_in(walk_in_dealer_id)
    return route(
        brand=clean.brand,
        city=clean.city,
        province=clean.province,
        preferred_dealer_id=preferred,
        dealers=dealers,
        assigned_today=assigned_today,
    )


def _merged(
    existing: Lead,
    clean: CleanLead,
    reason: str,
    *,
    now: datetime,
    actor: str,
    payload_ref: str,
    dealers: Iterable[Dealer],
    assigned_today: Mapping[str, int],
    config: LeadConfig,
    walk_in_dealer_id: str | None,
) -> IntakeResult:
    """The MERGED (or OTHER_DEALER) result for a submission dedup matched to `existing`.
    Only a lead still in the OEM pool is routed, so a merge never takes a lead from the
    dealer already following it; another dealer's walk-in only records the visit."""
    touchpoint = touchpoint_of(clean, now, payload_ref, walk_in_dealer_id)
    followed_by = existing.dealer_id
    if walk_in_dealer_id and followed_by is not None and followed_by != walk_in_dealer_id:
        lead = record_visit(existing, touchpoint, now=now, actor=actor)
        return IntakeResult(SubmitOutcome.OTHER_DEALER, lead, None, reason)
    lead = merge_into(existing, clean, touchpoint, now=now, actor=actor, config=config)
    routed = None
    if lead.dealer_id is None:
        routed = _routing(
            clean,
            lead.preferred_dealer_id,
            dealers=dealers,
            assigned_today=assigned_today,
            walk_in_dealer_id=walk_in_dealer_id,
        )
        lead = replace(lead, routing_reason=routed.reason)
        if routed.dealer_id is not None:
            lead = replace(lead, dealer_id=routed.dealer_id)
        else:
            routed = None
    return IntakeResult(SubmitOutcome.MERGED, lead, routed, reason)


def _created(
    clean: CleanLead,
    reason: str,
    *,
    lead_id: str,
    now: datetime,
    actor: str,
    payload_ref: str,
    dealers: Iterable[Dealer],
    assigned_today: Mapping[str, int],
    config: LeadConfig,
    walk_in_dealer_id: str | None,
) -> IntakeResult:
    """The CREATED result: a new lead, routed with the submission's preferred dealer; `routed`
    only when a dealer got it, since a lead left in the OEM pool raises no dealer's count."""
    routing = _routing(
        clean,
        clean.preferred_dealer_id,
        dealers=dealers,
        assigned_today=assigned_today,
        walk_in_dealer_id=walk_in_dealer_id,
    )
    lead = new_lead(
        clean,
        lead_id=lead_id,
        routing=routing,
        now=now,
        actor=actor,
        payload_ref=payload_ref,
        config=config,
        walk_in_dealer_id=walk_in_dealer_id,
    )
    routed = routing if routing.dealer_id is not None else None
    return IntakeResult(SubmitOutcome.CREATED, lead, routed, reason)


def intake(
    clean: CleanLead,
    *,
    lead_id: str,
    now: datetime,
    actor: str,
    payload_ref: str,
    same_request: Lead | None,
    same_channel_lead: Lead | None,
    candidates: Sequence[Lead],
    dealers: Iterable[Dealer],
    assigned_today: Mapping[str, int],
    config: LeadConfig,
    walk_in_dealer_id: str | None = None,
) -> IntakeResult:
    """Decide and build: DUPLICATE returns the existing lead untouched; MERGED merges
    (and routes a lead still waiting in the OEM pool); CREATED rates and routes a new lead
    with id `lead_id`. `walk_in_dealer_id` pins a dealer's own walk-in to that dealer; a
    walk-in of a customer whose lead another dealer follows is OTHER_DEALER (only the visit
    is recorded). `dealers` must include every dealer selling the brand; see `routing.route`."""
    decision = decide(
        clean,
        same_request=same_request,
        same_channel_lead=same_channel_lead,
        candidates=candidates,
        now=now,
        config=config,
    )
    if decision.outcome is SubmitOutcome.DUPLICATE:
        assert decision.existing is not None
        return IntakeResult(SubmitOutcome.DUPLICATE, decision.existing, None, decision.reason)
    if decision.outcome is SubmitOutcome.MERGED:
        assert decision.existing is not None
        return _merged(
            decision.existing,
            clean,
            decision.reason,
            now=now,
            actor=actor,
            payload_ref=payload_ref,
            dealers=dealers,
            assigned_today=assigned_today,
            config=config,
            walk_in_dealer_id=walk_in_dealer_id,
        )
    return _created(
        clean,
        decision.reason,
        lead_id=lead_id,
        now=now,
        actor=actor,
        payload_ref=payload_ref,
        dealers=dealers,
        assigned_today=assigned_today,
        config=config,
        walk_in_dealer_id=walk_in_dealer_id,
    )


def reassign(
    lead: Lead, decision: RoutingDecision, *, now: datetime, actor: str, config: LeadConfig
) -> Lead:
    """The lead handed to `decision.dealer_id` (see `routing.manual`); its follow-up clock
    restarts for the new dealer. Closed leads are FailedPrecondition."""
    if not lead.status.is_open:
        raise FailedPrecondition(
            f"lead {lead.id} is {lead.status.value}", reason=errors.LEAD_CLOSED
        )
    if decision.dealer_id == lead.dealer_id:
        return lead
    return replace(
        lead,
        dealer_id=decision.dealer_id,
        routing_reason=decision.reason,
        follow_up_due=follow_up_due(lead.grade, now, config),
        update_time=now,
        update_actor=actor,
        version=lead.version + 1,
    )
