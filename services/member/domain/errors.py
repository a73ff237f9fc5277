"""The reasons the member service gives (google.rpc.ErrorInfo.reason, AIP-193), declared once.

Clients match on these, so they are part of the contract: a new one is added here, never
spelled out at a raise. The status code comes with the error class of `mesh.errors`
(NotFound, InvalidArgument, FailedPrecondition, PermissionDenied), which the mesh's chain
maps to a status; the member domain has no error classes of its own. The few errors raised
from several places are built by the functions below, so their wording is one too.
"""

from __future__ import annotations

from mesh.errors import FailedPrecondition, InvalidArgument, NotFound

# Not found (or not the caller's to see: the same answer).
MEMBER_NOT_FOUND = "MEMBER_NOT_FOUND"
IDENTITY_NOT_FOUND = "IDENTITY_NOT_FOUND"
VEHICLE_NOT_FOUND = "VEHICLE_NOT_FOUND"
# A malformed value (the field is named in the BadRequest details).
INVALID_FIELD = "INVALID_FIELD"
# Who may do what.
DEALER_MOBILE_ONLY = "DEALER_MOBILE_ONLY"
IDENTITY_LINK_NEEDS_VERIFICATION = "IDENTITY_LINK_NEEDS_VERIFICATION"
# The state does not allow it.
MEMBER_MERGED = "MEMBER_MERGED"
MEMBER_ERASED = "MEMBER_ERASED"
SAME_MEMBER = "SAME_MEMBER"
IDENTITY_BELONGS_TO_OTHER_MEMBER = "IDENTITY_BELONGS_TO_OTHER_MEMBER"
INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
VIN_OWNED_BY_OTHER_MEMBER = "VIN_OWNED_BY_OTHER_MEMBER"
VIN_NOT_OWNED_BY_MEMBER = "VIN_NOT_OWNED_BY_MEMBER"


def invalid(field: str, description: str) -> InvalidArgument:
    """One bad field of the request: `invalid("points", "must be positive")`."""
    return InvalidArgument.for_field(field, description, reason=INVALID_FIELD)


def member_not_found(member_id: str) -> NotFound:
    """No such member, or one the caller may not know exists."""
    return NotFound(f"member {member_id} not found", reason=MEMBER_NOT_FOUND)


def identity_not_found() -> NotFound:
    """No member holds the identity, or the caller may not see the one that does; the
    answer names nothing but what the caller sent."""
    return NotFound("no member has that identity", reason=IDENTITY_NOT_FOUND)


def vehicle_not_found(vin: str) -> NotFound:
    """No such VIN is known."""
    return NotFound(f"vehicle {vin} not found", reason=VEHICLE_NOT_FOUND)


def insufficient_points(requested: int, balance: int) -> FailedPrecondition:
    """A redemption asked for more than the balance (after expiry)."""
    return FailedPrecondition(
        f"cannot redeem {requested} points: balance is {balance}",
        reason=INSUFFICIENT_POINTS,
    )
