"""Values no request may carry, whatever its proto's rules: NUL characters in strings and
`google.protobuf.Timestamp`/`Duration` values outside their documented range.

PostgreSQL refuses NUL in text and Python's datetime refuses years beyond 1..9999, so both
used to surface deep in a service as INTERNAL. Each message type gets two finders compiled
once from its descriptor, one per kind of problem, walking only the fields that can lead to
such a value (nested, repeated, map keys and values): None when a type can contain none,
so such a type costs nothing. A finder returns the first bad value's field path and what is
wrong, else None. mesh/door.py runs them on every request as grpc decodes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

# (field path, description) of a bad value.
Problem = tuple[str, str]
Finder = Callable[[Any], Problem | None]
# Whether one field's value is bad, and why.
Leaf = tuple[Callable[[Any], bool], str]

TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"
MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_SECONDS = 315_576_000_000  # 10 000 years, as in duration.proto
MAX_NANOS = 999_999_999
NUL = "must not contain NUL characters"


def _bad_timestamp(ts: Any) -> bool:
    return (
        not MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS
        or not 0 <= ts.nanos <= MAX_NANOS
    )


def _bad_duration(d: Any) -> bool:
    seconds, nanos = d.seconds, d.nanos
    if not -MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS or abs(nanos) > MAX_NANOS:
        return True
    return (seconds > 0 and nanos < 0) or (seconds < 0 and nanos > 0)


def _has_nul(value: str) -> bool:
    return "\x00" in value


_TIME_LEAVES: dict[str, Leaf] = {
    TIMESTAMP: (
        _bad_timestamp,
        "must be a timestamp from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z",
    ),
    DURATION: (_bad_duration, "must be a duration within ±10000 years, nanos of the same sign"),
}


def _time_leaf(field: FieldDescriptor) -> Leaf | None:
    message = field.message_type
    return _TIME_LEAVES.get(message.full_name) if message is not None else None


def _nul_leaf(field: FieldDescriptor) -> Leaf | None:
    return (_has_nul, NUL) if field.type == FieldDescriptor.TYPE_STRING else None


class _Compiler:
    """Finders of one kind of problem, by message type; `leaf` says which fields hold
    values to check directly."""

    def __init__(self, leaf: Callable[[FieldDescriptor], Leaf | None]) -> None:
        self.leaf = leaf
        self.finders: dict[Descriptor, Finder | None] = {}
        self._reaches: dict[Descriptor, bool] = {}

    def finder(self, descriptor: Descriptor) -> Finder | None:
        """The compiled finder of a message type (cached); None if it can hold no bad value."""
        if descriptor in self.finders:
            return self.finders[descriptor]
        if not self.reaches(descriptor):
            self.finders[descriptor] = None
            return None
        # A recursive type calls its own finder through the cache while being compiled.
        self.finders[descriptor] = lambda m: self.finders[descriptor](m)  # type: ignore[misc]  # noqa: PLW0108
        # Singular fields checked directly share one loop per kind of check (one Python
        # frame per message instead of one per field: requests are checked on every call).
        direct: dict[tuple[Leaf, bool], list[str]] = {}
        parts: list[Finder] = []
        for field in descriptor.fields:
            leaf = self.leaf(field)
            if leaf is not None and not field.is_repeated:
                direct.setdefault((leaf, field.message_type is not None), []).append(field.name)
            elif (part := self._field(field)) is not None:
                parts.append(part)
        parts[:0] = [_direct(tuple(names), *key) for key, names in direct.items()]
        found = parts[0] if len(parts) == 1 else _first(tuple(parts))
        self.finders[descriptor] = found
        return found

    def reaches(self, descriptor: Descriptor) -> bool:
        """Whether a value of `descriptor` can contain a value the leaf checks."""
        if descriptor not in self._reaches:
            seen, todo, found = {descriptor}, [descriptor], False
            while todo and not found:
                for field in todo.pop().fields:
                    if self.leaf(field) is not None:
                        found = True
                        break
                    sub = field.message_type
                    if sub is not None and sub not in seen:
                        seen.add(sub)
                        todo.append(sub)
            self._reaches[descriptor] = found
        return self._reaches[descriptor]

    def _field(self, field: FieldDescriptor) -> Finder | None:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            return self._map(field.name, entry)
        leaf = self.leaf(field)
        value: Finder | None
        if leaf is not None:
            bad, why = leaf
            value = lambda v: ("", why) if bad(v) else None  # noqa: E731
        elif entry is not None:
            value = self.finder(entry)
        else:
            value = None
        if value is None:
            return None
        return _each(field, value)

    def _map(self, name: str, entry: Descriptor) -> Finder | None:
        key_leaf = self.leaf(entry.fields_by_name["key"])
        value_field = entry.fields_by_name["value"]
        value_leaf = self.leaf(value_field)
        value_sub = (
            self.finder(value_field.message_type)
            if value_leaf is None and value_field.message_type is not None
            else None
        )
        if key_leaf is None and value_leaf is None and value_sub is None:
            return None

        def map_field(message: Any) -> Problem | None:
            for key, value in getattr(message, name).items():
                at = f"{name}[{json.dumps(key)}]"
                if key_leaf is not None and key_leaf[0](key):
                    return at, key_leaf[1]
                if value_leaf is not None and value_leaf[0](value):
                    return at, value_leaf[1]
                if value_sub is not None and (problem := value_sub(value)) is not None:
                    return _join(at, problem)
            return None

        return map_field


def _first(parts: tuple[Finder, ...]) -> Finder:
    def first(message: Any) -> Problem | None:
        for part in parts:
            problem = part(message)
            if problem is not None:
                return problem
        return None

    return first


def _direct(names: tuple[str, ...], leaf: Leaf, message_valued: bool) -> Finder:
    """The check of singular fields holding a leaf value (a message field only when set)."""
    bad, why = leaf
    if message_valued:

        def set_leaves(message: Any) -> Problem | None:
            for name in names:
                if message.HasField(name) and bad(getattr(message, name)):
                    return name, why
            return None

        return set_leaves

    def scalar_leaves(message: Any) -> Problem | None:
        for name in names:
            if bad(getattr(message, name)):
                return name, why
        return None

    return scalar_leaves


def _join(at: str, problem: Problem) -> Problem:
    path, why = problem
    if not path:
        return at, why
    return (f"{at}{path}" if path.startswith("[") else f"{at}.{path}"), why


def _each(field: FieldDescriptor, value: Finder) -> Finder:
    """Apply a value finder to a field: each item of a repeated field, a message field
    only when set."""
    name = field.name
    if field.is_repeated:

        def repeated(message: Any) -> Problem | None:
            for i, item in enumerate(getattr(message, name)):
                problem = value(item)
                if problem is not None:
                    return _join(f"{name}[{i}]", problem)
            return None

        return repeated
    if field.message_type is not None:

        def present(message: Any) -> Problem | None:
            if not message.HasField(name):
                return None
            problem = value(getattr(message, name))
            return None if problem is None else _join(name, problem)

        return present

    def scalar(message: Any) -> Problem | None:
        problem = value(getattr(message, name))
        return None if problem is None else _join(name, problem)

    return scalar


_nul = _Compiler(_nul_leaf)
_times = _Compiler(_time_leaf)


def nul_finder(descriptor: Any) -> Finder | None:
    """The first string holding a NUL character; None for types without strings."""
    return _nul.finder(descriptor)


def time_finder(descriptor: Any) -> Finder | None:
    """The first Timestamp or Duration out of range; None for types that hold neither."""
    return _times.finder(descriptor)


def time_check(descriptor: Any) -> Callable[[Any, bytes], Problem | None] | None:
    """`time_finder` behind a cheap test of the encoded message: none of the first bytes of
    the keys of the top-level fields that can lead to a time occurs in it, so it holds no
    Timestamp or Duration at all (a field present is always keyed by them; an occurrence in
    other data only costs the walk). None for types that hold neither.

    Reading a message field's presence costs ~1.3k instructions in upb's Python API, so
    the walk is skipped for the many requests that carry no time."""
    finder = _times.finder(descriptor)
    if finder is None:
        return None
    firsts = set()
    for field in descriptor.fields:
        sub = field.message_type
        if sub is not None and (_time_leaf(field) is not None or _times.reaches(sub)):
            key = field.number << 3 | 2  # length-delimited: a message
            firsts.add(key & 0x7F | (0x80 if key > 0x7F else 0))
    if len(firsts) <= 2:  # memchr with an int needle is the cheapest test there is
        first, second = min(firsts), max(firsts)

        def check(message: Any, data: bytes) -> Problem | None:
            return finder(message) if first in data or second in data else None

        return check
    search = re.compile(
        b"[" + b"".join(re.escape(bytes([b])) for b in sorted(firsts)) + b"]"
    ).search
    return lambda message, data: finder(message) if search(data) else None
