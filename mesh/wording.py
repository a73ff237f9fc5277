"""Plain-English descriptions of protovalidate violations, for the people reading them.

protovalidate's messages are written for machines: `must not be in list [0]` on an enum and
`must be at least 1 characters` on a request id both mean "is required". `describe()` words
a violation from its rule id (`string.min_len`, `int32.gte_lte`, ...) and the rule's values,
read from the proto's options; a rule it has no wording for keeps protovalidate's message.
"""

from __future__ import annotations

from typing import Any

from buf.validate import validate_pb2

_FIELD: Any = validate_pb2.field
_NUMERIC = frozenset(
    {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64"}
    | {"sfixed32", "sfixed64", "float", "double"}
)
# One bound: the rule's own value is the bound.
_ONE_BOUND = {
    "gte": "must be {} or more",
    "gt": "must be more than {}",
    "lte": "must be {} or less",
    "lt": "must be less than {}",
}
# Two bounds: (lower, upper) read from the typed rules.
_TWO_BOUNDS = {
    "gte_lte": "must be from {} to {}",
    "gt_lte": "must be more than {} and at most {}",
    "gte_lt": "must be at least {} and less than {}",
    "gt_lt": "must be more than {} and less than {}",
}
_BY_NAME = {
    "string.len": "must be exactly {} characters",
    "string.min_len": "must be at least {} characters",
    "string.max_len": "must be at most {} characters",
    "string.pattern": "must match the pattern {}",
    "string.email": "must be an email address",
    "string.in": "must be one of {}",
    "string.not_in": "must not be one of {}",
    "bytes.min_len": "must be at least {} bytes",
    "bytes.max_len": "must be at most {} bytes",
    "enum.defined_only": "must be one of the enum's defined values",
    "enum.in": "must be one of {}",
    "enum.not_in": "must not be one of {}",
    "repeated.min_items": "must have at least {} items",
    "repeated.max_items": "must have at most {} items",
    "repeated.unique": "must not repeat an item",
}
REQUIRED = "is required"


def describe(descriptor: Any, violation: Any) -> str:
    """The wording of one protovalidate violation found in a message of `descriptor`."""
    proto = violation.proto
    rule_id, value = proto.rule_id, violation.rule_value
    if _means_required(rule_id, value):
        return REQUIRED
    kind, _, name = rule_id.partition(".")
    if kind in _NUMERIC and name in _ONE_BOUND:
        return _ONE_BOUND[name].format(value)
    if kind in _NUMERIC and name in _TWO_BOUNDS:
        typed = _typed_rules(descriptor, violation)
        if typed is not None:
            lower = typed.gt if name.startswith("gt_") else typed.gte
            upper = typed.lt if name.endswith("_lt") else typed.lte
            return _TWO_BOUNDS[name].format(lower, upper)
    wording = _BY_NAME.get(rule_id)
    if wording is None:
        return str(proto.message)
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    return wording.format(value)


def _means_required(rule_id: str, value: Any) -> bool:
    if rule_id == "required":  # a required field or oneof
        return True
    if rule_id == "string.min_len" and value == 1:
        return True
    if rule_id == "repeated.min_items" and value == 1:
        return True
    # Enum zero is X_UNSPECIFIED (DESIGN.md §3): refusing it means the field must be set.
    return rule_id == "enum.not_in" and list(value or ()) == [0]


def _typed_rules(descriptor: Any, violation: Any) -> Any:
    """The rules message holding the violated rule (e.g. the field's Int32Rules), found by
    the violation's field path from `descriptor`, then its rule path; None if lost."""
    field = None
    for element in violation.proto.field.elements:
        if descriptor is None:
            return None
        field = descriptor.fields_by_number.get(element.field_number)
        if field is None:
            return None
        descriptor = field.message_type
    if field is None:
        return None
    options = field.GetOptions()
    if not options.HasExtension(_FIELD):
        return None
    rules = options.Extensions[_FIELD]
    for element in list(violation.proto.rule.elements)[:-1]:
        rules = getattr(rules, element.field_name, None)
        if rules is None:
            return None
    return rules
