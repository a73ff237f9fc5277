"""The bearer token outgoing calls carry: this process's service token (minted with
`mesh.keys`, cached, renewed before expiry), or a pre-issued one."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Protocol

from mesh.identity import Caller, Kind
from mesh.keys import TokenError, mint_token

SERVICE_TOKEN_TTL = 3600
# Renew the service token when less than this is left, so no call carries a token that
# expires in flight.
SERVICE_TOKEN_RENEW_BEFORE = 300


class TokenSource(Protocol):
    """Gives the `authorization` header of an outgoing call."""

    def header(self) -> tuple[str, str]: ...


class ServiceToken:
    """The bearer token of this process's service: minted on first use, renewed before expiry."""

    def __init__(
        self,
        service: str,
        *,
        ttl_seconds: int = SERVICE_TOKEN_TTL,
        renew_before: int = SERVICE_TOKEN_RENEW_BEFORE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self._ttl = ttl_seconds
        self._renew_before = min(renew_before, ttl_seconds // 2)
        self._clock = clock
        self._header: tuple[str, str] | None = None
        self._renew_at = 0.0

    def header(self) -> tuple[str, str]:
        """`("authorization", "Bearer …")`, minted again when close to expiry."""
        now = self._clock()
        if self._header is None or now >= self._renew_at:
            caller = Caller(Kind.SERVICE, self.service, service=self.service)
            token = mint_token(caller, ttl_seconds=self._ttl, now=now)
            self._header = ("authorization", f"Bearer {token}")
            self._renew_at = now + self._ttl - self._renew_before
        return self._header


_service_tokens: dict[str, ServiceToken] = {}


def service_token(service: str) -> ServiceToken:
    """The shared token source of `service` (one per process and service)."""
    source = _service_tokens.get(service)
    if source is None:
        source = _service_tokens[service] = ServiceToken(service)
    return source


class StaticToken:
    """A token given from outside (an argument or `MARQUE_SERVICE_TOKEN`), never renewed."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def header(self) -> tuple[str, str]:
        """`("authorization", "Bearer …")`."""
        return self._header


def token_source(token: str | None, service_name: str | None) -> TokenSource | None:
    """What a new channel's calls authenticate with: an explicit `token`, else
    `MARQUE_SERVICE_TOKEN`, else `service_name`'s own token, else nothing (scripts).

    The service token is minted here once, so a process that cannot mint fails when it
    makes the channel, not on its first call.
    """
    if token:
        return StaticToken(token)
    if os.environ.get("MARQUE_SERVICE_TOKEN"):
        return StaticToken(os.environ["MARQUE_SERVICE_TOKEN"])
    if not service_name:
        return None
    source = service_token(service_name)
    try:
        source.header()
    except TokenError as e:
        raise TokenError(
            f"{e}; configure MARQUE_JWT_PRIVATE_KEY[_FILE] or give this process a "
            "pre-issued MARQUE_SERVICE_TOKEN"
        ) from None
    return source
