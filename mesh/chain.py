"""The per-method call chain, built once per method at start-up.

Order: tracing → metrics → logging → auth → validation → error mapping → limit. The layers
are inlined into one coroutine per method and RPC kind (each extra coroutine level costs
several µs per call in a busy server), so a call pays no grpc interceptor machinery and no
per-call look-ups; only sampled calls create spans (see mesh/tracing.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from mesh.auth import Authenticator, Policy, set_on_behalf_of
from mesh.dberrors import loggable
from mesh.door import REFUSALS, deserializer, reject
from mesh.errors import DeadlineExceeded, DomainError, ResourceExhausted
from mesh.identity import Caller, set_caller
from mesh.metrics import SERVER, MethodStats, grpc_type
from mesh.tracing import ServerSpan, Tracing
from mesh.validation import validate

log = logging.getLogger("mesh.chain")
access_log = logging.getLogger("mesh.access")

_OK = grpc.StatusCode.OK
_INTERNAL = grpc.StatusCode.INTERNAL
_CANCELLED = grpc.StatusCode.CANCELLED
# A domain error names its code (mesh/errors.py knows no grpc); the chain turns it into one.
_STATUS: dict[str, grpc.StatusCode] = {c.name: c for c in grpc.StatusCode}
_UNKNOWN = grpc.StatusCode.UNKNOWN
# grpc reports "no deadline" as None or as a huge remaining time; beyond this it is none.
_NO_DEADLINE_AFTER = 10_000_000.0
_OVERLOAD_RETRY_AFTER = 0.5

_deadline: ContextVar[float | None] = ContextVar("marque_deadline", default=None)
# The call's metadata as grpc built it to look the method handler up (see
# mesh.server._ChainHandlers): grpc builds the tuple anew on every invocation_metadata()
# call, ~14k instructions, a third of the chain's own cost. Each call is its own task, so
# the value seen is always this call's; unset, the chain asks grpc.
_lookup_metadata: ContextVar[tuple[Any, ...] | None] = ContextVar(
    "marque_lookup_metadata", default=None
)


def note_metadata(metadata: tuple[Any, ...]) -> None:
    """Keep the metadata grpc handed to the handler look-up, for this call's chain."""
    _lookup_metadata.set(metadata)


def current_deadline() -> float | None:
    """Absolute `time.monotonic()` deadline of the call being served; None without one."""
    return _deadline.get()


def _set_deadline(context: grpc.aio.ServicerContext) -> None:
    """Note the call's deadline; one already passed is not served (DEADLINE_EXCEEDED)."""
    remaining = context.time_remaining()
    # Each call is its own task, started without a deadline: only one to note is set.
    if remaining is not None and remaining <= _NO_DEADLINE_AFTER:
        if remaining <= 0:  # it waited out its deadline: the caller has given up
            raise DeadlineExceeded("deadline exceeded before the call was served")
        _deadline.set(time.monotonic() + remaining)


@dataclass
class Runtime:
    """What every method chain of one server shares."""

    service: str  # the Marque service name, for ErrorInfo.domain
    tracing: Tracing
    auth: Authenticator
    max_concurrency: int
    access_log: str  # "all", "sampled" or "errors"
    slow_call_seconds: float
    in_flight: list[int]  # server-wide [calls in flight], for shedding


def status_for(error: DomainError, service: str) -> grpc.Status:
    """The google.rpc.Status of a domain error: ErrorInfo always, BadRequest, RetryInfo."""
    details: list[Any] = [
        error_details_pb2.ErrorInfo(
            reason=error.reason, domain=f"marque.{service}", metadata=error.metadata
        )
    ]
    if error.field_violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.field_violations
                ]
            )
        )
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=error.retry_after))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)
        packed.append(item)
    status = status_pb2.Status(
        code=_STATUS[error.code].value[0], message=error.message, details=packed
    )
    return rpc_status.to_status(status)


async def _abort(context: grpc.aio.ServicerContext, status: grpc.Status) -> None:
    await context.abort(status.code, status.details, status.trailing_metadata)


def _code_of(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    """The code a servicer set itself (set_code/abort), else `default`."""
    try:
        code = context.code()
    except Exception:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        for c in grpc.StatusCode:
            if c.value[0] == code:
                return c
    return default


def _scan(context: grpc.aio.ServicerContext) -> tuple[Any, Any, Any, Any]:
    """(authorization, x-marque-on-behalf-of, traceparent, all metadata) in one pass;
    the metadata is returned too, for a sampled call's span, so it is built only once."""
    authorization = obo = parent = None
    noted = _lookup_metadata.get()
    metadata: Any = noted if noted is not None else (context.invocation_metadata() or ())
    for key, value in metadata:
        if key == "authorization":
            authorization = value
        elif key == "traceparent":
            parent = value
        elif key == "x-marque-on-behalf-of":
            obo = value
    return authorization, obo, parent, metadata


def _overloaded() -> ResourceExhausted:
    return ResourceExhausted(
        "server overloaded, retry later", reason="OVERLOADED", retry_after=_OVERLOAD_RETRY_AFTER
    )


class _Call:
    """Bookkeeping of one call; the chain's layers share it instead of nested frames."""

    __slots__ = ("caller", "code", "error", "start")

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.code = _OK
        self.caller: Caller | None = None
        self.error: BaseException | None = None  # an unexpected one, for the span


class MethodChain:
    """Wraps one servicer method handler with the whole chain."""

    def __init__(
        self,
        full_method: str,
        handler: grpc.RpcMethodHandler,
        policy: Policy,
        rt: Runtime,
        *,
        validate_stream: bool = True,
    ) -> None:
        service, _, method = full_method.lstrip("/").partition("/")
        self.full_method = full_method
        # False for methods declaring INVALID_STREAM_MESSAGE_DELIVER: the servicer checks rows.
        self.validate_stream = validate_stream
        self.handler = handler
        self.policy = policy
        self.rt = rt
        self.stats: MethodStats = SERVER.method(
            grpc_type(handler.request_streaming, handler.response_streaming), service, method
        )

    # -- the layers between metrics and the servicer ------------------------------------

    def _enter(self, call: _Call, authorization: Any, obo: Any) -> None:
        """Auth: binds the caller (and the audit-only on-behalf-of) for the servicer."""
        caller = self.rt.auth.authenticate(
            authorization if isinstance(authorization, str) else None, self.policy
        )
        call.caller = caller
        set_caller(caller)
        if obo is not None:
            set_on_behalf_of(obo if isinstance(obo, str) else obo.decode())

    def _acquire(self) -> None:
        box = self.rt.in_flight
        if box[0] >= self.rt.max_concurrency:
            raise _overloaded()
        box[0] += 1
        self.stats.in_flight[0] += 1

    def _release(self) -> None:
        self.rt.in_flight[0] -= 1
        self.stats.in_flight[0] -= 1

    async def _fail(
        self, call: _Call, context: grpc.aio.ServicerContext, error: BaseException
    ) -> None:
        """Error mapping: always ends the call by raising (abort or re-raise)."""
        if isinstance(error, DomainError):
            call.code = _STATUS[error.code]
            await _abort(context, status_for(error, self.rt.service))
        if isinstance(error, asyncio.CancelledError):
            call.code = _CANCELLED
            raise error
        if isinstance(error, grpc.aio.AbortError):  # the servicer aborted itself
            call.code = _code_of(context, _UNKNOWN)
            raise error
        call.code = _INTERNAL
        call.error = error
        # Logged once, here; a database error without its message (mesh/dberrors.py).
        log.error("unhandled error in %s", self.full_method, exc_info=loggable(error))
        await context.abort(_INTERNAL, "internal error")

    def _finish(self, call: _Call, span: ServerSpan | None) -> None:
        """Metrics, the span and the access log of a finished call."""
        elapsed = time.perf_counter() - call.start
        code = call.code
        self.stats.done(code, elapsed)
        if span is not None:
            span.end(code, call.error)
        mode = self.rt.access_log
        if (
            mode == "all"
            or code is not _OK
            or elapsed >= self.rt.slow_call_seconds
            or (span is not None and mode == "sampled")
        ):
            level = logging.WARNING if code is _INTERNAL else logging.INFO
            if not access_log.isEnabledFor(level):
                return
            caller = call.caller
            # makeRecord + handle is Logger.log without findCaller's walk up the stack.
            record = access_log.makeRecord(
                access_log.name,
                level,
                __file__,
                0,
                "rpc %s %s",
                (self.full_method, code.name),
                None,
                extra={
                    "grpc_method": self.full_method,
                    "grpc_code": code.name,
                    "duration_ms": round(elapsed * 1000, 3),
                    "caller_kind": caller.kind.value if caller else "unauthenticated",
                    "caller_ref": caller.ref if caller else "",
                },
            )
            access_log.handle(record)

    # -- one handler per RPC kind: the tracing gate first, then the layers in line -------

    def _unary(self) -> Callable[..., Awaitable[Any]]:
        behavior: Any = self.handler.unary_unary or self.handler.stream_unary
        request_streaming = self.handler.request_streaming
        stats = self.stats
        # The concurrency limit in line (see _acquire), the most frequent path.
        server_box, service_box, limit = self.rt.in_flight, stats.in_flight, self.rt.max_concurrency
        tracing = self.rt.tracing
        decide = tracing.decide
        full_method = self.full_method

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            authorization, obo, parent, metadata = _scan(context)
            span = ServerSpan(tracing, full_method, context, metadata) if decide(parent) else None
            call = _Call()
            stats.started += 1
            try:
                if REFUSALS and not request_streaming:  # refused as read (mesh/door.py)
                    reject(request)
                self._enter(call, authorization, obo)
                if request_streaming:
                    request = self._checked(request)
                else:
                    stats.received += 1
                    validate(request)
                if server_box[0] >= limit:
                    raise _overloaded()
                server_box[0] += 1
                service_box[0] += 1
                try:
                    _set_deadline(context)
                    response = await behavior(request, context)
                finally:
                    server_box[0] -= 1
                    service_box[0] -= 1
                if response is not None:
                    stats.sent += 1
                code = context.code()  # a servicer may set_code() and return
                if code is not None and code is not _OK:
                    call.code = _code_of(context, _UNKNOWN)
                return response
            except BaseException as error:
                await self._fail(call, context, error)
            finally:
                self._finish(call, span)

        return handle

    def _stream(self) -> Callable[..., AsyncIterator[Any]]:
        behavior: Any = self.handler.unary_stream or self.handler.stream_stream
        request_streaming = self.handler.request_streaming
        stats = self.stats
        tracing = self.rt.tracing
        decide = tracing.decide
        full_method = self.full_method

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            authorization, obo, parent, metadata = _scan(context)
            span = ServerSpan(tracing, full_method, context, metadata) if decide(parent) else None
            call = _Call()
            stats.started += 1
            try:
                if REFUSALS and not request_streaming:  # refused as read (mesh/door.py)
                    reject(request)
                self._enter(call, authorization, obo)
                if request_streaming:
                    request = self._checked(request)
                else:
                    stats.received += 1
                    validate(request)
                self._acquire()
                try:
                    _set_deadline(context)
                    result = behavior(request, context)
                    if hasattr(result, "__aiter__"):
                        async for response in result:
                            stats.sent += 1
                            yield response
                    else:  # a servicer writing with context.write()
                        await result
                finally:
                    self._release()
            except BaseException as error:
                if isinstance(error, GeneratorExit):
                    call.code = _CANCELLED
                    raise
                await self._fail(call, context, error)
            finally:
                self._finish(call, span)

        return handle

    async def _checked(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Counts and validates every streamed request message."""
        stats = self.stats
        check = self.validate_stream
        async for message in requests:
            stats.received += 1
            if check:
                validate(message)
            yield message

    def build(self) -> grpc.RpcMethodHandler:
        """The wrapped handler, as the generated code's factory would have made it."""
        h = self.handler
        behavior: Any = self._stream() if h.response_streaming else self._unary()
        factory: Any = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(h.request_streaming, h.response_streaming)]
        return factory(
            behavior,
            request_deserializer=deserializer(h.request_deserializer),
            response_serializer=h.response_serializer,
        )
