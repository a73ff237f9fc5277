"""A thin, typed helper for backends outside the platform (mobile-app and mini-program BFFs).

```python
from marque.client import connect
from marque.lead.v1 import lead_service_pb2, lead_service_pb2_grpc

async with connect("marque.example.com:443", token, secure=True) as channel:
    stub = lead_service_pb2_grpc.LeadServiceStub(channel)
    reply = await stub.GetLead(lead_service_pb2.GetLeadRequest(...), timeout=5)
```

The channel carries the bearer token on every call, retries UNAVAILABLE with exponential
backoff (safe because every mutating Marque call carries a `request_id`), balances
round_robin over all addresses of a `dns:///` name and keeps the connection alive. `token`
may be a callable returning the current token, so a backend can rotate tokens without
re-creating channels. Use `bearer(token)` as per-call `metadata=` when one channel serves
several end users.

Only grpcio and the generated stubs are needed: this module does not depend on the
platform's server runtime.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc.aio import ClientCallDetails, Metadata

__all__ = ["SERVICE_CONFIG", "Token", "bearer", "connect"]

Token = str | Callable[[], str]

SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
    # Stop retrying when most recent calls fail, so an outage is not multiplied by 4.
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Per-call metadata carrying `token`: `await stub.GetLead(req, metadata=bearer(t))`."""
    return (("authorization", f"Bearer {token}"),)


def _current(token: Token) -> str:
    return token() if callable(token) else token


class _BearerCredentials(grpc.AuthMetadataPlugin):
    """Call credentials for TLS channels (gRPC sends call credentials only over TLS)."""

    def __init__(self, token: Token) -> None:
        self._token = token

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        try:
            callback(bearer(_current(self._token)), None)
        except Exception as exc:  # reported to the caller as UNAUTHENTICATED/UNAVAILABLE
            callback((), exc)


class _BearerMetadata:
    """Adds the token as metadata on plaintext channels (local development, sidecar TLS),
    unless the call already carries an `authorization` of its own."""

    def __init__(self, token: Token) -> None:
        self._token = token

    def details(self, details: ClientCallDetails) -> ClientCallDetails:
        metadata = Metadata(*tuple(details.metadata)) if details.metadata else Metadata()
        if "authorization" not in metadata:
            metadata.add(*bearer(_current(self._token))[0])
        return ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, auth: _BearerMetadata) -> None:
        self._auth = auth

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._auth.details(details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, auth: _BearerMetadata) -> None:
        self._auth = auth

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._auth.details(details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, auth: _BearerMetadata) -> None:
        self._auth = auth

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._auth.details(details), requests)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, auth: _BearerMetadata) -> None:
        self._auth = auth

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._auth.details(details), requests)


def connect(
    target: str,
    token: Token | None = None,
    *,
    secure: bool = False,
    root_certificates: bytes | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A grpc.aio channel to Marque at `target` (`host:port` or `dns:///host:port`).

    - `token`: a JWT, or a callable returning the current one; None for public methods or
      when every call passes `metadata=bearer(...)`.
    - `secure`: TLS with the system roots (or `root_certificates`); the token then travels
      as call credentials. Plaintext otherwise, with the token as metadata.
    - `options`: extra channel arguments, appended after the defaults (later ones win).

    Create it inside the event loop that will use it (grpc.aio binds a channel to its loop)
    and close it with `await channel.close()` or `async with`.
    """
    channel_options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 300_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.primary_user_agent", "marque-python-client"),
        *options,
    ]
    if secure:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        if token is not None:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.metadata_call_credentials(_BearerCredentials(token))
            )
        return grpc.aio.secure_channel(target, credentials, options=channel_options)
    interceptors: list[Any] = []
    if token is not None:
        auth = _BearerMetadata(token)
        interceptors = [
            _UnaryUnary(auth),
            _UnaryStream(auth),
            _StreamUnary(auth),
            _StreamStream(auth),
        ]
    return grpc.aio.insecure_channel(target, options=channel_options, interceptors=interceptors)
