"""Seeded random request messages for the RPC fuzz: valid-looking values mixed with hostile
ones (NUL bytes, invalid and out-of-range timestamps, huge and negative numbers, undefined
enum numbers, forged page tokens, very long strings), for any message descriptor."""

from __future__ import annotations

import base64
import random
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from marque.common.v1 import paging_pb2

F = FieldDescriptor
MAX_DEPTH = 4

STRINGS = [
    "",
    "a",
    "M1",
    "L1",
    "D-SH-01",
    "SH1",
    "13800138000",
    "+86 138 0013 8000",
    "han@example.com",
    "Marque",
    "Shanghai",
    "上海",
    "🚗🚗",
    "2026-01-01",
    "9999-12-31",
    "0000-00-00",
    "<adf><prospect/></adf>",
    "' OR 1=1 --",
    "%s%n%x",
    "\u202eevil",
    "a\x00b",
    "\x00",
    " " * 3,
    "x" * 129,
    "y" * 5000,
    "z" * 70_000,
]
INTS = [0, 1, 2, 7, 100, 1000, 10**6, 2**31 - 1, 2**32 - 1, 2**53, 2**63 - 1, 2**64 - 1]
INTS += [-1, -7, -(2**31), -(2**63)]
LIMITS = {
    F.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    F.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    F.CPPTYPE_UINT32: (0, 2**32 - 1),
    F.CPPTYPE_UINT64: (0, 2**64 - 1),
}
# (seconds, nanos): fine, the extremes, and out of range.
TIMES = [
    (1_767_225_600, 0),
    (0, 0),
    (-62_135_596_800, 0),
    (253_402_300_799, 999_999_999),
    (253_402_300_800, 0),
    (-62_135_596_801, 0),
    (1, -1),
    (1, 1_000_000_000),
    (2**63 - 1, 0),
    (-(2**63), -(2**31)),
]
FLOATS = [0.0, 1.5, -1.0, 1e308, float("inf"), float("-inf"), float("nan")]


def page_tokens(rng: random.Random) -> list[str]:
    """Tokens a client could forge: garbage, readable cursors with any key, random bytes."""
    forged = paging_pb2.PageCursor(
        after_key=rng.choice(["99999999999999999999999", "-1|x", "x", "1|" + "L" * 40]),
        filter_hash=rng.choice(["", "0123456789abcdef"]),
    )
    raw = forged.SerializeToString()
    return [
        "garbage!",
        "%%%",
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw + bytes(16)).decode(),
        base64.urlsafe_b64encode(rng.randbytes(rng.randint(1, 64))).decode(),
    ]


def _adf(request_date: str = "2026-01-01T08:00:00+08:00", frame: str = "", phone: str = "") -> str:
    return (
        f"<?xml version='1.0'?><adf><prospect><requestdate>{request_date}</requestdate>"
        "<vehicle interest='buy'><make>Marque</make><model>M5</model><year>2026</year></vehicle>"
        "<customer><contact><name part='full'>Li Wei</name>"
        f"<phone>{phone or '13800138000'}</phone></contact>{frame}</customer></prospect></adf>"
    )


# ADF documents that are valid XML with hostile content: extreme and broken dates, huge
# spans, odd phones, an entity expansion, deep nesting.
ADF_DOCS = [
    _adf("9999-12-31T23:59:59-23:00"),
    _adf("0001-01-01T00:00:00+23:59"),
    _adf("99999-01-01"),
    _adf("2026-02-30T25:61:61"),
    _adf("0001-01-01", "<timeframe><latestdate>9999-12-31</latestdate></timeframe>"),
    _adf("9999-12-31", "<timeframe><earliestdate>0001-01-01</earliestdate></timeframe>"),
    _adf(
        frame="<timeframe><description>within 99999999999999999999 years</description></timeframe>"
    ),
    _adf(frame="<timeframe><description>within 0 days</description></timeframe>"),
    _adf(phone="+" + "9" * 40),
    _adf(phone="\u200b13800138000"),
    "<!DOCTYPE adf [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
    "<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]><adf><prospect><customer><contact>"
    "<name>&c;</name><phone>13800138000</phone></contact></customer></prospect></adf>",
    "<adf>" + "<x>" * 400 + "</x>" * 400 + "</adf>",
]

# Valid-looking values by field name, so requests get past validation to the service.
BENIGN = {
    "mobile": "13800138000",
    "email": "han@example.com",
    "currency_code": "CNY",
    "purchase_date": "2026-01-01",
    "vin": "LSVAM4187C2184847",
    "raw_adf": "<adf><prospect><customer><contact><name>Li Wei</name><phone>13800138000</phone>"
    "</contact></customer><vehicle><make>Marque</make></vehicle></prospect></adf>",
    "app_id": "",
    "value": "13800138000",
    "page_token": "",
}
BENIGN_STRINGS = ["M1", "L1", "SH1", "D-SH-01", "Marque", "Shanghai", "Han Meimei", "req-1"]


def _numbers(field: FieldDescriptor) -> list[int]:
    enum: Any = field.enum_type
    return [v.number for v in enum.values]


class Generator:
    """Random messages of any type, reproducible from the seed: each value is hostile with
    probability `hostile` (chosen per message), else valid-looking."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fill = 0.7  # the share of fields set
        self.hostile = 0.0

    def message(self, cls: Any, hostile: float | None = None) -> Any:
        """A random instance of the message class `cls`."""
        self.hostile = self.rng.choice([0.0, 0.05, 0.1, 0.3, 1.0]) if hostile is None else hostile
        self.fill = 0.9 if self.hostile < 0.1 else 0.7
        message = cls()
        self._fill(message, cls.DESCRIPTOR, 0)
        return message

    def _benign(self, field: FieldDescriptor) -> Any:
        rng = self.rng
        kind = field.type
        if kind == F.TYPE_STRING:
            return BENIGN.get(field.name, rng.choice(BENIGN_STRINGS))
        if kind == F.TYPE_ENUM:
            return rng.choice([n for n in _numbers(field) if n] or [0])
        if kind == F.TYPE_BOOL:
            return True
        if kind == F.TYPE_BYTES:
            return b"x"
        if field.cpp_type in (F.CPPTYPE_FLOAT, F.CPPTYPE_DOUBLE):
            return 1.5
        return rng.choice([1, 2, 7, 100])

    def _fill(self, message: Any, descriptor: Descriptor, depth: int) -> None:
        rng = self.rng
        chosen: set[str] = set()  # oneofs with a member set: a valid-looking one sets one
        for field in descriptor.fields:
            oneof = field.containing_oneof
            if rng.random() > self.fill or (oneof and oneof.name in chosen and not self._hostile()):
                continue
            if oneof is not None:
                chosen.add(oneof.name)
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                self._map(message, field, depth)
            elif field.is_repeated:
                target = getattr(message, field.name)
                for _ in range(rng.choice([1, 1, 2, 3, 25]) if self._hostile() else 1):
                    if entry is not None:
                        if depth < MAX_DEPTH:
                            self._set_message(target.add(), entry, depth + 1)
                    else:
                        target.append(self.scalar(field))
            elif entry is not None:
                if depth < MAX_DEPTH:
                    self._set_message(getattr(message, field.name), entry, depth + 1)
            else:
                setattr(message, field.name, self.scalar(field))

    def _map(self, message: Any, field: FieldDescriptor, depth: int) -> None:
        entry: Any = field.message_type
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        target = getattr(message, field.name)
        for _ in range(self.rng.randint(1, 3)):
            key = self.scalar(key_field)
            if value_field.message_type is not None:
                if depth < MAX_DEPTH:
                    self._set_message(target[key], value_field.message_type, depth + 1)
            else:
                target[key] = self.scalar(value_field)

    def _set_message(self, message: Any, descriptor: Descriptor, depth: int) -> None:
        name = descriptor.full_name
        if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            message.seconds, message.nanos = self.rng.choice(
                TIMES if self._hostile() else TIMES[:2]
            )
        elif name == "google.protobuf.FieldMask":
            message.paths.extend(self.rng.sample([*STRINGS[:12], "*", "a.b.c"], 2))
        else:
            self._fill(message, descriptor, depth)

    def _hostile(self) -> bool:
        return self.rng.random() < self.hostile

    def scalar(self, field: FieldDescriptor) -> Any:
        """A random value of a scalar field's type."""
        if not self._hostile():
            return self._benign(field)
        rng = self.rng
        kind = field.type
        if kind == F.TYPE_STRING:
            if field.name.endswith("page_token"):
                return rng.choice(page_tokens(rng))
            if field.name == "raw_adf" and rng.random() < 0.5:
                return rng.choice(ADF_DOCS)
            return rng.choice(STRINGS)
        if kind == F.TYPE_BYTES:
            return rng.randbytes(rng.choice([0, 1, 16, 300]))
        if kind == F.TYPE_BOOL:
            return rng.random() < 0.5
        if kind == F.TYPE_ENUM:
            numbers = _numbers(field)
            return rng.choice([*numbers, *numbers, 0, 99, -1, 2**31 - 1])
        if field.cpp_type in (F.CPPTYPE_FLOAT, F.CPPTYPE_DOUBLE):
            value = rng.choice(FLOATS)
            return max(min(value, 3e38), -3e38) if field.cpp_type == F.CPPTYPE_FLOAT else value
        lo, hi = LIMITS[field.cpp_type]
        value = rng.choice(INTS) * rng.choice([1, 1, 1, -1])
        return min(max(value, lo), hi)
