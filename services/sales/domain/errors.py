"""The reasons the sales service gives (google.rpc.ErrorInfo.reason, AIP-193), declared once.

Clients match on these, so they are part of the contract: a new one is added here, never
spelled out at a raise. The status code comes with the error class of `mesh.errors`
(NotFound, InvalidArgument, PermissionDenied, FailedPrecondition), which the mesh's chain
maps to a status; the errors raised from several places are built by the functions below.
"""

from __future__ import annotations

from mesh.errors import InvalidArgument, NotFound, PermissionDenied

# Not found (or not the caller's to see: the same answer).
SALES_NOT_FOUND = "SALES_NOT_FOUND"
# A malformed value (the field is named in the BadRequest details).
INVALID_FIELD = "INVALID_FIELD"
# Who may do what.
OTHER_DEALER = "OTHER_DEALER"


def invalid(field: str, description: str) -> InvalidArgument:
    """One bad field of the request: `invalid("sales.display_name", "must not be blank")`."""
    return InvalidArgument.for_field(field, description, reason=INVALID_FIELD)


def sales_not_found(id_: str) -> NotFound:
    """No such sales, or one the caller may not know exists."""
    return NotFound(f"sales {id_} not found", reason=SALES_NOT_FOUND)


def other_dealer() -> PermissionDenied:
    """A dealer asked to act for another dealer."""
    return PermissionDenied("a dealer acts for its own dealer only", reason=OTHER_DEALER)
