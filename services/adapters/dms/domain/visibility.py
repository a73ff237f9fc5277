"""Who sees which dealer's documents and deliveries: OEM staff and services every dealer's,
a dealer its own (another dealer's is NOT_FOUND, as if it did not exist)."""

from __future__ import annotations

from mesh.identity import Caller, Kind

ALL_DEALERS = frozenset({Kind.OEM, Kind.SERVICE})


def may_see(caller: Caller, dealer_id: str) -> bool:
    """Whether the caller may see a row of `dealer_id`."""
    if caller.kind in ALL_DEALERS:
        return True
    return caller.kind is Kind.DEALER and bool(caller.dealer_id) and caller.dealer_id == dealer_id


def dealer_filter(caller: Caller, requested: str) -> str | None:
    """The dealer a List is restricted to ("" = all); None when the caller sees nothing."""
    if caller.kind in ALL_DEALERS:
        return requested
    if caller.kind is Kind.DEALER and caller.dealer_id:
        return caller.dealer_id if requested in ("", caller.dealer_id) else None
    return None
