"""protovalidate rules of the proto enforced on every request, as InvalidArgument."""

from __future__ import annotations

import protovalidate
from google.protobuf.message import Message

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


def validate(message: Message) -> None:
    """Raise InvalidArgument with one FieldViolation per broken rule of `message`."""
    violations = _validator.collect_violations(message)
    if not violations:
        return
    fields = [FieldViolation(field_path(v) or v.proto.rule_id, v.proto.message) for v in violations]
    summary = "; ".join(f"{f.field}: {f.description}" for f in fields)
    raise InvalidArgument(
        f"invalid request: {summary}", reason="INVALID_REQUEST", field_violations=fields
    )
