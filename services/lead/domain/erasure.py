"""What a person's erasure (PIPL, member's MemberErased) leaves of their leads: the anonymous
facts a funnel report counts (channel, brand and model asked about, grade, status, dealer,
dates, consents given) and nothing that names or reaches the person: name, mobile, e-mail,
city, the channel's own id of the lead (the channel can map it back), the free-text lost
reason, the digest and member link, and the touchpoints' payload references (a hash that
would confirm a guessed payload)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.lead.domain.model import Lead, Touchpoint

ERASED_PAYLOAD = "erased"


def is_erased(lead: Lead) -> bool:
    """Whether nothing personal is left (an erasure delivered twice changes nothing)."""
    return not lead.name and lead.mobile_e164 is None and lead.email is None and not lead.city


def erased_touchpoint(tp: Touchpoint) -> Touchpoint:
    """A touchpoint without the channel's lead id and the payload's hash."""
    return replace(tp, channel_lead_id="", payload_ref=ERASED_PAYLOAD)


def erase(lead: Lead, *, now: datetime, actor: str) -> Lead:
    """The lead without the person (the same lead if it was erased already)."""
    if is_erased(lead) and lead.contact_digest is None:
        return lead
    return replace(
        lead,
        name="",
        mobile_e164=None,
        email=None,
        city="",
        channel_lead_id="",
        lost_reason="",
        contact_digest=None,
        member_id="",
        touchpoints=tuple(erased_touchpoint(tp) for tp in lead.touchpoints),
        update_time=now,
        update_actor=actor,
        version=lead.version + 1,
    )
