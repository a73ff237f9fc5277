"""The reasons the DMS adapter gives, declared once: to a dealer's DMS on the inbound HTTP
endpoint (`Refused`: an HTTP status, a closed reason, a sentence and the field paths) and
to gRPC callers and the event consumer (mesh errors, google.rpc.ErrorInfo.reason)."""

from __future__ import annotations

from collections.abc import Sequence

from mesh.errors import InvalidArgument, NotFound, Unavailable

# Inbound (HTTP) ----------------------------------------------------------------------------
UNKNOWN_DEALER = "UNKNOWN_DEALER"
MALFORMED_JSON = "MALFORMED_JSON"
INVALID_DOCUMENT = "INVALID_DOCUMENT"
BODY_TOO_LARGE = "BODY_TOO_LARGE"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
REPLAYED = "SIGNATURE_REPLAYED"
# The same natural key (dealer, document id, status time) with another content.
DOCUMENT_CONFLICT = "DOCUMENT_CONFLICT"
NOT_READY = "DMS_NOT_READY"

# gRPC and events ---------------------------------------------------------------------------
DOCUMENT_NOT_FOUND = "DOCUMENT_NOT_FOUND"
DELIVERY_NOT_FOUND = "DELIVERY_NOT_FOUND"
# The dealer has no DMS endpoint configured.
DMS_NOT_CONFIGURED = "DMS_NOT_CONFIGURED"
# The dealer's DMS refused the document (4xx): a dead letter, replayed once fixed.
DMS_REJECTED = "DMS_REJECTED"
# The DMS is down, failing or unreachable: the event waits.
DMS_UNAVAILABLE = "DMS_UNAVAILABLE"
DMS_TIMEOUT = "DMS_TIMEOUT"


class Refused(Exception):
    """An inbound request refused: what the DMS is told (never a traceback)."""

    def __init__(
        self, status: int, reason: str, message: str, fields: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.fields = tuple(fields)

    def body(self) -> dict[str, object]:
        """The JSON error body."""
        error: dict[str, object] = {"reason": self.reason, "message": self.message}
        if self.fields:
            error["fields"] = [{"field": f, "description": d} for f, d in self.fields]
        return {"error": error}


def document_not_found(document_id: str) -> NotFound:
    """No such document (or another dealer's)."""
    return NotFound(f"inbound document {document_id} not found", reason=DOCUMENT_NOT_FOUND)


def delivery_not_found(order_id: str) -> NotFound:
    """No RDR of that order reached a DMS (yet), or another dealer's."""
    return NotFound(f"no delivery of order {order_id} to a DMS", reason=DELIVERY_NOT_FOUND)


def not_configured(dealer_id: str) -> InvalidArgument:
    """The dealer has no DMS endpoint: a dead letter until configured, then replayed."""
    return InvalidArgument.for_field(
        "dealer_id", f"dealer {dealer_id} has no DMS endpoint configured", reason=DMS_NOT_CONFIGURED
    )


def rejected(status: int, message: str) -> InvalidArgument:
    """The DMS refused the document for good."""
    return InvalidArgument(f"the DMS answered {status}: {message}"[:300], reason=DMS_REJECTED)


def unavailable(message: str, retry_after: float | None = 5.0) -> Unavailable:
    """The DMS cannot take the call now; the event waits and is delivered later."""
    return Unavailable(message, reason=DMS_UNAVAILABLE, retry_after=retry_after)


def timed_out(operation: str) -> Unavailable:
    """No answer in time (a resend is safe: the DMS keys the RDR by its id)."""
    return Unavailable(
        f"the DMS did not answer {operation} in time", reason=DMS_TIMEOUT, retry_after=5
    )


def not_ready() -> Unavailable:
    """The adapter is starting."""
    return Unavailable("the DMS adapter is starting", reason=NOT_READY, retry_after=1)
