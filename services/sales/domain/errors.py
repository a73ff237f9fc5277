"""The reasons the sales service gives (google.rpc.ErrorInfo.reason, AIP-193), declared once.

Clients match on these, so they are part of the contract: a new one is added here, never
spelled out at a raise. The status code comes with the error class of `mesh.errors`
(NotFound, InvalidArgument, PermissionDenied, FailedPrecondition, Aborted), which the mesh's
chain maps to a status; the errors raised from several places are built by the functions below.
"""

from __future__ import annotations

from mesh.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

# Not found (or not the caller's to see: the same answer).
OPPORTUNITY_NOT_FOUND = "OPPORTUNITY_NOT_FOUND"
TEST_DRIVE_NOT_FOUND = "TEST_DRIVE_NOT_FOUND"
TEST_DRIVE_CAR_NOT_FOUND = "TEST_DRIVE_CAR_NOT_FOUND"
QUOTE_NOT_FOUND = "QUOTE_NOT_FOUND"
ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
TRIM_NOT_FOUND = "TRIM_NOT_FOUND"
OPTION_NOT_FOUND = "OPTION_NOT_FOUND"
STOCK_VEHICLE_NOT_FOUND = "STOCK_VEHICLE_NOT_FOUND"
# A malformed value (the field is named in the BadRequest details).
INVALID_FIELD = "INVALID_FIELD"
# Who may do what.
OTHER_DEALER = "OTHER_DEALER"
# Test drives: the slot cannot be had.
CAR_TAKEN = "CAR_TAKEN"
CONSULTANT_TAKEN = "CONSULTANT_TAKEN"
OUTSIDE_OPENING_HOURS = "OUTSIDE_OPENING_HOURS"
SLOT_IN_PAST = "SLOT_IN_PAST"
# A state machine refused a step (the current state is in the metadata and the message).
ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"
# An update's etag is not the row's any more: someone else changed it first.
ETAG_MISMATCH = "ETAG_MISMATCH"
# Quotes and orders.
QUOTE_EXPIRED = "QUOTE_EXPIRED"
NO_TAX_RULE = "NO_TAX_RULE"
NO_PRICE = "NO_PRICE"
VEHICLE_MISMATCH = "VEHICLE_MISMATCH"
VEHICLE_UNAVAILABLE = "VEHICLE_UNAVAILABLE"


def invalid(field: str, description: str) -> InvalidArgument:
    """One bad field of the request: `invalid("quote.discounts[0].amount", "must be > 0")`."""
    return InvalidArgument.for_field(field, description, reason=INVALID_FIELD)


def not_found(reason: str, what: str, id_: str) -> NotFound:
    """No such record, or one the caller may not know exists: `not_found(ORDER_NOT_FOUND,
    "order", id)`."""
    return NotFound(f"{what} {id_} not found", reason=reason, metadata={"id": id_})


def refused(reason: str, message: str, **metadata: str) -> FailedPrecondition:
    """The state of things does not allow the step (a taken slot, an expired quote...)."""
    return FailedPrecondition(message, reason=reason, metadata=metadata)


def illegal_transition(what: str, current: str, step: str) -> FailedPrecondition:
    """A state machine's refusal, naming the current state."""
    return FailedPrecondition(
        f"{what} is {current}: {step} is not allowed",
        reason=ILLEGAL_TRANSITION,
        metadata={"current_state": current, "step": step},
    )


def etag_mismatch(what: str, id_: str) -> Aborted:
    """Somebody else changed the record since the caller read it: read again, then retry."""
    return Aborted(f"{what} {id_} changed since it was read; read it again", reason=ETAG_MISMATCH)


def other_dealer() -> PermissionDenied:
    """A dealer asked to act for another dealer."""
    return PermissionDenied("a dealer acts for its own dealer only", reason=OTHER_DEALER)


# The scaffold's placeholder resource, until the real ones replace it.
SALES_NOT_FOUND = "SALES_NOT_FOUND"


def sales_not_found(id_: str) -> NotFound:
    """No such sales (the scaffold's resource)."""
    return NotFound(f"sales {id_} not found", reason=SALES_NOT_FOUND)
