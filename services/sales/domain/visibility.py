"""Who may see and change which sales rows, on plain values (the caller and the row's
dealer and member), so the rules are unit-tested without a server:
- oem and service: every row; they name the dealer a new one belongs to;
- dealer: its own rows only; another dealer's is reported as not found (NOT_FOUND rather
  than PERMISSION_DENIED, so a dealer cannot probe which ids exist);
- customer: reads the quotes and orders that name them, changes nothing;
- anyone else: nothing (the proto's access policy keeps them out before this runs).
"""

from __future__ import annotations

from mesh.identity import Caller, Kind
from services.sales.domain.errors import invalid, other_dealer

STAFF = frozenset({Kind.OEM, Kind.SERVICE})


def dealer_for(caller: Caller, requested: str, field: str) -> str:
    """The dealer a call acts for: a dealer's own (naming another is PERMISSION_DENIED),
    or the one staff and services name (required)."""
    if caller.kind is Kind.DEALER and caller.dealer_id:
        if requested and requested != caller.dealer_id:
            raise other_dealer()
        return caller.dealer_id
    if caller.kind in STAFF:
        if not requested:
            raise invalid(field, "is required for staff and services")
        return requested
    raise other_dealer()


def list_scope(caller: Caller, requested: str) -> tuple[str, str] | None:
    """(dealer, member) a List is held to: a dealer its own, a customer theirs, staff the
    dealer they name (or all: ("", "")); None when the caller may see nothing of it (a
    dealer naming another dealer: nothing, like an unknown dealer)."""
    if caller.kind is Kind.DEALER:
        if not caller.dealer_id or (requested and requested != caller.dealer_id):
            return None
        return (caller.dealer_id, "")
    if caller.kind is Kind.CUSTOMER:
        return (requested, caller.member_id) if caller.member_id else None
    if caller.kind in STAFF:
        return (requested, "")
    return None


def may_see(caller: Caller, dealer_id: str, member_id: str = "") -> bool:
    """Whether `caller` may know that a row of this dealer (and customer) exists."""
    if caller.kind in STAFF:
        return True
    if caller.kind is Kind.DEALER:
        return bool(caller.dealer_id) and dealer_id == caller.dealer_id
    if caller.kind is Kind.CUSTOMER:
        return bool(caller.member_id) and member_id == caller.member_id
    return False


def may_change(caller: Caller, dealer_id: str) -> bool:
    """Whether `caller` may change a row of this dealer (customers read only)."""
    return caller.kind is not Kind.CUSTOMER and may_see(caller, dealer_id)
