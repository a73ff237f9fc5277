"""Domain objects to rows and back (the Core queries' and the batches' shared mapping)."""

from __future__ import annotations

from typing import Any

from services.lead.domain.model import (
    Channel,
    Consents,
    Dealer,
    Grade,
    Lead,
    LeadStatus,
    Rating,
    TimeFrame,
    Touchpoint,
)

# ------------------------------------------------------------------------------- mapping


def lead_row(lead: Lead) -> dict[str, Any]:
    """The `leads` row of a domain lead (touchpoints are rows of their own)."""
    return {
        "id": lead.id,
        "status": lead.status.value,
        "grade": lead.rating.grade.value,
        "score": lead.rating.score,
        "rating_reasons": list(lead.rating.reasons),
        "name": lead.name,
        "mobile_e164": lead.mobile_e164,
        "email": lead.email,
        "city": lead.city,
        "province": lead.province,
        "brand": lead.brand,
        "series": lead.series,
        "model": lead.model,
        "trim": lead.trim,
        "model_year": lead.model_year,
        "time_frame": lead.time_frame.value,
        "test_drive_requested": lead.test_drive_requested,
        "channel": lead.channel.value,
        "channel_lead_id": lead.channel_lead_id,
        "consent_contact": lead.consents.contact,
        "consent_marketing": lead.consents.marketing,
        "consent_share": lead.consents.share_with_dealer,
        "preferred_dealer_id": lead.preferred_dealer_id,
        "dealer_id": lead.dealer_id or "",
        "routing_reason": lead.routing_reason,
        "follow_up_due_time": lead.follow_up_due,
        "lost_reason": lead.lost_reason,
        "touch_count": len(lead.touchpoints),
        "last_touch_time": lead.last_touch_time,
        "create_time": lead.create_time,
        "create_actor": lead.create_actor,
        "update_time": lead.update_time,
        "update_actor": lead.update_actor,
        "version": lead.version,
        "contact_digest": lead.contact_digest,
        "member_id": lead.member_id,
    }


def touchpoint_row(lead_id: str, tp: Touchpoint) -> dict[str, Any]:
    """The `touchpoints` row of one arrival."""
    return {
        "lead_id": lead_id,
        "channel": tp.channel.value,
        "channel_lead_id": tp.channel_lead_id,
        "occur_time": tp.time,
        "payload_ref": tp.payload_ref,
        "request_id": tp.request_id,
        "dealer_id": tp.dealer_id,
    }


def touchpoint_from_row(row: Any) -> Touchpoint:
    return Touchpoint(
        channel=Channel(row.channel),
        time=row.occur_time,
        channel_lead_id=row.channel_lead_id,
        request_id=row.request_id,
        payload_ref=row.payload_ref,
        dealer_id=row.dealer_id,
    )


def lead_from_row(row: Any, tps: tuple[Touchpoint, ...]) -> Lead:
    return Lead(
        id=row.id,
        status=LeadStatus(row.status),
        rating=Rating(
            grade=Grade(row.grade), score=row.score, reasons=tuple(row.rating_reasons or ())
        ),
        name=row.name,
        mobile_e164=row.mobile_e164,
        email=row.email,
        city=row.city,
        province=row.province,
        brand=row.brand,
        series=row.series,
        model=row.model,
        trim=row.trim,
        model_year=row.model_year,
        time_frame=TimeFrame(row.time_frame),
        test_drive_requested=row.test_drive_requested,
        channel=Channel(row.channel),
        channel_lead_id=row.channel_lead_id,
        consents=Consents(row.consent_contact, row.consent_marketing, row.consent_share),
        preferred_dealer_id=row.preferred_dealer_id,
        dealer_id=row.dealer_id or None,
        routing_reason=row.routing_reason,
        touchpoints=tps,
        follow_up_due=row.follow_up_due_time,
        lost_reason=row.lost_reason,
        create_time=row.create_time,
        update_time=row.update_time,
        last_touch_time=row.last_touch_time,
        create_actor=row.create_actor,
        update_actor=row.update_actor,
        version=row.version,
        contact_digest=row.contact_digest,
        member_id=row.member_id,
    )


def dealer_row(dealer: Dealer, actor: str = "") -> dict[str, Any]:
    """The `dealers` row of a dealer."""
    return {
        "id": dealer.id,
        "name": dealer.name,
        "brands": list(dealer.brands),
        "province": dealer.province,
        "city": dealer.city,
        "daily_capacity": dealer.daily_capacity,
        "active": dealer.active,
        "create_time": dealer.create_time,
        "create_actor": actor,
    }


def dealer_from_row(row: Any) -> Dealer:
    return Dealer(
        id=row.id,
        name=row.name,
        brands=tuple(row.brands),
        province=row.province,
        city=row.city,
        daily_capacity=row.daily_capacity,
        active=row.active,
        create_time=row.create_time,
    )
