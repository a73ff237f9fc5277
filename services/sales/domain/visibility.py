"""Who may see and create which sales, on plain values (the caller and the record), so the
rules are unit-tested without a server:
- oem and service: every sales; they name the dealer a new one belongs to;
- dealer: its own saleses only; another dealer's is reported as not found (NOT_FOUND rather
  than PERMISSION_DENIED, so a dealer cannot probe which ids exist);
- anyone else: nothing (the proto's access policy keeps them out before this runs).
"""

from __future__ import annotations

from mesh.identity import Caller, Kind
from services.sales.domain.errors import invalid, other_dealer
from services.sales.domain.model import Sales

STAFF = frozenset({Kind.OEM, Kind.SERVICE})
DEALER_ID = "sales.dealer_id"


def owner_for(caller: Caller, requested: str) -> str:
    """The dealer a new sales belongs to: a dealer's own (naming another is
    PERMISSION_DENIED), or the one staff and services name (required)."""
    if caller.kind is Kind.DEALER and caller.dealer_id:
        if requested and requested != caller.dealer_id:
            raise other_dealer()
        return caller.dealer_id
    if caller.kind in STAFF:
        if not requested:
            raise invalid(DEALER_ID, "is required for staff and services")
        return requested
    raise other_dealer()


def may_see(caller: Caller, record: Sales) -> bool:
    """Whether `caller` may know that `record` exists."""
    if caller.kind in STAFF:
        return True
    return caller.kind is Kind.DEALER and record.dealer_id == caller.dealer_id
