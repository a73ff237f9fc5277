"""Validation messages in plain English on real request types, field paths unchanged."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message
from marque.common.v1 import money_pb2
from marque.lead.v1 import lead_pb2, lead_service_pb2
from marque.member.v1 import member_service_pb2

from mesh.errors import InvalidArgument
from mesh.validation import validate, violations


def worded(message: Message) -> dict[str, str]:
    return {v.field: v.description for v in violations(message)}


def test_required_in_its_many_protovalidate_spellings() -> None:
    found = worded(member_service_pb2.RecordConsentRequest())
    assert found["member_id"] == "is required"  # string.min_len = 1
    assert found["purpose"] == "is required"  # enum.not_in [0]
    assert found["request_id"] == "is required"
    assert worded(member_service_pb2.RegisterMemberRequest(request_id="r"))["identity"] == (
        "is required"  # required = true
    )
    assert worded(lead_service_pb2.SubmitLeadRequest(request_id="r"))["payload"] == "is required"


def test_bounds_lengths_and_formats() -> None:
    assert worded(lead_service_pb2.ListLeadsRequest(page_size=-1)) == {
        "page_size": "must be 0 or more"
    }
    lead = lead_service_pb2.SubmitLeadRequest(
        lead=lead_service_pb2.LeadInput(
            customer=lead_pb2.Customer(mobile="1" * 40, email="nope"),
            vehicle=lead_pb2.VehicleInterest(brand="Marque", model_year=3000),
        ),
        channel=lead_pb2.CHANNEL_BRAND_SITE,
        request_id="r",
    )
    found = worded(lead)
    assert found["lead.customer.mobile"] == "must be at most 32 characters"
    assert found["lead.customer.email"] == "must be an email address"
    assert found["lead.vehicle.model_year"] == "must be from 0 to 2100"
    points = worded(member_service_pb2.EarnPointsRequest(member_id="M", points=0, reason="x"))
    assert points["points"] == "must be more than 0 and at most 100000000"
    money = worded(money_pb2.Money(currency_code="cny", nanos=10**9))
    assert money == {
        "currency_code": "must match the pattern ^[A-Z]{3}$",
        "nanos": "must be from -999999999 to 999999999",
    }


def test_enums_and_repeated_items_keep_their_paths() -> None:
    dealer = lead_pb2.Dealer(id="D1", name="n", brands=["x" * 65], province="p", city="c")
    found = worded(lead_service_pb2.CreateDealerRequest(dealer=dealer, request_id="r"))
    assert found == {"dealer.brands[0]": "must be at most 64 characters"}
    empty = lead_pb2.Dealer(id="D1", name="n", province="p", city="c")
    found = worded(lead_service_pb2.CreateDealerRequest(dealer=empty, request_id="r"))
    assert found == {"dealer.brands": "is required"}
    listing = worded(lead_service_pb2.ListLeadsRequest(grade=99))  # type: ignore[arg-type]
    assert listing == {"grade": "must be one of the enum's defined values"}


def test_validate_summarises_with_the_same_words() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate(lead_service_pb2.ListLeadsRequest(page_size=-1))
    assert err.value.message == "invalid request: page_size: must be 0 or more"
