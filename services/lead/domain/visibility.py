"""What of a lead a caller may be told (DESIGN.md §8: a reply never carries what the caller
could not read with GetLead).

OEM staff and platform services read every lead; a dealer reads the leads assigned to it
(another dealer's, or the OEM pool's, is NOT_FOUND); a channel cannot read leads at all,
so a submission's reply tells it the outcome and the lead id of its own submission and
nothing a merge brought in from other channels.
"""

from __future__ import annotations

from enum import StrEnum

from mesh.identity import Caller, Kind
from services.lead.domain.model import Lead


class View(StrEnum):
    """How much of a lead a reply may carry."""

    FULL = "FULL"
    ID_ONLY = "ID_ONLY"
    NONE = "NONE"


def can_read(caller: Caller, lead: Lead) -> bool:
    """GetLead's rule: OEM staff and services read all; a dealer its own leads."""
    if caller.kind in (Kind.OEM, Kind.SERVICE):
        return True
    return (
        caller.kind is Kind.DEALER and bool(caller.dealer_id) and lead.dealer_id == caller.dealer_id
    )


def reply_view(caller: Caller, lead: Lead) -> View:
    """What a submission's reply may show of the lead it concerns."""
    if can_read(caller, lead):
        return View.FULL
    if caller.kind is Kind.CHANNEL:
        return View.ID_ONLY
    return View.NONE
