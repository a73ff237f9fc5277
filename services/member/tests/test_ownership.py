"""Who owns a car and which dealers a member relates to, decided on plain data
(domain/vehicles.py, domain/relations.py, domain/identities.py `needs_link`)."""

from __future__ import annotations

import pytest

from mesh.errors import FailedPrecondition, InvalidArgument, NotFound
from services.member.domain import identities, vehicles
from services.member.domain.relations import DealerRelation, Relation
from services.member.domain.vehicles import Binding

VIN = "LZ91AE3A4J3LSA560"


def test_binding_claims_a_new_or_released_vin_and_refuses_another_owners() -> None:
    assert vehicles.bind("m1", known=False, owner_id=None) is Binding.NEW
    assert vehicles.bind("m1", known=True, owner_id=None) is Binding.CLAIM
    assert vehicles.bind("m1", known=True, owner_id="m1") is Binding.KEEP
    with pytest.raises(FailedPrecondition) as e:
        vehicles.bind("m1", known=True, owner_id="m2")
    assert e.value.reason == "VIN_OWNED_BY_OTHER_MEMBER"
    assert "TransferVehicle" in e.value.message


def test_a_transfer_changes_the_owner_unless_it_is_the_owner_already() -> None:
    assert vehicles.transfer(VIN, "m2", known=True, owner_id="m1")
    assert vehicles.transfer(VIN, "m2", known=True, owner_id=None)
    assert not vehicles.transfer(VIN, "m2", known=True, owner_id="m2")
    with pytest.raises(NotFound) as e:
        vehicles.transfer(VIN, "m2", known=False, owner_id=None)
    assert e.value.reason == "VEHICLE_NOT_FOUND"
    assert e.value.message == f"vehicle {VIN} not found"


def test_a_service_relation_names_a_car_the_member_owns() -> None:
    lead = DealerRelation.of("D1", Relation.LEAD, "")
    lead.check_owner("m1", None)  # no car: nothing to own
    with pytest.raises(InvalidArgument) as bad:
        DealerRelation.of("D1", Relation.SERVICE, "")
    assert [v.field for v in bad.value.field_violations] == ["vin"]
    service = DealerRelation.of("D1", Relation.SERVICE, VIN)
    service.check_owner("m1", "m1")
    for owner in ("m2", None):
        with pytest.raises(FailedPrecondition) as e:
            service.check_owner("m1", owner)
        assert e.value.reason == "VIN_NOT_OWNED_BY_MEMBER"


def test_an_identity_links_once_and_never_to_a_second_member() -> None:
    assert identities.needs_link("m1", None)
    assert not identities.needs_link("m1", "m1")
    with pytest.raises(FailedPrecondition) as e:
        identities.needs_link("m1", "m2")
    assert e.value.reason == "IDENTITY_BELONGS_TO_OTHER_MEMBER"
