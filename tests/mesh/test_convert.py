"""mesh.convert: timestamps and enum maps between proto and domain."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from marque.lead.v1 import lead_pb2

from mesh.convert import EnumMap, datetime_of, timestamp


class Frame(StrEnum):
    WITHIN_7_DAYS = "WITHIN_7_DAYS"
    WITHIN_15_DAYS = "WITHIN_15_DAYS"
    WITHIN_30_DAYS = "WITHIN_30_DAYS"
    WITHIN_90_DAYS = "WITHIN_90_DAYS"
    LATER = "LATER"
    UNKNOWN = "UNKNOWN"


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 2, 7, 30, 1, 123456, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 2, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    ],
)
def test_timestamps_round_trip_and_match_protobuf(moment: dt.datetime) -> None:
    ts = timestamp(moment)
    reference = Timestamp()
    reference.FromDatetime(moment)
    assert ts == reference
    assert ts is not None and datetime_of(ts) == moment
    assert timestamp(None) is None


def test_enum_maps_both_ways_with_unspecified() -> None:
    frames = EnumMap(
        Frame, lead_pb2.PurchaseTimeFrame, "PURCHASE_TIME_FRAME_", unspecified=Frame.UNKNOWN
    )
    assert frames.to_proto(Frame.LATER) == lead_pb2.PURCHASE_TIME_FRAME_LATER
    assert frames.of(lead_pb2.PURCHASE_TIME_FRAME_WITHIN_7_DAYS) is Frame.WITHIN_7_DAYS
    assert frames.of(lead_pb2.PURCHASE_TIME_FRAME_UNSPECIFIED) is Frame.UNKNOWN
    assert frames.of(999) is None


def test_a_domain_value_the_proto_lacks_fails_at_import_not_per_call() -> None:
    class Bad(StrEnum):
        NEVER = "NEVER"

    with pytest.raises(ValueError):
        EnumMap(Bad, lead_pb2.PurchaseTimeFrame, "PURCHASE_TIME_FRAME_")
