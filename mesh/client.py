"""Channels to other services: `stub = LeadServiceStub(channel("lead"))`.

What gRPC does itself (retries, round_robin, per-method timeouts, keepalive) is configured,
not re-implemented: mesh/channel_config.py. The service token: mesh/service_token.py.

What grpcio lacks is added by four small client interceptors, one per call kind:
- deadline propagation: the outgoing timeout is min(own timeout, time left on the call being
  served, from `mesh.chain.current_deadline()`); a call served without a deadline passes on
  only its own timeout, never the "infinite" remainder; an already expired call fails fast
  with DEADLINE_EXCEEDED without touching the network;
- identity: `authorization: Bearer <service token>` of this process's service (minted with
  `mesh.keys`, cached, renewed before expiry) and `x-marque-on-behalf-of: <caller.ref>` of
  the original caller;
- tracing: when the current span is sampled (or there is none, so the sampler decides on a
  new root), opentelemetry-instrumentation-grpc's own aio interceptor makes the standard
  client span; when it is not sampled only the W3C `traceparent` is injected, so the
  many unsampled calls cost a header and not a span (client streams always take the
  header-only path: the instrumentation would deadlock their `call.write()` API);
- metrics: `grpc_client_started_total`, `grpc_client_handled_total`,
  `grpc_client_handling_seconds` (go-grpc-prometheus names; mesh/client_metrics.py).

Unary calls (and client streams) get a default timeout (`MARQUE_CLIENT_TIMEOUT`, 10 s) when
neither the call nor a per-method override sets one; server and bidi streams get none by
default, since they are long-lived watches (they still inherit the served call's deadline).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
import weakref
from collections.abc import Mapping
from typing import Any

import grpc
from grpc.aio import ClientCallDetails, Metadata
from opentelemetry import propagate

from mesh import config as mesh_config
from mesh.catalog import BY_NAME
from mesh.chain import current_deadline
from mesh.channel_config import (
    DEFAULT_TIMEOUT,
    RETRY_POLICY,
    RETRY_THROTTLING,
    channel_options,
    default_timeout_from_env,
    service_config,
)
from mesh.client_metrics import measured_stream, measured_unary
from mesh.identity import Kind, current_caller
from mesh.metrics import client_method
from mesh.service_token import (
    SERVICE_TOKEN_RENEW_BEFORE,
    SERVICE_TOKEN_TTL,
    ServiceToken,
    StaticToken,
    TokenSource,
    service_token,
    token_source,
)
from mesh.tracing import attach_pending, current_span_context

__all__ = [
    "BIDI_STREAM",
    "CLIENT_STREAM",
    "DEFAULT_TIMEOUT",
    "MAX_PROPAGATED_SECONDS",
    "ON_BEHALF_OF",
    "RETRY_POLICY",
    "RETRY_THROTTLING",
    "SERVER_STREAM",
    "SERVICE_TOKEN_RENEW_BEFORE",
    "SERVICE_TOKEN_TTL",
    "UNARY",
    "ServiceToken",
    "StaticToken",
    "TokenSource",
    "channel",
    "channel_options",
    "channel_to",
    "close_channels",
    "default_timeout_from_env",
    "interceptors",
    "service_config",
    "service_token",
]

ON_BEHALF_OF = "x-marque-on-behalf-of"
# A served deadline further away than this is treated as "no deadline" (defence in depth
# against a huge `time_remaining()` leaking through).
MAX_PROPAGATED_SECONDS = 24 * 3600.0

UNARY, CLIENT_STREAM, SERVER_STREAM, BIDI_STREAM = (
    "unary",
    "client_stream",
    "server_stream",
    "bidi_stream",
)


# -- deadline -------------------------------------------------------------------------------


def _deadline_exceeded(method: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        Metadata(),
        Metadata(),
        details=f"deadline of the served call expired before calling {method}",
        debug_error_string=None,
    )


# -- the interceptors -----------------------------------------------------------------------

# How an outgoing call is traced.
_NO_TRACING, _INJECT_ONLY, _CLIENT_SPAN = 0, 1, 2

_otel: list[Any] = []


def _otel_interceptors() -> list[Any]:
    """OpenTelemetry's four aio client interceptors, created once (their tracer follows the
    global TracerProvider, so set-up order does not matter)."""
    if not _otel:
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        _otel.extend(aio_client_interceptors())
    return _otel


def _method_name(details: ClientCallDetails) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


class _Core:
    """Everything the interceptors do, shared by the four per-kind interceptors of a channel.

    One interceptor layer per call, not one per concern: each grpc.aio interceptor layer
    costs several microseconds of task and call-object machinery.
    """

    def __init__(
        self,
        *,
        token: TokenSource | None,
        default_timeout: float | None,
        timeouts: Mapping[str, float],
        tracing: bool,
    ) -> None:
        self.token = token
        self.default_timeout = default_timeout
        self.timeouts = dict(timeouts)
        self.tracing = tracing

    def trace_mode(self, *, spans_allowed: bool = True) -> int:
        """A real client span when the current span is sampled, or when there is none (the
        sampler then decides on a new root); only the header when it is not sampled."""
        if not self.tracing:
            return _NO_TRACING
        ctx = current_span_context()
        if ctx.is_valid and not ctx.trace_flags.sampled:
            return _INJECT_ONLY
        return _CLIENT_SPAN if spans_allowed else _INJECT_ONLY

    def _own_timeout(self, method: str, requested: float | None, grpc_type: str) -> float | None:
        if requested is not None:
            return requested
        path = method.lstrip("/")
        override = self.timeouts.get(path)
        if override is None:
            override = self.timeouts.get(path.partition("/")[0])
        if override is not None:
            return override
        return self.default_timeout if grpc_type in (UNARY, CLIENT_STREAM) else None

    def prepare(
        self, details: ClientCallDetails, grpc_type: str, *, inject: bool
    ) -> ClientCallDetails:
        """Deadline, identity and (if `inject`) trace context, in one new metadata."""
        method = _method_name(details)
        timeout = self._own_timeout(method, details.timeout, grpc_type)
        deadline = current_deadline()
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _deadline_exceeded(method)
            if remaining < MAX_PROPAGATED_SECONDS:
                timeout = remaining if timeout is None else min(timeout, remaining)

        metadata = Metadata(*tuple(details.metadata)) if details.metadata else Metadata()
        if self.token is not None and "authorization" not in metadata:
            metadata.add(*self.token.header())
        caller = current_caller()
        if caller.kind is not Kind.ANONYMOUS and ON_BEHALF_OF not in metadata:
            metadata.add(ON_BEHALF_OF, caller.ref)
        if inject:
            attach_pending()
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            for key, value in carrier.items():
                metadata.add(key, value)
        return ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )

    # Module functions of mesh/client_metrics.py, looked up on the core as before.
    measured_unary = staticmethod(measured_unary)
    measured_stream = staticmethod(measured_stream)


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, core: _Core) -> None:
        self._core = core

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        core = self._core
        mode = core.trace_mode()
        new = core.prepare(details, UNARY, inject=mode == _INJECT_ONLY)
        measure = client_method(UNARY, _method_name(details))
        if mode == _CLIENT_SPAN:
            inner = functools.partial(core.measured_unary, continuation, measure)
            return await _otel_interceptors()[0].intercept_unary_unary(inner, new, request)
        return await core.measured_unary(continuation, measure, new, request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, core: _Core) -> None:
        self._core = core

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        core = self._core
        mode = core.trace_mode()
        new = core.prepare(details, SERVER_STREAM, inject=mode == _INJECT_ONLY)
        measure = client_method(SERVER_STREAM, _method_name(details))
        if mode == _CLIENT_SPAN:
            inner = functools.partial(core.measured_stream, continuation, measure)
            return await _otel_interceptors()[1].intercept_unary_stream(inner, new, request)
        return await core.measured_stream(continuation, measure, new, request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, core: _Core) -> None:
        self._core = core

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        # Client streams only propagate the trace context: OpenTelemetry's interceptor awaits
        # the end of the call before handing it out, which deadlocks the `call.write()` API.
        core = self._core
        mode = core.trace_mode(spans_allowed=False)
        new = core.prepare(details, CLIENT_STREAM, inject=mode == _INJECT_ONLY)
        measure = client_method(CLIENT_STREAM, _method_name(details))
        return await core.measured_stream(continuation, measure, new, requests)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, core: _Core) -> None:
        self._core = core

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        core = self._core
        mode = core.trace_mode()
        new = core.prepare(details, BIDI_STREAM, inject=mode == _INJECT_ONLY)
        measure = client_method(BIDI_STREAM, _method_name(details))
        if mode == _CLIENT_SPAN:
            inner = functools.partial(core.measured_stream, continuation, measure)
            return await _otel_interceptors()[3].intercept_stream_stream(inner, new, requests)
        return await core.measured_stream(continuation, measure, new, requests)


def interceptors(
    *,
    token: TokenSource | None,
    default_timeout: float | None,
    timeouts: Mapping[str, float],
    tracing: bool = True,
) -> list[Any]:
    """The mesh's client interceptors: one per call kind, sharing one core."""
    core = _Core(token=token, default_timeout=default_timeout, timeouts=timeouts, tracing=tracing)
    return [_UnaryUnary(core), _UnaryStream(core), _StreamUnary(core), _StreamStream(core)]


# -- channels -------------------------------------------------------------------------------

_channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


def _own_service_name() -> str | None:
    """This process's service: `MARQUE_SERVICE_NAME`, else `OTEL_SERVICE_NAME` when it names
    a catalog service (the Kubernetes manifests set the latter per Deployment)."""
    name = os.environ.get("MARQUE_SERVICE_NAME", "").strip()
    if name:
        return name
    otel = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    return otel if otel in BY_NAME else None


def channel_to(
    target: str,
    *,
    service_name: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
    timeouts: Mapping[str, float] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    tracing: bool = True,
) -> grpc.aio.Channel:
    """A channel to `target` (`127.0.0.1:50051`, `dns:///lead.marque:50051`), cached per
    target, arguments and event loop (grpc.aio channels belong to the loop that made them).

    - `service_name`: the calling service, for its service token; default
      `MARQUE_SERVICE_NAME` (set by the launcher), else `OTEL_SERVICE_NAME` if it is a
      catalog service. With none and no `token`, calls carry no authorization (scripts).
    - `token`: an explicit bearer token instead of the service token.
    - `timeout`: default for unary calls (else `MARQUE_CLIENT_TIMEOUT`, 10 s);
      `timeouts`: per `package.Service/Method` or `package.Service` overrides.
    - `credentials`: TLS channel credentials; plaintext otherwise (loopback, or a sidecar
      mesh that does mTLS).

    The channel lives as long as the loop; `await close_channels()` closes them on shutdown.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "mesh.client channels must be created inside the running event loop "
            "(in a service's startup or a handler), since grpc.aio binds them to it"
        ) from None
    service_name = service_name or _own_service_name()
    frozen_timeouts = tuple(sorted((timeouts or {}).items()))
    key = (target, service_name, token, timeout, frozen_timeouts, credentials, tracing)
    per_loop = _channels.setdefault(loop, {})
    existing = per_loop.get(key)
    if existing is not None:
        return existing

    made = _new_channel(
        target,
        service_name=service_name,
        token=token,
        timeout=timeout,
        timeouts=timeouts,
        credentials=credentials,
        tracing=tracing,
    )
    per_loop[key] = made
    return made


def _new_channel(
    target: str,
    *,
    service_name: str | None,
    token: str | None,
    timeout: float | None,
    timeouts: Mapping[str, float] | None,
    credentials: grpc.ChannelCredentials | None,
    tracing: bool,
) -> grpc.aio.Channel:
    """A channel `channel_to` has not cached yet: its token source, interceptors and
    options; made once per key, so none of this is on a call's path."""
    chain = interceptors(
        token=token_source(token, service_name),
        default_timeout=default_timeout_from_env() if timeout is None else timeout,
        timeouts=timeouts or {},
        tracing=tracing,
    )
    options = channel_options(timeouts, user_agent=f"marque-mesh/{service_name or 'client'}")
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options, interceptors=chain)
    return grpc.aio.insecure_channel(target, options=options, interceptors=chain)


def channel(service: str, **kwargs: Any) -> grpc.aio.Channel:
    """A channel to a platform service by name; its address comes from
    `MARQUE_<SERVICE>_ADDR` or the local port table (`mesh.config.service_address`)."""
    return channel_to(mesh_config.service_address(service), **kwargs)


async def close_channels(grace: float | None = None) -> None:
    """Close this loop's cached channels (service shutdown, end of a test)."""
    loop = asyncio.get_running_loop()
    per_loop = _channels.pop(loop, {})
    await asyncio.gather(*(c.close(grace) for c in per_loop.values()), return_exceptions=True)
