"""Domain errors, free of grpc. Services raise these; the mesh maps them to gRPC status codes with
`google.rpc` details (ErrorInfo always, BadRequest for field violations, RetryInfo when a
retry may help), so no servicer builds a status by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

# The gRPC status codes a domain error may carry, by name: the domain stays free of grpc and
# the chain (mesh/chain.py) turns the name into the status code.
Code = Literal[
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "ABORTED",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request (`customer.mobile`) and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base of all errors a service reports to its callers on purpose."""

    code: Code = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # UPPER_SNAKE_CASE machine-readable reason for ErrorInfo (AIP-193).
        self.reason = reason or type(self).__name__.upper()
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations)
        self.retry_after = retry_after


class InvalidArgument(DomainError):
    """The request is malformed regardless of system state."""

    code: Code = "INVALID_ARGUMENT"

    @classmethod
    def for_field(cls, field: str, description: str, *, reason: str = "") -> InvalidArgument:
        """One-field shortcut: `InvalidArgument.for_field("customer.mobile", "not a mobile")`."""
        return cls(
            f"{field}: {description}",
            reason=reason or "INVALID_FIELD",
            field_violations=[FieldViolation(field, description)],
        )


class NotFound(DomainError):
    """The resource does not exist, or the caller may not know that it does."""

    code: Code = "NOT_FOUND"


class AlreadyExists(DomainError):
    """A resource with that identity exists already."""

    code: Code = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The system is not in a state that allows the operation."""

    code: Code = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    code: Code = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """No valid credentials."""

    code: Code = "UNAUTHENTICATED"


class Aborted(DomainError):
    """A concurrency conflict; retrying the whole operation may succeed."""

    code: Code = "ABORTED"


class ResourceExhausted(DomainError):
    """A quota or capacity is used up."""

    code: Code = "RESOURCE_EXHAUSTED"


class Unavailable(DomainError):
    """A dependency is down; retry later."""

    code: Code = "UNAVAILABLE"


class DeadlineExceeded(DomainError):
    """The caller's deadline passed before the call was served (raised by the mesh only)."""

    code: Code = "DEADLINE_EXCEEDED"
