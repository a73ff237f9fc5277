"""Domain errors. Services raise these; the mesh maps them to gRPC status codes with
`google.rpc` details (ErrorInfo always, BadRequest for field violations, RetryInfo when a
retry may help), so no servicer builds a status by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request (`customer.mobile`) and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base of all errors a service reports to its callers on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION

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

    code = grpc.StatusCode.INVALID_ARGUMENT

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

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    """A resource with that identity exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    """The system is not in a state that allows the operation."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    """No valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class Aborted(DomainError):
    """A concurrency conflict; retrying the whole operation may succeed."""

    code = grpc.StatusCode.ABORTED


class ResourceExhausted(DomainError):
    """A quota or capacity is used up."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """A dependency is down; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DomainError):
    """The caller's deadline passed before the call was served (raised by the mesh only)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
