"""What a reply may carry, decided on plain data (domain/visibility.py): a dealer gets the
mobile and no other identity, a merge entry's reason and other people's member ids are for
OEM staff and services only, and who may look up, link and erase."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mesh.errors import PermissionDenied
from mesh.identity import Caller, Kind
from services.member.domain import visibility as vis
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.ledger import EntryKind
from services.member.domain.model import (
    IdentityRecord,
    MemberRecord,
    OwnershipRecord,
    TransactionRecord,
    VehicleRecord,
)
from services.member.domain.rules import MemberState
from services.member.domain.visibility import View

T0 = datetime(2025, 3, 1, tzinfo=UTC)
OEM = Caller(Kind.OEM, "staff-1")
SERVICE = Caller(Kind.SERVICE, "sales", service="sales")
DEALER = Caller(Kind.DEALER, "D1-staff", dealer_id="D1")
CUSTOMER = Caller(Kind.CUSTOMER, "app-m1", member_id="m1")
MOBILE = IdentityRecord(IdentityKey(IdentityType.MOBILE, "+8613800000001"), T0)
EMAIL = IdentityRecord(IdentityKey(IdentityType.EMAIL, "li@example.com"), T0)
MEMBER = MemberRecord(
    id="m1",
    state=MemberState.ACTIVE,
    merged_into="",
    display_name="Li Lei",
    city="",
    preferred_dealer_id="",
    balance=10,
    tier="",
    qualifying_points=10,
    identities=(MOBILE, EMAIL),
    create_time=T0,
    create_actor="service:sales",
    update_time=T0,
    update_actor="service:sales",
)


def entry(kind: EntryKind) -> TransactionRecord:
    return TransactionRecord(
        1, "pt_1", "m1", kind, 5, 15, "merged m2 into m1: staff note", "", "oem:staff-1", T0, None
    )


def test_a_dealer_sees_the_mobile_only() -> None:
    assert vis.member_shown(MEMBER, View.FULL) is MEMBER
    shown = vis.member_shown(MEMBER, View.MOBILE_ONLY)
    assert shown.identities == (MOBILE,)
    assert shown.display_name == "Li Lei" and shown.balance == 10


@pytest.mark.parametrize("kind", [EntryKind.MERGE_IN, EntryKind.MERGE_OUT])
def test_merge_reasons_are_for_staff_and_services(kind: EntryKind) -> None:
    for caller in (OEM, SERVICE):
        assert vis.transaction_shown(entry(kind), caller).reason.startswith("merged m2")
    for caller in (DEALER, CUSTOMER):
        assert vis.transaction_shown(entry(kind), caller).reason == vis.MERGE_NOTE
    assert vis.transaction_shown(entry(EntryKind.EARN), CUSTOMER).reason.startswith("merged")


def test_other_owners_of_a_car_are_not_named_to_customers_and_dealers() -> None:
    car = VehicleRecord(
        "LZ91AE3A4J3LSA560",
        "m2",
        "Marque",
        "M5",
        "2025-03-01",
        "D1",
        (OwnershipRecord("m1", T0, T0, "bind"), OwnershipRecord("m2", T0, None, "transfer")),
    )
    assert vis.vehicle_shown(car, OEM, "m1") is car
    for caller in (DEALER, CUSTOMER):
        shown = vis.vehicle_shown(car, caller, "m1")
        assert shown.owner_id == ""
        assert [h.member_id for h in shown.history] == ["m1", ""]
        assert vis.vehicle_shown(car, caller, "m2").owner_id == "m2"


def test_who_may_look_up_link_and_erase() -> None:
    vis.check_lookup(DEALER, IdentityType.MOBILE, "search members")
    vis.check_lookup(OEM, IdentityType.EMAIL, "search members")
    with pytest.raises(PermissionDenied) as e:
        vis.check_lookup(DEALER, IdentityType.EMAIL, "search members")
    assert e.value.reason == "DEALER_MOBILE_ONLY"
    assert e.value.message == "dealers may search members by mobile only"
    vis.check_may_link(SERVICE)
    with pytest.raises(PermissionDenied) as e:
        vis.check_may_link(CUSTOMER)
    assert e.value.reason == "IDENTITY_LINK_NEEDS_VERIFICATION"
    assert vis.may_erase(CUSTOMER, "m1") and not vis.may_erase(CUSTOMER, "m2")
    assert vis.may_erase(OEM, "m2")
    assert vis.must_be_seen(CUSTOMER) and vis.must_be_seen(DEALER)
    assert not vis.must_be_seen(SERVICE) and not vis.must_be_seen(OEM)
