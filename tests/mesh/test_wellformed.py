"""mesh.wellformed and mesh.door on a probe type with every shape a request may take: nested,
repeated and recursive messages, maps with string keys and message values, Timestamps and
Durations."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass
from marque.lead.v1 import lead_service_pb2
from marque.testing.v1 import testing_service_pb2 as pb

from mesh import door, wellformed
from mesh.errors import InvalidArgument
from mesh.validation import validate, violations

F = descriptor_pb2.FieldDescriptorProto
TS, DUR = ".google.protobuf.Timestamp", ".google.protobuf.Duration"


def _field(name: str, number: int, kind: Any, type_name: str = "", repeated: bool = False) -> Any:
    label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
    field = F(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    return field


def _entry(name: str, key: Any, value: Any, value_type: str = "") -> Any:
    return descriptor_pb2.DescriptorProto(
        name=name,
        field=[_field("key", 1, key), _field("value", 2, value, value_type)],
        options=descriptor_pb2.MessageOptions(map_entry=True),
    )


def _probe_classes() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    for dep in (timestamp_pb2, duration_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(dep.DESCRIPTOR.serialized_pb))
    msg = F.TYPE_MESSAGE
    probe = descriptor_pb2.DescriptorProto(
        name="Probe",
        field=[
            _field("name", 1, F.TYPE_STRING),
            _field("tags", 2, F.TYPE_STRING, repeated=True),
            _field("labels", 3, msg, ".wf.Probe.LabelsEntry", repeated=True),
            _field("inners", 4, msg, ".wf.Probe.InnersEntry", repeated=True),
            _field("at", 5, msg, TS),
            _field("times", 6, msg, TS, repeated=True),
            _field("wait", 7, msg, DUR),
            _field("inner", 8, msg, ".wf.Inner"),
            _field("next", 9, msg, ".wf.Probe"),
            _field("stamps", 10, msg, ".wf.Probe.StampsEntry", repeated=True),
            _field("count", 11, F.TYPE_INT64),
        ],
        nested_type=[
            _entry("LabelsEntry", F.TYPE_STRING, F.TYPE_STRING),
            _entry("InnersEntry", F.TYPE_STRING, msg, ".wf.Inner"),
            _entry("StampsEntry", F.TYPE_INT32, msg, TS),
        ],
    )
    inner = descriptor_pb2.DescriptorProto(
        name="Inner", field=[_field("note", 1, F.TYPE_STRING), _field("when", 2, msg, TS)]
    )
    file = descriptor_pb2.FileDescriptorProto(
        name="wf/probe.proto",
        package="wf",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto"],
        message_type=[probe, inner],
    )
    pool.Add(file)
    return (
        GetMessageClass(pool.FindMessageTypeByName("wf.Probe")),
        GetMessageClass(pool.FindMessageTypeByName("wf.Inner")),
    )


Probe, Inner = _probe_classes()
NUL, TIME = wellformed.NUL, wellformed._TIME_LEAVES[wellformed.TIMESTAMP][1]
DURATION = wellformed._TIME_LEAVES[wellformed.DURATION][1]


def _nul(message: Any) -> Any:
    finder = wellformed.nul_finder(message.DESCRIPTOR)
    assert finder is not None
    return finder(message)


def _time(message: Any) -> Any:
    finder = wellformed.time_finder(message.DESCRIPTOR)
    assert finder is not None
    return finder(message)


def test_types_without_such_values_get_no_finder() -> None:
    assert wellformed.nul_finder(pb.SleepRequest.DESCRIPTOR) is None
    assert wellformed.time_finder(pb.EchoRequest.DESCRIPTOR) is None
    assert wellformed.nul_finder(timestamp_pb2.Timestamp.DESCRIPTOR) is None
    assert wellformed.time_finder(lead_service_pb2.ListLeadsRequest.DESCRIPTOR) is not None


@pytest.mark.parametrize(
    ("build", "path"),
    [
        (lambda p: setattr(p, "name", "a\x00"), "name"),
        (lambda p: p.tags.extend(["ok", "b\x00"]), "tags[2]"),
        (lambda p: p.labels.update({"k\x00": "v"}), 'labels["k\\u0000"]'),
        (lambda p: p.labels.update({"k": "\x00"}), 'labels["k"]'),
        (lambda p: p.inners["k"].MergeFrom(Inner(note="\x00")), 'inners["k"].note'),
        (lambda p: p.inner.MergeFrom(Inner(note="x\x00y")), "inner.note"),
        (lambda p: p.next.next.tags.append("\x00"), "next.next.tags[0]"),
    ],
)
def test_nul_found_with_its_path(build: Any, path: str) -> None:
    probe = Probe(name="clean", tags=["a"], labels={"k": "v"})
    assert _nul(probe) is None
    build(probe)
    assert _nul(probe) == (path, NUL)


def _at(message: Any, seconds: int = 0, nanos: int = 0) -> None:
    message.seconds, message.nanos = seconds, nanos


@pytest.mark.parametrize(
    ("build", "path", "why"),
    [
        (lambda p: _at(p.at, 253402300800), "at", TIME),
        (lambda p: _at(p.at, -62135596801), "at", TIME),
        (lambda p: _at(p.at, 0, -1), "at", TIME),
        (lambda p: _at(p.times.add(), 0, 1_000_000_000), "times[1]", TIME),
        (lambda p: _at(p.inner.when, 0, -5), "inner.when", TIME),
        (lambda p: _at(p.inners["x"].when, 0, -5), 'inners["x"].when', TIME),
        (lambda p: _at(p.stamps[3], 0, -5), "stamps[3]", TIME),
        (lambda p: _at(p.next.at, 0, -5), "next.at", TIME),
        (lambda p: _at(p.wait, 1, -1), "wait", DURATION),
        (lambda p: _at(p.wait, 315576000001), "wait", DURATION),
    ],
)
def test_time_out_of_range_found_with_its_path(build: Any, path: str, why: str) -> None:
    probe = Probe()
    _at(probe.at, 253402300799, 999_999_999)
    _at(probe.times.add(), -62135596800)
    _at(probe.wait, -315576000000, -999_999_999)
    _at(probe.inners["x"].when, 0, 0)
    assert _time(probe) is None
    build(probe)
    assert _time(probe) == (path, why)


def test_door_locates_invalid_utf8_in_nested_and_repeated_fields() -> None:
    inner = b"\x0a\x02\xc3\x28"  # Inner.note, not UTF-8
    body = b"\x12\x01a" + b"\x12\x02\xc3\x28"  # tags[1] broken
    assert door.locate(Probe.DESCRIPTOR, body) == ("tags[1]", "is not valid UTF-8")
    nested = b"\x42" + bytes([len(inner)]) + inner  # inner = 8
    assert door.locate(Probe.DESCRIPTOR, nested) == ("inner.note", "is not valid UTF-8")
    assert door.locate(Probe.DESCRIPTOR, b"\xff") == ("", "is not valid protobuf")


def test_markers_are_refused_by_validate_and_violations() -> None:
    decode = door.deserializer(pb.TallyEchoesRequest.FromString)
    assert decode is not None
    good = decode(pb.TallyEchoesRequest(message="a").SerializeToString())
    assert door.refusal(good) is None and violations(good) == []
    bad = decode(b"\x0a\x02\xc3\x28")
    assert isinstance(bad, pb.TallyEchoesRequest)
    refused = door.refusal(bad)
    assert refused is not None and refused.reason == door.UNDECODABLE
    assert [(v.field, v.description) for v in violations(bad)] == [
        ("message", "is not valid UTF-8")
    ]
    with pytest.raises(InvalidArgument) as err:
        validate(bad)
    assert err.value.reason == door.UNDECODABLE
    # One marker per type, problem and path: the same object the second time.
    assert decode(b"\x0a\x02\xc3\x28") is bad
    nul = decode(pb.TallyEchoesRequest(message="a\x00").SerializeToString())
    assert [(v.field, v.description) for v in violations(nul)] == [("message", NUL)]


def test_time_check_never_skips_a_message_holding_a_time() -> None:
    check = wellformed.time_check(Probe.DESCRIPTOR)
    assert check is not None and wellformed.time_check(pb.EchoRequest.DESCRIPTOR) is None
    clean = Probe(name="no times", tags=["a"], count=5)
    assert check(clean, clean.SerializeToString()) is None
    for build in (
        lambda p: _at(p.at, 1, -1),
        lambda p: _at(p.times.add(), 1, -1),
        lambda p: _at(p.inner.when, 1, -1),
        lambda p: _at(p.next.next.at, 1, -1),
        lambda p: _at(p.stamps[2], 1, -1),
        lambda p: _at(p.inners["k"].when, 1, -1),
        lambda p: _at(p.wait, 1, -1),
    ):
        probe = Probe()
        build(probe)
        assert check(probe, probe.SerializeToString()) is not None
