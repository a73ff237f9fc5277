"""The rule compiler of mesh/validation.py: a message type's `buf.validate` options
compiled once into a proof that answers "valid" or "don't know" (never "invalid").

A type with no rules anywhere (itself and every message it can contain) compiles to
`valid`; rules this compiler does not understand compile to `unknown` (the whole message
goes to protovalidate) or, on one value, to `defer`. Value rules: mesh/value_proofs.py.
"""

from __future__ import annotations

from typing import Any

from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from mesh.value_proofs import (
    INT_CPP_TYPES,
    INT_KINDS,
    Check,
    defer,
    enum_check,
    int_check,
    string_check,
    unknown,
    valid,
)

CHECKS: dict[Any, Check] = {}  # by message Descriptor
FIELD: Any = validate_pb2.field
_MESSAGE: Any = validate_pb2.message
_ONEOF: Any = validate_pb2.oneof
_IGNORE_IF_ZERO = validate_pb2.IGNORE_IF_ZERO_VALUE
_IGNORE_ALWAYS = validate_pb2.IGNORE_ALWAYS


def check_of(descriptor: Any) -> Check:
    """The compiled proof of a message type (cached); `valid` when it has no rules."""
    check = CHECKS.get(descriptor)
    if check is None:
        CHECKS[descriptor] = unknown  # a recursive type: not proven while compiling
        try:
            check = _compile(descriptor)
        except Exception:  # an option this module misreads must never reject a message
            check = unknown
        CHECKS[descriptor] = check
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
        return unknown  # CEL or message-level oneof rules
    parts: list[Check] = []
    for oneof in descriptor.oneofs:
        oneof_options = oneof.GetOptions()
        if not oneof_options.HasExtension(_ONEOF):
            continue
        rules = oneof_options.Extensions[_ONEOF]
        if not _clean(rules) or {f.name for f, _ in rules.ListFields()} - {"required"}:
            return unknown
        if rules.required:
            parts.append(_oneof_required(oneof.name))
    for field in descriptor.fields:
        part = _field_check(field)
        if part is unknown:
            return unknown
        if part is not valid:
            parts.append(part)
    if not parts:
        return valid
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
    rules = options.Extensions[FIELD] if options.HasExtension(FIELD) else None
    if rules is not None:
        if not _clean(rules):
            return unknown
        if rules.ignore == _IGNORE_ALWAYS:
            return valid
        set_rules = {f.name for f, _ in rules.ListFields()}
        if not rules.ListFields() or set_rules == {"ignore"}:
            rules = None
    entry = field.message_type
    if field.is_repeated:
        if entry is not None and entry.GetOptions().map_entry:
            return _map_check(field.name, entry, rules)
        return _item_check(field, rules)
    return _singular_check(field, rules)


def _map_check(name: str, entry: Descriptor, rules: Any) -> Check:
    """The proof of a map field: its message values' own proofs; map rules are unknown."""
    if rules is not None:
        return unknown
    value_field = entry.fields_by_name["value"]
    if value_field.message_type is None:
        return valid
    sub = check_of(value_field.message_type)
    if sub is valid:
        return valid
    return lambda m: all(sub(v) for v in getattr(m, name).values())


def _singular_check(field: FieldDescriptor, rules: Any) -> Check:
    """The proof of a non-repeated field: presence (`required`, IGNORE_IF_ZERO_VALUE), then
    its value's proof; one closure per kind of presence, so a call tests only its own."""
    name = field.name
    value_check = _value_check(field, rules)
    required = rules is not None and rules.required
    if value_check is unknown or (value_check is valid and not required):
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
            return unknown
        required = rules.required
        ignore_zero = rules.ignore == _IGNORE_IF_ZERO
        if rules.HasField("repeated"):
            repeated = rules.repeated
            if repeated.unique:
                return unknown
            if repeated.HasField("min_items"):
                min_items = repeated.min_items
            if repeated.HasField("max_items"):
                max_items = repeated.max_items
            if repeated.HasField("items"):
                item_rules = repeated.items
                if item_rules.required or item_rules.ignore:
                    return unknown
    each = _value_check(field, item_rules)
    if each is unknown:
        return unknown
    if each is valid and rules is None:
        return valid

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
        if each is not valid:
            for item in items:
                if not each(item):
                    return False
        return True

    return repeated_field


def _value_check(field: FieldDescriptor, rules: Any) -> Check:
    """The proof of one value of `field` (an item, for repeated fields), given its rules
    (None: none); `valid` when nothing applies."""
    if field.message_type is not None:
        if rules is not None and {f.name for f, _ in rules.ListFields()} - {"required", "ignore"}:
            return unknown  # any/duration/timestamp/cel rules on a message
        return check_of(field.message_type)
    if rules is None:
        return valid
    kinds = {f.name for f, _ in rules.ListFields()} - {"required", "ignore"}
    if not kinds:
        return valid
    if len(kinds) != 1:
        return defer  # CEL next to type rules
    (kind,) = kinds
    typed = getattr(rules, kind)
    if kind == "string" and field.type == FieldDescriptor.TYPE_STRING:
        return string_check(typed)
    if kind in INT_KINDS and field.cpp_type in INT_CPP_TYPES:
        return int_check(typed)
    if kind == "enum" and field.enum_type is not None:
        return enum_check(typed, frozenset(v.number for v in field.enum_type.values))
    return defer  # bytes, bool, float, ... rules
