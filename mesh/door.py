"""The door: request bodies refused while grpc decodes them, before any layer of the chain.

grpc decodes a request with the method's deserializer before our handler runs; a body that
is not valid protobuf (or a string field that is not UTF-8) used to fail there, as UNKNOWN
with a traceback logged per call. `deserializer()` wraps that decoding once per method. A
body it cannot decode, or one carrying a value no request may carry (mesh/wellformed.py:
NUL in a string, a Timestamp or Duration out of range), is replaced by a *refusal marker*:
an empty instance of the request type that `refusal()` recognises. So:

- a unary request that is a marker is INVALID_ARGUMENT before auth, whoever calls: the
  body was refused as it was read, like a malformed frame, and a caller cannot be judged
  on a body that cannot be read (the chain, mesh/chain.py);
- in a client stream the marker takes the message's place: `mesh.validation.validate()`
  fails the stream at it, and a method that receives its invalid messages
  (INVALID_STREAM_MESSAGE_DELIVER) sees it rejected by `validate()`/`violations()`, so a
  bulk import rejects that row, with its row number, and goes on.

Markers live for the whole process (one per request type, problem and field path, at most
`MAX_MARKERS`; beyond that one per type and problem without the path), so their identity
is stable and `refusal()` is one dict look-up. Treat them as read-only.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.unknown_fields import UnknownFieldSet

from mesh import wellformed
from mesh.errors import FieldViolation, InvalidArgument

log = logging.getLogger("mesh.door")

UNDECODABLE = "UNDECODABLE_REQUEST"
INVALID = "INVALID_REQUEST"
MAX_MARKERS = 1024
_MAX_DEPTH = 32  # nesting the undecodable-field locator follows


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a body was refused: an ErrorInfo reason and the field at fault ("" for the
    whole body)."""

    reason: str
    violation: FieldViolation

    def error(self) -> InvalidArgument:
        """The InvalidArgument the caller receives."""
        v = self.violation
        what = "undecodable request" if self.reason == UNDECODABLE else "invalid request"
        return InvalidArgument(
            f"{what}: {v.field or 'body'}: {v.description}",
            reason=self.reason,
            field_violations=[v] if v.field else [],
        )


# id(marker) -> its refusal; the markers are kept alive by _MARKERS, so ids stay unique.
REFUSALS: dict[int, Refusal] = {}
_MARKERS: dict[tuple[str, Refusal], Message] = {}


def refusal(message: Any) -> Refusal | None:
    """The refusal a message stands for, None for a message that was decoded."""
    return REFUSALS.get(id(message)) if REFUSALS else None


def reject(message: Any) -> None:
    """Raise the InvalidArgument of a refusal marker; nothing for any other message."""
    found = REFUSALS.get(id(message))
    if found is not None:
        raise found.error()


def marker(cls: type[Message], reason: str, field: str, description: str) -> Message:
    """The (shared, read-only) marker of one refusal of a request type."""
    name = cls.DESCRIPTOR.full_name
    wanted = Refusal(reason, FieldViolation(field, description))
    found = _MARKERS.get((name, wanted))
    if found is not None:
        return found
    if len(_MARKERS) >= MAX_MARKERS:  # a flood of distinct paths: keep memory bounded
        wanted = Refusal(reason, FieldViolation("", description))
        found = _MARKERS.get((name, wanted))
        if found is not None:
            return found
    made = cls()
    _MARKERS[(name, wanted)] = made
    REFUSALS[id(made)] = wanted
    return made


def deserializer(decode: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`decode` (a generated `Request.FromString`) returning a marker instead of raising,
    and for bodies with values no request may carry; unchanged if it is not a message
    class's parser."""
    cls = getattr(decode, "__self__", None)
    if decode is None or not (isinstance(cls, type) and issubclass(cls, Message)):
        return decode
    descriptor = cls.DESCRIPTOR
    nul = wellformed.nul_finder(descriptor)
    times = wellformed.time_check(descriptor)

    def deserialize(data: bytes) -> Any:
        try:
            message = decode(data)
        except Exception:
            field, description = _located(descriptor, data)
            log.debug("undecodable %s body", descriptor.full_name)
            return marker(cls, UNDECODABLE, field, description)
        # A NUL character is a zero byte in UTF-8; most bodies have none at all. (An int
        # needle is a plain memchr; a bytes needle costs seven times more.)
        if nul is not None and 0 in data and (problem := nul(message)) is not None:
            return marker(cls, INVALID, *problem)
        if times is not None and (problem := times(message, data)) is not None:
            return marker(cls, INVALID, *problem)
        return message

    return deserialize


def guarded_generic(generic: Any) -> Any:
    """A generated generic handler of a service outside the chain (health, reflection)
    with every method guarded by the door; unchanged if it is not one."""
    service, handlers = getattr(generic, "_name", None), getattr(generic, "_method_handlers", None)
    if not isinstance(service, str) or not isinstance(handlers, dict):
        return generic
    return grpc.method_handlers_generic_handler(
        service, {path.rpartition("/")[2]: guarded(h) for path, h in handlers.items()}
    )


def guarded(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A method handler outside the chain decoding through the door: a refused body is
    INVALID_ARGUMENT (a plain status: no chain, no details) instead of a traceback."""
    decode = deserializer(handler.request_deserializer)
    inner: Any = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    asynchronous = inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)
    if decode is handler.request_deserializer or not asynchronous:
        return handler  # (a sync servicer would need sync wrappers; the mesh has none)
    if handler.request_streaming:

        async def checked(requests: Any, context: Any) -> Any:
            async for message in requests:
                await _abort_if_refused(message, context)
                yield message

        def args(request: Any, context: Any) -> Any:
            return checked(request, context)
    else:

        def args(request: Any, context: Any) -> Any:
            return request

    async def unary(request: Any, context: Any) -> Any:
        if not handler.request_streaming:
            await _abort_if_refused(request, context)
        return await inner(args(request, context), context)

    async def streaming(request: Any, context: Any) -> Any:
        if not handler.request_streaming:
            await _abort_if_refused(request, context)
        result = inner(args(request, context), context)
        if hasattr(result, "__aiter__"):
            async for response in result:
                yield response
        else:  # a servicer writing with context.write()
            await result

    factory: Any = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return factory(
        streaming if handler.response_streaming else unary,
        request_deserializer=decode,
        response_serializer=handler.response_serializer,
    )


async def _abort_if_refused(message: Any, context: Any) -> None:
    found = REFUSALS.get(id(message))
    if found is not None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, found.error().message)


def _located(descriptor: Any, data: bytes) -> tuple[str, str]:
    try:
        return locate(descriptor, data)
    except Exception:  # the locator must never turn a refusal into a crash
        return "", "is not valid protobuf"


def locate(descriptor: Any, data: bytes, prefix: str = "", depth: int = 0) -> tuple[str, str]:
    """(field path, what is wrong) of the first field of an undecodable body that does not
    decode: a string that is not UTF-8, or a nested message that is not valid protobuf;
    the enclosing path when the wire format itself is broken."""
    try:
        fields: Any = UnknownFieldSet(empty_pb2.Empty.FromString(data))
    except DecodeError:
        return prefix, "is not valid protobuf"
    counts: dict[int, int] = {}
    for item in fields:
        number = item.field_number
        index = counts.get(number, 0)
        counts[number] = index + 1
        field = descriptor.fields_by_number.get(number)
        if field is None or item.wire_type != 2:  # only length-delimited data can fail
            continue
        path = _path(prefix, field, index)
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                item.data.decode()
            except UnicodeDecodeError:
                return path, "is not valid UTF-8"
        elif field.message_type is not None and depth < _MAX_DEPTH:
            try:
                GetMessageClass(field.message_type).FromString(item.data)
            except Exception:
                return locate(field.message_type, item.data, path, depth + 1)
    return prefix, "is not valid protobuf"


def _path(prefix: str, field: FieldDescriptor, index: int) -> str:
    name = field.name
    is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
    if field.is_repeated and not is_map:
        name += f"[{index}]"
    return f"{prefix}.{name}" if prefix else name
