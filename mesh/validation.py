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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from marque.common.v1 import streaming_pb2

from mesh.door import REFUSALS
from mesh.errors import FieldViolation, InvalidArgument
from mesh.wording import describe

_validator = protovalidate.Validator()

# A compiled proof of one message type: True when it proved the message valid.
Check = Callable[[Any], bool]


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


# ------------------------------------------------------------------ compiled proofs


def _valid(_: Any) -> bool:
    return True


def _unknown(_: Any) -> bool:
    return False


def _defer(_: Any) -> bool:
    """A value rule this module does not evaluate: unproven whenever it applies."""
    return False


_checks: dict[Any, Check] = {}  # by message Descriptor
_FIELD: Any = validate_pb2.field
_MESSAGE: Any = validate_pb2.message
_ONEOF: Any = validate_pb2.oneof
_IGNORE_IF_ZERO = validate_pb2.IGNORE_IF_ZERO_VALUE
_IGNORE_ALWAYS = validate_pb2.IGNORE_ALWAYS
_INT_KINDS = frozenset(
    {"int32", "int64", "uint32", "uint64", "sint32", "sint64"}
    | {"fixed32", "fixed64", "sfixed32", "sfixed64"}
)
# Patterns on which RE2 (protovalidate) and Python's re provably agree: optional ^, then
# ASCII literals or ASCII classes with quantifiers, optional $ (Python's $ also matches
# before a final newline, so it becomes \Z).
_ATOM = r"(?:[A-Za-z0-9_ ,:=@#-]|\[[A-Za-z0-9_-]+\])(?:[*+?]|\{\d+(?:,\d*)?\})?"
_SAFE_PATTERN = re.compile(rf"\^?(?:{_ATOM}|\((?:{_ATOM})+\)(?:[*+?]|\{{\d+(?:,\d*)?\}})?)+\$?")


def check_of(descriptor: Any) -> Check:
    """The compiled proof of a message type (cached); `_valid` when it has no rules."""
    check = _checks.get(descriptor)
    if check is None:
        _checks[descriptor] = _unknown  # a recursive type: not proven while compiling
        try:
            check = _compile(descriptor)
        except Exception:  # an option this module misreads must never reject a message
            check = _unknown
        _checks[descriptor] = check
    return check


def _clean(rules: Message) -> bool:
    """No extension (predefined rule) and no unknown field anywhere in `rules`."""
    if len(UnknownFieldSet(rules)):
        return False
    for field, value in rules.ListFields():
        if field.is_extension:
            return False
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            items = value if field.is_repeated else (value,)
            if not all(_clean(v) for v in items):
                return False
    return True


def _compile(descriptor: Descriptor) -> Check:
    options = descriptor.GetOptions()
    if options.HasExtension(_MESSAGE) and options.Extensions[_MESSAGE].ListFields():
        return _unknown  # CEL or message-level oneof rules
    parts: list[Check] = []
    for oneof in descriptor.oneofs:
        oneof_options = oneof.GetOptions()
        if not oneof_options.HasExtension(_ONEOF):
            continue
        rules = oneof_options.Extensions[_ONEOF]
        if not _clean(rules) or {f.name for f, _ in rules.ListFields()} - {"required"}:
            return _unknown
        if rules.required:
            parts.append(_oneof_required(oneof.name))
    for field in descriptor.fields:
        part = _field_check(field)
        if part is _unknown:
            return _unknown
        if part is not _valid:
            parts.append(part)
    if not parts:
        return _valid
    if len(parts) == 1:
        return parts[0]

    def check(message: Any) -> bool:
        for part in parts:  # noqa: SIM110 - a plain loop is cheaper than all(genexpr)
            if not part(message):
                return False
        return True

    return check


def _oneof_required(name: str) -> Check:
    return lambda m: m.WhichOneof(name) is not None


def _field_check(field: FieldDescriptor) -> Check:
    """The proof of one field of a message (given the message)."""
    options = field.GetOptions()
    rules = options.Extensions[_FIELD] if options.HasExtension(_FIELD) else None
    name = field.name
    if rules is not None:
        if not _clean(rules):
            return _unknown
        if rules.ignore == _IGNORE_ALWAYS:
            return _valid
        set_rules = {f.name for f, _ in rules.ListFields()}
        if not rules.ListFields() or set_rules == {"ignore"}:
            rules = None
    entry = field.message_type
    if field.is_repeated:
        if entry is not None and entry.GetOptions().map_entry:
            if rules is not None:
                return _unknown
            value_field = entry.fields_by_name["value"]
            if value_field.message_type is None:
                return _valid
            sub = check_of(value_field.message_type)
            if sub is _valid:
                return _valid
            return lambda m: all(sub(v) for v in getattr(m, name).values())
        item = _item_check(field, rules)
        if item is _unknown:
            return _unknown
        return item
    value_check = _value_check(field, rules)
    required = rules is not None and rules.required
    if value_check is _unknown or (value_check is _valid and not required):
        return value_check
    presence = field.has_presence
    ignore_zero = rules is not None and rules.ignore == _IGNORE_IF_ZERO
    if field.message_type is not None:

        def message_field(m: Any) -> bool:
            if not m.HasField(name):
                return not required
            return value_check(getattr(m, name))

        return message_field
    zero = field.default_value
    if presence:

        def optional_field(m: Any) -> bool:
            if not m.HasField(name):
                return not required
            value = getattr(m, name)
            if ignore_zero and value == zero:
                return True
            return value_check(value)

        return optional_field

    def scalar_field(m: Any) -> bool:
        value = getattr(m, name)
        if value == zero:
            if required:
                return False
            if ignore_zero:
                return True
        return value_check(value)

    return scalar_field


def _item_check(field: FieldDescriptor, rules: Any) -> Check:
    """The proof of a repeated (non-map) field."""
    name = field.name
    min_items = max_items = None
    item_rules = None
    required = False
    ignore_zero = False
    if rules is not None:
        kinds = {f.name for f, _ in rules.ListFields()} - {"ignore", "required"}
        if kinds - {"repeated"}:
            return _unknown
        required = rules.required
        ignore_zero = rules.ignore == _IGNORE_IF_ZERO
        if rules.HasField("repeated"):
            repeated = rules.repeated
            if repeated.unique:
                return _unknown
            if repeated.HasField("min_items"):
                min_items = repeated.min_items
            if repeated.HasField("max_items"):
                max_items = repeated.max_items
            if repeated.HasField("items"):
                item_rules = repeated.items
                if item_rules.required or item_rules.ignore:
                    return _unknown
    each = _value_check(field, item_rules)
    if each is _unknown:
        return _unknown
    if each is _valid and rules is None:
        return _valid

    def repeated_field(m: Any) -> bool:
        items = getattr(m, name)
        n = len(items)
        if not n:
            if required:
                return False
            if ignore_zero:
                return True
        if min_items is not None and n < min_items:
            return False
        if max_items is not None and n > max_items:
            return False
        if each is not _valid:
            for item in items:
                if not each(item):
                    return False
        return True

    return repeated_field


def _value_check(field: FieldDescriptor, rules: Any) -> Check:
    """The proof of one value of `field` (an item, for repeated fields), given its rules
    (None: none); `_valid` when nothing applies."""
    if field.message_type is not None:
        if rules is not None and {f.name for f, _ in rules.ListFields()} - {"required", "ignore"}:
            return _unknown  # any/duration/timestamp/cel rules on a message
        return check_of(field.message_type)
    if rules is None:
        return _valid
    kinds = {f.name for f, _ in rules.ListFields()} - {"required", "ignore"}
    if not kinds:
        return _valid
    if len(kinds) != 1:
        return _defer  # CEL next to type rules
    (kind,) = kinds
    typed = getattr(rules, kind)
    if kind == "string" and field.type == FieldDescriptor.TYPE_STRING:
        return _string_check(typed)
    if kind in _INT_KINDS and field.cpp_type in _INT_CPP_TYPES:
        return _int_check(typed)
    if kind == "enum" and field.enum_type is not None:
        return _enum_check(typed, frozenset(v.number for v in field.enum_type.values))
    return _defer  # bytes, bool, float, ... rules


_INT_CPP_TYPES = frozenset(
    {
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    }
)


def _string_check(rules: Any) -> Check:
    used = {f.name for f, _ in rules.ListFields()} - {"example"}
    if used - {"min_len", "max_len", "len", "pattern", "in", "not_in", "const"}:
        return _defer  # e-mail, hostname, byte lengths, prefixes, ...
    lo = rules.min_len if rules.HasField("min_len") else None
    hi = rules.max_len if rules.HasField("max_len") else None
    exact = rules.len if rules.HasField("len") else None
    const = rules.const if rules.HasField("const") else None
    allowed = frozenset(getattr(rules, "in")) or None
    banned = frozenset(rules.not_in)
    search = None
    if rules.HasField("pattern"):
        pattern = rules.pattern
        bounds = re.findall(r"\{(\d+)(?:,(\d*))?\}", pattern)
        if not _SAFE_PATTERN.fullmatch(pattern) or any(
            int(n or 0) > 1000 for pair in bounds for n in pair
        ):
            return _defer  # RE2 refuses repeats over 1000
        if pattern.endswith("$"):
            pattern = pattern[:-1] + r"\Z"
        search = re.compile(pattern).search

    def string_value(value: str) -> bool:
        n = len(value)
        if lo is not None and n < lo:
            return False
        if hi is not None and n > hi:
            return False
        if exact is not None and n != exact:
            return False
        if const is not None and value != const:
            return False
        if allowed is not None and value not in allowed:
            return False
        if value in banned:
            return False
        return search is None or search(value) is not None

    return string_value


def _int_check(rules: Any) -> Check:
    used = {f.name for f, _ in rules.ListFields()} - {"example"}
    if used - {"gt", "gte", "lt", "lte", "in", "not_in", "const"}:
        return _defer
    gt = rules.gt if rules.HasField("gt") else None
    gte = rules.gte if rules.HasField("gte") else None
    lt = rules.lt if rules.HasField("lt") else None
    lte = rules.lte if rules.HasField("lte") else None
    lower = gt if gt is not None else gte
    upper = lt if lt is not None else lte
    if lower is not None and upper is not None and lower >= upper:
        return _defer  # an exclusive range ("outside"), rare
    const = rules.const if rules.HasField("const") else None
    allowed = frozenset(getattr(rules, "in")) or None
    banned = frozenset(rules.not_in)

    def int_value(value: int) -> bool:
        if gt is not None and value <= gt:
            return False
        if gte is not None and value < gte:
            return False
        if lt is not None and value >= lt:
            return False
        if lte is not None and value > lte:
            return False
        if const is not None and value != const:
            return False
        if allowed is not None and value not in allowed:
            return False
        return value not in banned

    return int_value


def _enum_check(rules: Any, defined: frozenset[int]) -> Check:
    used = {f.name for f, _ in rules.ListFields()} - {"example"}
    if used - {"defined_only", "in", "not_in", "const"}:
        return _defer
    only_defined = rules.defined_only
    const = rules.const if rules.HasField("const") else None
    allowed = frozenset(getattr(rules, "in")) or None
    banned = frozenset(rules.not_in)

    def enum_value(value: int) -> bool:
        if only_defined and value not in defined:
            return False
        if const is not None and value != const:
            return False
        if allowed is not None and value not in allowed:
            return False
        return value not in banned

    return enum_value
