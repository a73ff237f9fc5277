"""The Python client (marque.client + the generated stubs) against a real lead and member
service (tests/clients/serve.py): what the Node client's tests do, in Python."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
import pytest_asyncio
from marque.client import MarqueError, bearer, connect
from marque.lead.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc
from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc

from tests.clients.serve import Platform, services

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "clients" / "python" / "examples" / "submit_and_get.py"

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("submit_and_get_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with services(tmp_path_factory.mktemp("client-var")) as running:
        yield running


async def test_the_readme_example_submits_a_lead_and_reads_it_back(platform: Platform) -> None:
    example = _example()
    token = platform.tokens["service"]
    lead = await example.submit_and_get(platform.addresses["lead"], token)
    assert lead.id.startswith("L")
    assert lead.customer.mobile == "+8613800138000"
    assert lead.dealer_id == "D-SH-01"
    assert lead.grade != lead_pb2.LEAD_GRADE_UNSPECIFIED
    again = await example.submit_and_get(platform.addresses["lead"], lambda: token)
    assert again.id == lead.id


async def test_registers_a_member_and_earns_points(platform: Platform) -> None:
    async with connect(platform.addresses["member"], lambda: platform.tokens["service"]) as ch:
        members = member_service_pb2_grpc.MemberServiceStub(ch)
        registered = await members.RegisterMember(
            member_service_pb2.RegisterMemberRequest(
                request_id="py-reg-1",
                identity=member_service_pb2.IdentityKey(
                    type=member_pb2.IDENTITY_TYPE_MOBILE, value="139 1234 5678"
                ),
                display_name="Wang Fang",
                city="Shanghai",
            )
        )
        assert registered.created
        member_id = registered.member.id
        earned = await members.EarnPoints(
            member_service_pb2.EarnPointsRequest(
                member_id=member_id,
                points=1200,
                reason="vehicle purchase",
                source_ref="order-9",
                request_id="py-earn-1",
            ),
            timeout=5,
        )
        assert earned.member.points_balance == 1200
        read = await members.GetMember(member_service_pb2.GetMemberRequest(member_id=member_id))
        assert read.member.points_balance == 1200


async def test_a_bad_requests_field_violations_are_decoded(platform: Platform) -> None:
    async with connect(platform.addresses["lead"], platform.tokens["service"]) as ch:
        leads = lead_service_pb2_grpc.LeadServiceStub(ch)
        with pytest.raises(MarqueError) as caught:
            await leads.SubmitLead(
                lead_service_pb2.SubmitLeadRequest(
                    lead=lead_service_pb2.LeadInput(customer=lead_pb2.Customer(name="Li"))
                )
            )
    e = caught.value
    assert e.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert e.domain == "marque.lead"
    assert e.reason
    assert "request_id" in e.field_violations, e.field_violations
    assert "lead.vehicle" in e.field_violations, e.field_violations


async def test_a_business_rules_reason_is_decoded(platform: Platform) -> None:
    async with connect(platform.addresses["lead"], platform.tokens["channel"]) as ch:
        leads = lead_service_pb2_grpc.LeadServiceStub(ch)
        with pytest.raises(MarqueError) as caught:
            await leads.GetLead(lead_service_pb2.GetLeadRequest(id="L-any"))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.domain == "marque.lead"
    assert caught.value.reason


async def test_per_call_tokens_on_one_channel(platform: Platform) -> None:
    async with connect(platform.addresses["lead"]) as ch:
        leads = lead_service_pb2_grpc.LeadServiceStub(ch)
        with pytest.raises(MarqueError) as caught:
            await leads.ListDealers(lead_service_pb2.ListDealersRequest())
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        listed = await leads.ListDealers(
            lead_service_pb2.ListDealersRequest(city="Shanghai"),
            metadata=bearer(platform.tokens["oem"]),
        )
    assert sorted(d.id for d in listed.dealers) == ["D-SH-01", "D-SH-02"]
