"""Proofs of one scalar value against its `buf.validate` rules (string, integer, enum),
for mesh/proof_compiler.py: each answers True only when the value provably passes, and a
rule this module does not evaluate compiles to `defer` (protovalidate decides).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

# A compiled proof of one message type (or value): True when it proved it valid.
Check = Callable[[Any], bool]


def valid(_: Any) -> bool:
    """Nothing to check: always proven."""
    return True


def unknown(_: Any) -> bool:
    """Rules this module cannot read: never proven, protovalidate decides."""
    return False


def defer(_: Any) -> bool:
    """A value rule this module does not evaluate: unproven whenever it applies."""
    return False


INT_KINDS = frozenset(
    {"int32", "int64", "uint32", "uint64", "sint32", "sint64"}
    | {"fixed32", "fixed64", "sfixed32", "sfixed64"}
)
INT_CPP_TYPES = frozenset(
    {
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    }
)


# Patterns on which RE2 (protovalidate) and Python's re provably agree: optional ^, then
# ASCII literals or ASCII classes with quantifiers, optional $ (Python's $ also matches
# before a final newline, so it becomes \Z).
_ATOM = r"(?:[A-Za-z0-9_ ,:=@#-]|\[[A-Za-z0-9_-]+\])(?:[*+?]|\{\d+(?:,\d*)?\})?"
SAFE_PATTERN = re.compile(rf"\^?(?:{_ATOM}|\((?:{_ATOM})+\)(?:[*+?]|\{{\d+(?:,\d*)?\}})?)+\$?")


def string_check(rules: Any) -> Check:
    """The proof of a string value: lengths, a safe pattern, in/not_in/const."""
    used = {f.name for f, _ in rules.ListFields()} - {"example"}
    if used - {"min_len", "max_len", "len", "pattern", "in", "not_in", "const"}:
        return defer  # e-mail, hostname, byte lengths, prefixes, ...
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
        if not SAFE_PATTERN.fullmatch(pattern) or any(
            int(n or 0) > 1000 for pair in bounds for n in pair
        ):
            return defer  # RE2 refuses repeats over 1000
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


def int_check(rules: Any) -> Check:
    """The proof of an integer value: bounds, in/not_in/const (not exclusive ranges)."""
    used = {f.name for f, _ in rules.ListFields()} - {"example"}
    if used - {"gt", "gte", "lt", "lte", "in", "not_in", "const"}:
        return defer
    gt = rules.gt if rules.HasField("gt") else None
    gte = rules.gte if rules.HasField("gte") else None
    lt = rules.lt if rules.HasField("lt") else None
    lte = rules.lte if rules.HasField("lte") else None
    lower = gt if gt is not None else gte
    upper = lt if lt is not None else lte
    if lower is not None and upper is not None and lower >= upper:
        return defer  # an exclusive range ("outside"), rare
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


def enum_check(rules: Any, defined: frozenset[int]) -> Check:
    """The proof of an enum value: defined_only (among `defined`), in/not_in/const."""
    used = {f.name for f, _ in rules.ListFields()} - {"example"}
    if used - {"defined_only", "in", "not_in", "const"}:
        return defer
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
