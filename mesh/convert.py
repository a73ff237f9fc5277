"""Proto ⇄ domain conversions every servicer needs, written once: timestamps, money, enums.

Domain code keeps aware UTC datetimes and string enums whose values are the proto enum's
names without their prefix (`Channel.AUTOHOME` is `CHANNEL_AUTOHOME`), so an `EnumMap`
is built from the two enums and the prefix, once at import, and a call costs one dict
look-up each way.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import Enum
from typing import Any, Generic, TypeVar

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp
from marque.common.v1.money_pb2 import Money

E = TypeVar("E", bound=Enum)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    """The Timestamp of an aware datetime, None for None (by arithmetic:
    `Timestamp.FromDatetime` goes through a time tuple and costs several times more)."""
    if value is None:
        return None
    delta = value - EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def datetime_of(ts: Timestamp) -> dt.datetime:
    """The aware UTC datetime of a Timestamp (the mesh has range-checked it at the door)."""
    return ts.ToDatetime(tzinfo=dt.UTC)


class EnumMap(Generic[E]):
    """A domain enum and a proto enum with the same names after `prefix`."""

    def __init__(
        self,
        domain: type[E],
        proto: EnumTypeWrapper,
        prefix: str,
        *,
        unspecified: E | None = None,
    ) -> None:
        self.out: dict[E, int] = {d: proto.Value(prefix + str(d.value)) for d in domain}
        self.into: dict[int, E] = {n: d for d, n in self.out.items()}
        if unspecified is not None:
            self.into[proto.Value(prefix + "UNSPECIFIED")] = unspecified

    def to_proto(self, value: E) -> Any:
        """The proto enum number of a domain value."""
        return self.out[value]

    def of(self, number: int) -> E | None:
        """The domain value of a proto number; None for UNSPECIFIED or an unknown number."""
        return self.into.get(number)


NANO = Decimal("0.000000001")


def money(amount: Decimal, currency: str = "CNY") -> Money:
    """google.type.Money of an exact amount (units and nanos share the amount's sign)."""
    units = int(amount)  # truncates toward zero, as Money wants
    nanos = int((amount - units) * 1_000_000_000)
    return Money(currency_code=currency, units=units, nanos=nanos)


def decimal_of(value: Money) -> Decimal:
    """The exact amount of a Money (the door has checked nanos' range)."""
    return Decimal(value.units) + Decimal(value.nanos) * NANO
