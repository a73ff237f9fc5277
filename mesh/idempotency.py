"""Request ids (AIP-155), the parts every service shares.

A request id belongs to its caller: it is remembered under the caller's scope, so the same
string from two callers is two requests. It stands for one request: what was asked is kept
as a fingerprint beside it, so a retry (same id, same request) gets the first result and a
reused id with another request is INVALID_ARGUMENT `REQUEST_ID_REUSED`, with nothing done.
"""

from __future__ import annotations

import hashlib

from mesh.errors import FieldViolation, InvalidArgument
from mesh.identity import Caller


def scope_of(caller: Caller) -> str:
    """Whose request ids these are: the caller's stable reference (`dealer:D001`...)."""
    return caller.ref


def fingerprint(*parts: object) -> str:
    """A short, stable hash of what a request asks (its method and decoded arguments).

    The parts are hashed, never stored: a fingerprint reveals nothing of the request."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


class RequestIdReused(InvalidArgument):
    """The request id was sent before with a different request."""

    def __init__(self) -> None:
        super().__init__(
            "request_id: was already used for a different request",
            reason="REQUEST_ID_REUSED",
            field_violations=[
                FieldViolation("request_id", "was already used for a different request")
            ],
        )
