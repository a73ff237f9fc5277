"""Follow-up: the status machine, grade-based deadlines and the overdue check.

Transitions (`model.ALLOWED_TRANSITIONS`): forward only, skips allowed, WON and LOST
final. Dealers record steps late or not at all (a walk-in may book a test drive on the
spot, a phone call may end in an order), so refusing NEW -> TEST_DRIVE_BOOKED or
CONTACTED -> WON would only push them to fake the missing step. Going back (e.g.
TEST_DRIVE_BOOKED -> CONTACTED) is refused: a cancelled test drive is still a lead that
had one. LOST needs a reason; setting the current status again is a no-op, so a retried
update is harmless.

Deadlines: an open lead always has a next follow-up deadline, `follow_up_days[grade]`
after it was assigned or last moved forward (defaults H 2, A 7, B 14, C 30 days, and N
30: an unknown time frame still deserves a call within a month rather than never). WON
and LOST leads have none. Overdue means open with the deadline in the past.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from mesh.errors import FailedPrecondition, InvalidArgument
from services.lead.domain import errors
from services.lead.domain.config import LeadConfig
from services.lead.domain.model import ALLOWED_TRANSITIONS, Grade, Lead, LeadStatus

MAX_LOST_REASON = 500


def follow_up_due(grade: Grade, since: datetime, config: LeadConfig) -> datetime:
    """The follow-up deadline for a lead of `grade` assigned or moved at `since`."""
    return since + timedelta(days=config.follow_up_days[grade])


def is_overdue(lead: Lead, now: datetime) -> bool:
    """True for an open lead whose follow-up deadline has passed."""
    return lead.status.is_open and lead.follow_up_due is not None and lead.follow_up_due < now


def can_transition(current: LeadStatus, new: LeadStatus) -> bool:
    """Whether `current` may move to `new` (the same status counts as allowed)."""
    return new == current or new in ALLOWED_TRANSITIONS[current]


def transition(
    lead: Lead,
    new_status: LeadStatus,
    *,
    lost_reason: str = "",
    now: datetime,
    actor: str,
    config: LeadConfig,
) -> Lead:
    """The lead moved to `new_status`, or the same lead if it is already there.

    Raises InvalidArgument (field `lost_reason`) when LOST comes without a reason or a
    reason comes with another status, FailedPrecondition (reason
    INVALID_STATUS_TRANSITION) for a move the machine does not allow.
    """
    reason = " ".join(lost_reason.split())
    if new_status is LeadStatus.LOST and not reason:
        raise InvalidArgument.for_field(
            "lost_reason", "required when the status is LOST", reason=errors.LOST_REASON_REQUIRED
        )
    if new_status is not LeadStatus.LOST and reason:
        raise InvalidArgument.for_field(
            "lost_reason", "only allowed with status LOST", reason=errors.LOST_REASON_UNEXPECTED
        )
    if len(reason) > MAX_LOST_REASON:
        raise InvalidArgument.for_field(
            "lost_reason", f"at most {MAX_LOST_REASON} characters", reason=errors.TOO_LONG
        )
    if new_status == lead.status:
        return lead
    if new_status not in ALLOWED_TRANSITIONS[lead.status]:
        raise FailedPrecondition(
            f"a lead in status {lead.status.value} cannot become {new_status.value}",
            reason=errors.INVALID_STATUS_TRANSITION,
            metadata={"from": lead.status.value, "to": new_status.value},
        )
    return replace(
        lead,
        status=new_status,
        lost_reason=reason if new_status is LeadStatus.LOST else "",
        follow_up_due=(follow_up_due(lead.grade, now, config) if new_status.is_open else None),
        update_time=now,
        update_actor=actor,
        version=lead.version + 1,
    )
