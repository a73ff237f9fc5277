"""Marque's refusals, decoded: `MarqueError` with the `google.rpc.Status` details.

A refused call carries a `google.rpc.Status` in the `grpc-status-details-bin` trailer:
an `ErrorInfo` always (`reason`, `domain`, `metadata`), a `BadRequest` naming the bad fields
by path, and a `RetryInfo` when retrying later may help. Channels from
`marque.client.connect()` raise `MarqueError` for every failed unary and client-streaming
call (and while iterating a server stream); for other channels, `decode(error)` turns any
`grpc.RpcError` into one.

```python
try:
    await stub.SubmitLead(request, timeout=5)
except MarqueError as e:
    if e.code() is grpc.StatusCode.INVALID_ARGUMENT:
        print(e.reason, e.field_violations)  # REQUEST_ID_REUSED, {"lead.customer.mobile": ...}
```

`MarqueError` is a `grpc.aio.AioRpcError`, so code catching that (or `grpc.RpcError`) keeps
working, and `code()`, `details()`, `trailing_metadata()` answer as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc.aio import AioRpcError, Metadata

__all__ = ["DETAILS_KEY", "MarqueError", "decode"]

DETAILS_KEY = "grpc-status-details-bin"

# The detail types of google/rpc/error_details.proto, by full name.
_DETAIL_TYPES: dict[str, type[pb_message.Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.RetryInfo,
        error_details_pb2.PreconditionFailure,
        error_details_pb2.QuotaFailure,
        error_details_pb2.ResourceInfo,
        error_details_pb2.RequestInfo,
        error_details_pb2.Help,
        error_details_pb2.LocalizedMessage,
        error_details_pb2.DebugInfo,
    )
}


class MarqueError(AioRpcError):
    """A failed call with its decoded details.

    - `code()`: the `grpc.StatusCode`; `message`: the status message (also `details()`);
    - `reason`, `domain`, `metadata`: the `ErrorInfo` (`""`, `""`, `{}` without one);
    - `field_violations`: `BadRequest` field path -> description, in the server's order
      (two descriptions of one path are joined with "; ");
    - `retry_delay`: seconds from `RetryInfo`, else None;
    - `details_list`: every decoded detail message (unknown types stay `Any`);
    - `status`: the `google.rpc.Status`, or None when the server sent none.
    """

    reason: str
    domain: str
    metadata: Mapping[str, str]
    field_violations: Mapping[str, str]
    retry_delay: float | None
    details_list: tuple[Any, ...]
    status: Any

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        initial_metadata: Metadata | None = None,
        trailing_metadata: Metadata | None = None,
        debug_error_string: str | None = None,
    ) -> None:
        super().__init__(
            code,
            initial_metadata if initial_metadata is not None else Metadata(),
            trailing_metadata if trailing_metadata is not None else Metadata(),
            message,
            debug_error_string,
        )
        self.message = message
        self.status = _status_of(trailing_metadata)
        self.details_list = tuple(_unpack(a) for a in self.status.details) if self.status else ()
        info = _first(self.details_list, error_details_pb2.ErrorInfo)
        self.reason = info.reason if info else ""
        self.domain = info.domain if info else ""
        self.metadata = dict(info.metadata) if info else {}
        violations: dict[str, str] = {}
        for detail in self.details_list:
            if isinstance(detail, error_details_pb2.BadRequest):
                for v in detail.field_violations:
                    known = violations.get(v.field)
                    violations[v.field] = f"{known}; {v.description}" if known else v.description
        self.field_violations = violations
        retry = _first(self.details_list, error_details_pb2.RetryInfo)
        self.retry_delay = (
            retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            if retry is not None and retry.HasField("retry_delay")
            else None
        )

    def __str__(self) -> str:
        parts = [f"{self.code().name}: {self.message}"]
        if self.reason:
            parts.append(f"reason={self.reason}")
        if self.field_violations:
            parts.append(
                "fields=" + ", ".join(f"{f}: {d}" for f, d in self.field_violations.items())
            )
        return " ".join(parts)

    __repr__ = __str__

    def __reduce__(self) -> Any:  # picklable, e.g. across a process pool
        return (
            _rebuild,
            (self.code(), self.message, tuple(self.trailing_metadata() or ())),
        )


def _rebuild(code: grpc.StatusCode, message: str, trailers: tuple[Any, ...]) -> MarqueError:
    return MarqueError(code, message, trailing_metadata=Metadata(*trailers))


def decode(error: grpc.RpcError) -> MarqueError:
    """`error` (a grpc.aio or a sync grpc call error) as a MarqueError; unchanged if it is one."""
    if isinstance(error, MarqueError):
        return error
    code = getattr(error, "code", None)
    status_code = code() if callable(code) else grpc.StatusCode.UNKNOWN
    details = getattr(error, "details", None)
    message = (details() if callable(details) else None) or ""
    trailing = getattr(error, "trailing_metadata", None)
    initial = getattr(error, "initial_metadata", None)
    debug = getattr(error, "debug_error_string", None)
    return MarqueError(
        status_code,
        message,
        initial_metadata=_metadata(initial() if callable(initial) else None),
        trailing_metadata=_metadata(trailing() if callable(trailing) else None),
        debug_error_string=debug() if callable(debug) else None,
    )


def _metadata(value: Any) -> Metadata:
    if value is None:
        return Metadata()
    if isinstance(value, Metadata):
        return value
    return Metadata(*((k, v) for k, v in value))


def _status_of(trailing: Metadata | None) -> Any:
    if not trailing:
        return None
    for key, value in trailing:
        if key == DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except pb_message.DecodeError:
                return None
            return status
    return None


def _unpack(packed: Any) -> Any:
    name = packed.type_url.rpartition("/")[2]
    cls = _DETAIL_TYPES.get(name)
    if cls is None:
        return packed
    detail = cls()
    try:
        packed.Unpack(detail)
    except pb_message.DecodeError:
        return packed
    return detail


def _first(details: tuple[Any, ...], cls: type[Any]) -> Any:
    return next((d for d in details if isinstance(d, cls)), None)
