"""The reasons the ERP adapter gives (google.rpc.ErrorInfo.reason), declared once.

SAP's own answers keep SAP's message code and text, and its `errordetails`, in the
ErrorInfo metadata (`sap_code`, `sap_message`, `sap_errordetails`), so an operator sees
what SAP said without the adapter's logs.
"""

from __future__ import annotations

from collections.abc import Mapping

from mesh.errors import DomainError, FieldViolation, InvalidArgument, NotFound, Unavailable

SALES_ORDER_NOT_FOUND = "SALES_ORDER_NOT_FOUND"
# A field of the order would not fit SAP (too long, missing): checked before sending.
SAP_FIELD_INVALID = "SAP_FIELD_INVALID"
# SAP refused the request (4xx with its error envelope).
SAP_REJECTED = "SAP_REJECTED"
# SAP refused our credentials (401/403 other than the CSRF token): waits for an operator.
SAP_AUTH_FAILED = "SAP_AUTH_FAILED"
# SAP is down or failing (5xx, connection refused, an outage page).
SAP_UNAVAILABLE = "SAP_UNAVAILABLE"
# SAP did not answer in time: whether it did the work is unknown.
SAP_TIMEOUT = "SAP_TIMEOUT"
# SAP answered something that is not OData (a proxy's HTML page, cut-off JSON).
SAP_BAD_RESPONSE = "SAP_BAD_RESPONSE"
# The adapter's SAP connection is not ready yet (start-up).
ERP_NOT_READY = "ERP_NOT_READY"
# Another delivery of the order is calling SAP for it now (its claim's lease runs).
SAP_CALL_IN_PROGRESS = "SAP_CALL_IN_PROGRESS"


class SapTimeout(Unavailable):
    """SAP did not answer in time. For a create, SAP may have created the order: look it
    up by PurchaseOrderByCustomer before creating again."""


def sales_order_not_found(key: str) -> NotFound:
    """SAP knows no such order."""
    return NotFound(f"sales order {key} not found in SAP", reason=SALES_ORDER_NOT_FOUND)


def field_invalid(violations: list[FieldViolation]) -> InvalidArgument:
    """Fields SAP would refuse, found before the call."""
    text = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return InvalidArgument(
        f"the order does not fit SAP: {text}",
        reason=SAP_FIELD_INVALID,
        field_violations=violations,
    )


def unavailable(message: str, retry_after: float | None = 5.0) -> Unavailable:
    """SAP cannot take the call now; events wait and are delivered later."""
    return Unavailable(message, reason=SAP_UNAVAILABLE, retry_after=retry_after)


def timed_out(operation: str) -> SapTimeout:
    """No answer in time."""
    return SapTimeout(f"SAP did not answer {operation} in time", reason=SAP_TIMEOUT, retry_after=5)


def bad_response(status: int) -> Unavailable:
    """An answer that is not OData; treated as SAP failing."""
    return Unavailable(f"SAP answered HTTP {status} without an OData body", reason=SAP_BAD_RESPONSE)


def not_ready() -> Unavailable:
    """The SAP client is not built yet."""
    return Unavailable("the ERP adapter is starting", reason=ERP_NOT_READY, retry_after=1)


def in_progress() -> Unavailable:
    """Another delivery holds the order's claim: wait, then find its result."""
    return Unavailable(
        "the order is being taken to SAP by another delivery",
        reason=SAP_CALL_IN_PROGRESS,
        retry_after=5,
    )


def not_prepared() -> Unavailable:
    """The handler ran without the prepare step's outcome for an order: run both again."""
    return Unavailable("the order's SAP call has not been made yet", reason=SAP_CALL_IN_PROGRESS)


def sap_error(
    cls: type[DomainError], reason: str, message: str, metadata: Mapping[str, str]
) -> DomainError:
    """One of SAP's answers, as the mesh error class that says what the caller can do."""
    retry = 5.0 if issubclass(cls, Unavailable) else None
    return cls(message, reason=reason, metadata=metadata, retry_after=retry)
