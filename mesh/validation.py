"""protovalidate rules of the proto enforced on every request, as InvalidArgument.

protovalidate's engine is a native extension that releases the GIL on every call; on a
grpc.aio server pinned to one core the poller thread then takes the GIL, and a release
costs ~20-25 µs per call, far more than the rules themselves. So each message type gets a
proof, compiled once from its descriptors' `buf.validate` options:

- a type with no rules anywhere (itself and every message it can contain) is never
  passed to the engine;
- for the rules this module understands (required, ignore, string lengths and simple
  ASCII patterns, integer bounds/in/not_in/const, enum defined_only/in/not_in/const,
  repeated min/max items with such item rules, oneof required, nested messages), a pure
  Python check that can only answer "valid" or "don't know";
- anything else (CEL, e-mail and other well-known formats, maps, floats, message-level
  rules, ...) makes the check answer "don't know" whenever it would apply.

"Don't know" always goes to protovalidate, which alone produces violations: the check
never rejects, it only skips the engine for messages it proved valid. tests/mesh/
test_validation.py checks it against protovalidate with hypothesis.

This module is the checker; the proofs are compiled by mesh/proof_compiler.py (messages and
fields) and mesh/value_proofs.py (string, integer and enum values).
"""

from __future__ import annotations

from typing import Any

import protovalidate
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from marque.common.v1 import streaming_pb2

from mesh.door import REFUSALS
from mesh.errors import FieldViolation, InvalidArgument
from mesh.proof_compiler import CHECKS as _checks
from mesh.proof_compiler import FIELD, check_of
from mesh.value_proofs import SAFE_PATTERN, unknown, valid
from mesh.wording import describe

# The compiler's names as this module spelled them before it was split
# (tests/mesh/test_validation.py reaches them here).
_FIELD, _SAFE_PATTERN, _unknown, _valid = FIELD, SAFE_PATTERN, unknown, valid

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
    """The broken rules of `message`, for servicers that check stream rows one by one; a
    message the mesh refused as it was read (mesh/door.py) reports why."""
    if REFUSALS and (refused := REFUSALS.get(id(message))) is not None:
        return [refused.violation]
    check = _checks.get(message.DESCRIPTOR) or check_of(message.DESCRIPTOR)
    if check(message):
        return []
    found = _validator.collect_violations(message)
    descriptor = message.DESCRIPTOR
    return [
        FieldViolation(field_path(v) or v.proto.rule_id, describe(descriptor, v)) for v in found
    ]


def validate(message: Message) -> None:
    """Raise InvalidArgument with one FieldViolation per broken rule of `message`, or the
    door's for a message refused as it was read (mesh/door.py)."""
    if REFUSALS and (refused := REFUSALS.get(id(message))) is not None:
        raise refused.error()
    check = _checks.get(message.DESCRIPTOR) or check_of(message.DESCRIPTOR)
    if check(message) or not _validator.collect_violations(message):
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
