"""A thin, typed helper for backends outside the platform (mobile-app and mini-program BFFs).

```python
from marque.client import MarqueError, connect
from marque.lead.v1 import lead_service_pb2, lead_service_pb2_grpc

async with connect("marque.example.com:443", token, secure=True) as channel:
    stub = lead_service_pb2_grpc.LeadServiceStub(channel)
    reply = await stub.GetLead(lead_service_pb2.GetLeadRequest(...), timeout=5)
```

The channel
- carries the bearer token on every call (`token` may be a callable returning the current
  token, so a backend can rotate tokens without re-creating channels; a call's own
  `metadata=bearer(t)` wins, for one channel serving several end users);
- gives unary and client-streaming calls a deadline (`timeout`, 10 s) unless the call sets
  its own `timeout=`;
- retries UNAVAILABLE with exponential backoff (safe because every mutating Marque call
  carries a `request_id`), balances round_robin over all addresses of a `dns:///` name and
  keeps the connection alive;
- raises `MarqueError` (`marque.client.errors`) for a failed call: the status code and
  message with the decoded `ErrorInfo` reason, domain and metadata, the `BadRequest` field
  violations by path and the `RetryInfo` delay. It is a `grpc.aio.AioRpcError`.

Only grpcio, protobuf, googleapis-common-protos and the generated stubs are needed: this
module does not depend on the platform's server runtime.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from grpc.aio import AioRpcError, ClientCallDetails, Metadata

from marque.client.errors import MarqueError, decode

__all__ = [
    "DEFAULT_TIMEOUT",
    "SERVICE_CONFIG",
    "MarqueError",
    "Token",
    "bearer",
    "connect",
    "decode",
]

Token = str | Callable[[], str]

# Seconds: the deadline of unary and client-streaming calls that set none (as mesh.client's
# MARQUE_CLIENT_TIMEOUT). Server streams are watches and get none.
DEFAULT_TIMEOUT = 10.0

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


class _Calls:
    """What every call of a channel gets: the token (unless the call carries its own
    `authorization`) and, for calls with a single response, the default deadline."""

    def __init__(self, token: Token | None, timeout: float | None) -> None:
        self._token = token
        self._timeout = timeout

    def details(self, details: ClientCallDetails, *, unary_response: bool) -> ClientCallDetails:
        metadata = Metadata(*tuple(details.metadata)) if details.metadata else Metadata()
        if self._token is not None and "authorization" not in metadata:
            metadata.add(*bearer(_current(self._token))[0])
        timeout = details.timeout
        if timeout is None and unary_response:
            timeout = self._timeout
        return ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )


async def _decoded(call: Any) -> Any:
    """Wait for a single-response call; its failure as a MarqueError."""
    try:
        await call
    except AioRpcError as e:
        raise decode(e) from None
    return call


async def _decoded_stream(call: Any) -> AsyncIterator[Any]:
    try:
        async for item in call:
            yield item
    except AioRpcError as e:
        raise decode(e) from None


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, calls: _Calls) -> None:
        self._calls = calls

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await _decoded(
            await continuation(self._calls.details(details, unary_response=True), request)
        )


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, calls: _Calls) -> None:
        self._calls = calls

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(self._calls.details(details, unary_response=False), request)
        return _decoded_stream(call)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, calls: _Calls) -> None:
        self._calls = calls

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await _decoded(
            await continuation(self._calls.details(details, unary_response=True), requests)
        )


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, calls: _Calls) -> None:
        self._calls = calls

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        call = await continuation(self._calls.details(details, unary_response=False), requests)
        return _decoded_stream(call)


def connect(
    target: str,
    token: Token | None = None,
    *,
    secure: bool = False,
    root_certificates: bytes | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A grpc.aio channel to Marque at `target` (`host:port` or `dns:///host:port`).

    - `token`: a JWT, or a callable returning the current one; None for public methods or
      when every call passes `metadata=bearer(...)`.
    - `secure`: TLS with the system roots (or `root_certificates`). Plaintext otherwise
      (local development, or a sidecar that does TLS).
    - `timeout`: seconds, the deadline of unary and client-streaming calls that set no
      `timeout=` of their own; None for none.
    - `options`: extra channel arguments, appended after the defaults (later ones win).

    Create it inside the event loop that will use it (grpc.aio binds a channel to its loop)
    and close it with `await channel.close()` or `async with`. Server streams of this
    channel are read with `async for`.
    """
    channel_options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 300_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.primary_user_agent", "marque-python-client"),
        *options,
    ]
    calls = _Calls(token, timeout)
    interceptors: list[Any] = [
        _UnaryUnary(calls),
        _UnaryStream(calls),
        _StreamUnary(calls),
        _StreamStream(calls),
    ]
    if secure:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        return grpc.aio.secure_channel(
            target, credentials, options=channel_options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(target, options=channel_options, interceptors=interceptors)
