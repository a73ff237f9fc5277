"""Errors of the member domain. The servicer maps them to `mesh.errors` (gRPC codes);
the domain itself stays free of transport concerns."""

from __future__ import annotations


class MemberDomainError(Exception):
    """Base of the domain's errors."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__.upper()


class InvalidValue(MemberDomainError):
    """A value is malformed regardless of state (maps to INVALID_ARGUMENT on `field`)."""

    def __init__(self, field: str, message: str, *, reason: str = "INVALID_FIELD") -> None:
        super().__init__(f"{field}: {message}", reason=reason)
        self.field = field
        self.description = message


class RuleViolation(MemberDomainError):
    """The state does not allow the operation (maps to FAILED_PRECONDITION)."""


class InsufficientPoints(RuleViolation):
    """A redemption asked for more than the balance."""

    def __init__(self, requested: int, balance: int) -> None:
        super().__init__(
            f"cannot redeem {requested} points: balance is {balance}",
            reason="INSUFFICIENT_POINTS",
        )
        self.requested = requested
        self.balance = balance


class MemberNotFound(MemberDomainError):
    """No such member, or the caller may not know it exists (maps to NOT_FOUND)."""
