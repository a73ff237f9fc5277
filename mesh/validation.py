"""protovalidate rules of the proto enforced on every request, as InvalidArgument."""

from __future__ import annotations

from typing import Any

import protovalidate
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from marque.common.v1 import streaming_pb2

from mesh.errors import FieldViolation, InvalidArgument

_validator = protovalidate.Validator()


def field_path(violation: protovalidate.Violation) -> str:
    """Render a violation's field path like `customer.mobile` or `items[2].sku`."""
    parts: list[str] = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        part = element.field_name
        sub = element.subscript
        if sub is not None:
            if sub.field == "index" or not isinstance(sub.value, str):
                part += f"[{str(sub.value).lower() if isinstance(sub.value, bool) else sub.value}]"
            else:
                part += f'["{sub.value}"]'
        parts.append(part)
    return ".".join(parts)


def violations(message: Message) -> list[FieldViolation]:
    """The broken rules of `message`, for servicers that check stream rows one by one."""
    found = _validator.collect_violations(message)
    return [FieldViolation(field_path(v) or v.proto.rule_id, v.proto.message) for v in found]


def validate(message: Message) -> None:
    """Raise InvalidArgument with one FieldViolation per broken rule of `message`."""
    if not _validator.collect_violations(message):  # the common case, without building lists
        return
    fields = violations(message)
    summary = "; ".join(f"{f.field}: {f.description}" for f in fields)
    raise InvalidArgument(
        f"invalid request: {summary}", reason="INVALID_REQUEST", field_violations=fields
    )


def validates_stream(method: MethodDescriptor) -> bool:
    """False when a client-streaming method asks to receive invalid messages itself
    (`INVALID_STREAM_MESSAGE_DELIVER`), e.g. a bulk import that rejects rows one by one."""
    options = method.GetOptions()
    extension: Any = streaming_pb2.invalid_stream_message
    if not options.HasExtension(extension):
        return True
    return bool(options.Extensions[extension] != streaming_pb2.INVALID_STREAM_MESSAGE_DELIVER)
