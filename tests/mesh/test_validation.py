"""The compiled proofs of mesh.validation agree with protovalidate on the project's messages."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import marque
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marque.testing.v1 import testing_service_pb2 as testing_pb

from mesh import validation
from mesh.errors import InvalidArgument
from mesh.wording import describe


def _descriptors() -> list[Descriptor]:
    found: list[Descriptor] = []

    def walk(d: Descriptor) -> None:
        if not d.GetOptions().map_entry:
            found.append(d)
        for nested in d.nested_types:
            walk(nested)

    for module in pkgutil.walk_packages(marque.__path__, "marque."):
        if module.name.endswith("_pb2"):
            for d in importlib.import_module(module.name).DESCRIPTOR.message_types_by_name.values():
                walk(d)
    return sorted(found, key=lambda d: d.full_name)


DESCRIPTORS = _descriptors()
_ALPHABET = st.sampled_from([*"aZ09_-.@ \n上é🚗", "x", "A", "7"])
_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def _near(*bounds: int) -> list[int]:
    return sorted({b + d for b in bounds for d in (-1, 0, 1)})


def _rules(field: FieldDescriptor) -> Any:
    options = field.GetOptions()
    ext: Any = validation._FIELD
    return options.Extensions[ext] if options.HasExtension(ext) else None


def _scalar(field: FieldDescriptor, rules: Any) -> st.SearchStrategy[Any]:
    if rules is not None and rules.HasField("repeated") and rules.repeated.HasField("items"):
        rules = rules.repeated.items
    if field.type == FieldDescriptor.TYPE_STRING:
        lengths = [0, 1, 2, 3, 17]
        s = rules.string if rules is not None and rules.HasField("string") else None
        if s is not None:
            lengths += [n for n in _near(s.min_len, s.max_len, s.len) if 0 <= n <= 2000]
        by_length = st.sampled_from(lengths).flatmap(
            lambda n: st.text(_ALPHABET, min_size=n, max_size=n)
        )
        shaped = st.from_regex(r"[A-Z]{2,4}|[0-9]{4}-[0-9]{2}-[0-9]{2}\n?|[A-Za-z0-9_-]{1,40}")
        return st.one_of(st.text(_ALPHABET, max_size=12), by_length, shaped)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.cpp_type in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return st.floats(width=32, allow_nan=False)
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        return st.sampled_from(sorted(set(numbers) | {max(numbers) + 1, 99}))
    lo, hi = _INT_RANGES[field.cpp_type]
    near = [0, 1, -1, 17]
    if rules is not None:
        kind = rules.WhichOneof("type")
        if kind is not None and kind not in ("string", "enum", "repeated", "bytes"):
            typed = getattr(rules, kind)
            near += _near(*(getattr(typed, b) for b in ("gt", "gte", "lt", "lte")))
    return st.one_of(st.integers(lo, hi), st.sampled_from([n for n in near if lo <= n <= hi]))


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    message = GetMessageClass(descriptor)()
    chosen = {o.name: draw(st.sampled_from([None, *o.fields])) for o in descriptor.oneofs}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen[oneof.name] is not field:
            continue
        if oneof is None and field.has_presence and draw(st.booleans()):
            continue  # leave unset
        rules = _rules(field)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if depth < 2 and draw(st.booleans()):
                key_field = field.message_type.fields_by_name["key"]
                value_field = field.message_type.fields_by_name["value"]
                key = draw(_scalar(key_field, None))
                target = getattr(message, field.name)
                if value_field.message_type is not None:
                    target[key].CopyFrom(draw(messages(value_field.message_type, depth + 1)))
                else:
                    target[key] = draw(_scalar(value_field, None))
            continue
        if field.message_type is not None:
            if depth >= 3:
                continue
            if field.is_repeated:
                for item in draw(st.lists(messages(field.message_type, depth + 1), max_size=2)):
                    getattr(message, field.name).add().CopyFrom(item)
            else:
                getattr(message, field.name).CopyFrom(draw(messages(field.message_type, depth + 1)))
            continue
        if field.is_repeated:
            sizes = [0, 1, 2, 3]
            if rules is not None and rules.HasField("repeated"):
                sizes += [n for n in _near(rules.repeated.max_items) if n >= 0]
            n = draw(st.sampled_from(sizes))
            getattr(message, field.name).extend(
                draw(st.lists(_scalar(field, rules), min_size=n, max_size=n))
            )
            continue
        setattr(message, field.name, draw(_scalar(field, rules)))
    return message


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: d.full_name)
def test_check_never_passes_an_invalid_message(descriptor: Descriptor) -> None:
    check = validation.check_of(descriptor)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(messages(descriptor))
    def run(message: Message) -> None:
        found = validation._validator.collect_violations(message)
        if check(message):
            assert not found, f"proved valid but protovalidate says {found}"
        # the public functions answer exactly as protovalidate does, in plain words
        assert [(v.field, v.description) for v in validation.violations(message)] == [
            (validation.field_path(v) or v.proto.rule_id, describe(descriptor, v)) for v in found
        ]
        if found:
            with pytest.raises(InvalidArgument):
                validation.validate(message)
        else:
            validation.validate(message)

    run()


def test_the_project_s_common_requests_are_proved_without_the_engine() -> None:
    check = validation.check_of(testing_pb.EchoRequest.DESCRIPTOR)
    assert check is not validation._unknown and check is not validation._valid
    assert validation.check_of(testing_pb.EchoResponse.DESCRIPTOR) is validation._valid
    assert validation.check_of(testing_pb.EchoRequest.DESCRIPTOR)(
        testing_pb.EchoRequest(message="hello")
    )
    assert not validation.check_of(testing_pb.EchoRequest.DESCRIPTOR)(testing_pb.EchoRequest())


@pytest.mark.parametrize(
    ("pattern", "safe"),
    [
        ("^[A-Z]{3}$", True),
        ("^[A-Za-z0-9_-]+$", True),
        ("^([0-9]{4}-[0-9]{2}-[0-9]{2})?$", True),
        (r"^\d+$", False),  # \d is Unicode in Python, ASCII in RE2
        ("^(a|b)$", False),
        ("^a.b$", False),
        ("^[^a]$", False),
        ("^a+?$", False),
    ],
)
def test_only_patterns_both_engines_read_alike_are_evaluated(pattern: str, safe: bool) -> None:
    assert bool(validation._SAFE_PATTERN.fullmatch(pattern)) is safe


def test_engine_releases_are_skipped_for_proved_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Message] = []

    class Spy:
        def collect_violations(self, message: Message) -> list[Any]:
            calls.append(message)
            return []

    monkeypatch.setattr(validation, "_validator", Spy())
    validation.validate(testing_pb.EchoRequest(message="hi"))
    validation.validate(testing_pb.EchoResponse())
    assert calls == []
    validation.validate(testing_pb.EchoRequest(message=""))
    assert len(calls) == 1
