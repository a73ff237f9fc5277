"""Dedup: is a submission a duplicate, a merge into an existing lead, or a new lead?

- DUPLICATE: a retried `request_id` (AIP-155) or a re-sent channel lead (same channel and
  channel lead id). Nothing changes; the caller gets the lead it got the first time.
- MERGED: an open lead of the same person (E.164 mobile; email for ADF leads without a
  mobile) and the same brand whose latest touchpoint is at most `dedup_window_days` old
  (inclusive). The lead gains a touchpoint, takes the newer interest and time frame, and
  is re-rated. The window counts from the last touch, so a customer who keeps coming back
  stays one lead; closed (WON/LOST) leads never absorb a new enquiry, which starts a new
  lead instead (a second car, or a second chance).
- CREATED: anything else.

The store looks the candidates up (on indexes: request id, channel + channel lead id,
contact key + brand key + last touch >= `window_start`); the functions here decide on
what it found, and re-check the conditions so a loose query cannot merge wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.lead.domain.config import LeadConfig
from services.lead.domain.followup import follow_up_due
from services.lead.domain.model import (
    CleanLead,
    Consents,
    Lead,
    SubmitOutcome,
    TimeFrame,
    Touchpoint,
)
from services.lead.domain.rating import RatingFacts, rate


@dataclass(frozen=True, slots=True)
class DedupDecision:
    """The outcome and, for DUPLICATE and MERGED, the existing lead it concerns."""

    outcome: SubmitOutcome
    existing: Lead | None
    reason: str


def window_start(now: datetime, config: LeadConfig) -> datetime:
    """The earliest last-touch time a lead may have to absorb a submission at `now`."""
    return now - timedelta(days=config.dedup_window_days)


def can_merge(lead: Lead, clean: CleanLead, now: datetime, config: LeadConfig) -> bool:
    """Same person and brand, open, last touched within the window."""
    return (
        lead.status.is_open
        and lead.contact_key == clean.contact_key
        and lead.brand_key == clean.brand_key
        and window_start(now, config) <= lead.last_touch_time
    )


def decide(
    clean: CleanLead,
    *,
    same_request: Lead | None,
    same_channel_lead: Lead | None,
    candidates: Sequence[Lead],
    now: datetime,
    config: LeadConfig,
) -> DedupDecision:
    """Decide on what the store found: the lead already holding this `request_id`, the
    lead holding this (channel, channel_lead_id), and merge candidates (any order). When
    several candidates qualify, the most recently touched wins (then the lowest id)."""
    if same_request is not None and clean.request_id:
        return DedupDecision(SubmitOutcome.DUPLICATE, same_request, "request_id seen before")
    if same_channel_lead is not None and clean.channel_lead_id:
        return DedupDecision(
            SubmitOutcome.DUPLICATE,
            same_channel_lead,
            f"{clean.channel.value} lead {clean.channel_lead_id} re-sent",
        )
    mergeable = [c for c in candidates if can_merge(c, clean, now, config)]
    if mergeable:
        target = min(mergeable, key=lambda c: (-c.last_touch_time.timestamp(), c.id))
        return DedupDecision(
            SubmitOutcome.MERGED,
            target,
            f"same contact and brand within {config.dedup_window_days} days",
        )
    return DedupDecision(SubmitOutcome.CREATED, None, "no open lead of this contact and brand")


def merge_into(
    lead: Lead,
    clean: CleanLead,
    touchpoint: Touchpoint,
    *,
    now: datetime,
    actor: str,
    config: LeadConfig,
) -> Lead:
    """The lead with the submission merged in.

    A named series replaces series, model, trim and model year together (the interest moved to
    another car; mixing old and new fields would describe a car nobody asked for); a
    known time frame replaces the old one; test-drive interest and consents, once given,
    stay; missing name, email, mobile, place and preferred dealer are filled in. The lead
    is re-rated and its follow-up deadline only ever moves earlier.
    """
    moved = bool(clean.series)
    merged = replace(
        lead,
        series=clean.series if moved else lead.series,
        model=clean.model if moved else lead.model,
        trim=clean.trim if moved else lead.trim,
        model_year=clean.model_year if moved else lead.model_year,
        name=lead.name or clean.name,
        mobile_e164=lead.mobile_e164 or clean.mobile_e164,
        email=lead.email or clean.email,
        city=clean.city or lead.city,
        province=clean.province or lead.province,
        time_frame=(
            clean.time_frame if clean.time_frame is not TimeFrame.UNKNOWN else lead.time_frame
        ),
        test_drive_requested=lead.test_drive_requested or clean.test_drive_requested,
        consents=Consents(
            contact=lead.consents.contact or clean.consents.contact,
            marketing=lead.consents.marketing or clean.consents.marketing,
            share_with_dealer=lead.consents.share_with_dealer or clean.consents.share_with_dealer,
        ),
        preferred_dealer_id=clean.preferred_dealer_id or lead.preferred_dealer_id,
        touchpoints=(*lead.touchpoints, touchpoint),
        last_touch_time=touchpoint.time,
        update_time=now,
        update_actor=actor,
        version=lead.version + 1,
    )
    rating = rate(RatingFacts.of_lead(merged, clean.request_time, now), config)
    due = follow_up_due(rating.grade, now, config)
    if lead.follow_up_due is not None:
        due = min(due, lead.follow_up_due)
    return replace(merged, rating=rating, follow_up_due=due)
