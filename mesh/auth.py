"""Bearer-JWT authentication with a verified-token cache, and the proto-declared policy.

Verifying an ES256 signature costs ~280 µs; callers reuse one token for many calls, so a
verified token is cached by its whole header (bounded, until its `exp`) and a call costs
a dict look-up.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import MethodDescriptor
from marque.common.v1 import access_pb2

from mesh.errors import DomainError, PermissionDenied, Unauthenticated
from mesh.identity import ANONYMOUS, Caller, Kind
from mesh.keys import KeySet, TokenError, decode_token

_PRINCIPALS: dict[int, Kind] = {
    access_pb2.PRINCIPAL_OEM: Kind.OEM,
    access_pb2.PRINCIPAL_DEALER: Kind.DEALER,
    access_pb2.PRINCIPAL_CUSTOMER: Kind.CUSTOMER,
    access_pb2.PRINCIPAL_SERVICE: Kind.SERVICE,
    access_pb2.PRINCIPAL_CHANNEL: Kind.CHANNEL,
}

# The original caller a service acted for (`x-marque-on-behalf-of`), for audit only:
# it is asserted by the calling service, never used for access decisions.
_on_behalf_of: ContextVar[str | None] = ContextVar("marque_on_behalf_of", default=None)


def on_behalf_of() -> str | None:
    """The caller reference a calling service says it acts for, if any (audit only)."""
    return _on_behalf_of.get()


def set_on_behalf_of(value: str | None) -> None:
    """Bind the on-behalf-of reference for the current call."""
    _on_behalf_of.set(value)


class PolicyMissing(RuntimeError):
    """A method declares no `(marque.common.v1.access)` option: the mesh will not serve it."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may call one method."""

    public: bool
    kinds: frozenset[Kind]

    @classmethod
    def of(cls, method: MethodDescriptor) -> Policy:
        """The method's declared policy; PolicyMissing if it has none."""
        options = method.GetOptions()
        extension: Any = access_pb2.access
        if not options.HasExtension(extension):
            raise PolicyMissing(
                f"{method.full_name} has no (marque.common.v1.access) option: declare "
                "`principals: [...]` or `public: true` in its proto"
            )
        declared: access_pb2.AccessPolicy = options.Extensions[extension]
        kinds = frozenset(_PRINCIPALS[p] for p in declared.principals if p in _PRINCIPALS)
        if not declared.public and not kinds:
            raise PolicyMissing(f"{method.full_name} allows no principal and is not public")
        return cls(public=declared.public, kinds=kinds)


class Authenticator:
    """Turns `authorization` metadata into a Caller and checks it against a Policy."""

    def __init__(self, keys: KeySet | None = None, max_entries: int = 10_000) -> None:
        self._keys = keys
        self._max = max_entries
        self._cache: dict[str, tuple[Caller, float]] = {}
        # The last header verified or found: most calls repeat it, and comparing two equal
        # strings is cheaper than hashing a new one (grpc hands over a new str each call).
        self._last: tuple[str, Caller, float] = ("", ANONYMOUS, 0.0)

    def _verify(self, authorization: str) -> tuple[Caller, float]:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization must be 'Bearer <token>'", reason="BAD_SCHEME")
        self._cache.pop(authorization, None)  # expired, if there
        try:
            caller, expires = decode_token(token, keys=self._keys)
        except TokenError as e:
            raise Unauthenticated(str(e), reason="INVALID_TOKEN") from None
        if len(self._cache) >= self._max:
            # Drop the oldest quarter: bounded memory without per-call bookkeeping.
            for key in list(self._cache)[: self._max // 4 or 1]:
                del self._cache[key]
        self._cache[authorization] = (caller, expires)
        return caller, expires

    def authenticate(self, authorization: str | None, policy: Policy) -> Caller:
        """The caller of this call; raises Unauthenticated / PermissionDenied."""
        if not authorization:
            if policy.public:
                return ANONYMOUS
            raise Unauthenticated("missing bearer token", reason="MISSING_TOKEN")
        last = self._last
        if authorization == last[0] and last[2] > time.time():
            caller = last[1]
        else:
            # Keyed by the whole header: a repeat caller costs one look-up, no parsing.
            hit = self._cache.get(authorization)
            if hit is None or hit[1] <= time.time():
                hit = self._verify(authorization)
            caller = hit[0]
            self._last = (authorization, caller, hit[1])
        if policy.public or caller.kind in policy.kinds:
            return caller
        raise PermissionDenied(
            f"{caller.kind.value} may not call this method", reason="PRINCIPAL_NOT_ALLOWED"
        )


__all__ = ["Authenticator", "DomainError", "Policy", "PolicyMissing", "on_behalf_of"]
