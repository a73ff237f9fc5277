"""Tenant isolation over a real server, on both back ends: a reply never carries what the
caller could not read with GetLead, and request ids and channel lead ids belong to the
caller that sent them (DESIGN.md §8)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from marque.lead.v1 import lead_pb2, lead_service_pb2

from services.lead import store
from services.lead.tests.harness import (
    OEM,
    SERVICE,
    Harness,
    channel_caller,
    dealer_caller,
    lead_input,
    md,
    submit_request,
)

SH1, SH2 = dealer_caller("SH1"), dealer_caller("SH2")
WALK_IN = lead_pb2.CHANNEL_DEALER_WALK_IN


def walk_in(mobile: str, *, request_id: str, channel_lead_id: str = "", city: str = "Shanghai"):
    req = submit_request(
        mobile, channel=WALK_IN, request_id=request_id, channel_lead_id=channel_lead_id
    )
    req.lead.customer.city = city
    return req


def reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


async def get(lead: Harness, lead_id: str) -> lead_pb2.Lead:
    reply = await lead.stub.GetLead(lead_service_pb2.GetLeadRequest(id=lead_id), metadata=md(OEM))
    return reply.lead


async def reused(call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return reason(err.value)


# ---------------------------------------------------------------------- dealers' walk-ins


async def test_a_walk_in_of_another_dealers_customer_reveals_nothing(lead: Harness) -> None:
    first = await lead.submit(walk_in("13900001111", request_id="b-1"), SH2)
    assert first.outcome == lead_service_pb2.SUBMIT_OUTCOME_CREATED
    theirs = await get(lead, first.lead.id)
    assert theirs.dealer_id == "SH2"

    reply = await lead.submit(walk_in("13900001111", request_id="a-1", city="Chengdu"), SH1)
    assert reply.outcome == lead_service_pb2.SUBMIT_OUTCOME_OTHER_DEALER
    assert not reply.HasField("lead")
    # Recorded on SH2's lead, counted for SH1; nothing of SH2's lead was rewritten.
    after = await get(lead, first.lead.id)
    assert after.customer.city == "Shanghai"
    assert (after.dealer_id, after.customer, after.vehicle) == (
        theirs.dealer_id,
        theirs.customer,
        theirs.vehicle,
    )
    assert [(t.channel, t.dealer_id) for t in after.touchpoints] == [
        (WALK_IN, "SH2"),
        (WALK_IN, "SH1"),
    ]
    # A retry gets the same answer, and records nothing twice.
    again = await lead.submit(walk_in("13900001111", request_id="a-1", city="Chengdu"), SH1)
    assert again.outcome == lead_service_pb2.SUBMIT_OUTCOME_OTHER_DEALER
    assert not again.HasField("lead")
    assert await lead.count(store.touchpoints) == 2
    # SH1 still cannot read the lead.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.stub.GetLead(lead_service_pb2.GetLeadRequest(id=first.lead.id), metadata=md(SH1))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_walk_in_of_a_pool_lead_takes_it(lead: Harness) -> None:
    pooled = submit_request("13900002222", request_id="pool-1")
    pooled.lead.customer.city = "Lhasa"  # no dealer there: the lead waits in the OEM pool
    pooled.lead.customer.province = "Tibet"
    first = await lead.submit(pooled, SERVICE)
    assert first.lead.dealer_id == ""
    reply = await lead.submit(walk_in("13900002222", request_id="w-1"), SH1)
    assert reply.outcome == lead_service_pb2.SUBMIT_OUTCOME_MERGED
    assert (reply.lead.id, reply.lead.dealer_id) == (first.lead.id, "SH1")


async def test_request_ids_belong_to_the_dealer(lead: Harness) -> None:
    b = await lead.submit(walk_in("13900003333", request_id="shared-id"), SH2)
    a = await lead.submit(walk_in("13900004444", request_id="shared-id"), SH1)
    assert (b.outcome, a.outcome) == (lead_service_pb2.SUBMIT_OUTCOME_CREATED,) * 2
    assert a.lead.id != b.lead.id
    assert a.lead.customer.mobile == "+8613900004444"
    assert a.lead.dealer_id == "SH1"


async def test_walk_in_channel_lead_ids_belong_to_the_dealer(lead: Harness) -> None:
    b = await lead.submit(
        walk_in("13900005555", request_id="b-w", channel_lead_id="WALKIN-0001"), SH2
    )
    a = await lead.submit(
        walk_in("13900006666", request_id="a-w", channel_lead_id="WALKIN-0001"), SH1
    )
    assert (b.outcome, a.outcome) == (lead_service_pb2.SUBMIT_OUTCOME_CREATED,) * 2
    assert (a.lead.dealer_id, a.lead.customer.mobile) == ("SH1", "+8613900006666")
    # Within one dealer a resend is still a duplicate.
    resend = await lead.submit(
        walk_in("13900006666", request_id="a-w2", channel_lead_id="WALKIN-0001"), SH1
    )
    assert resend.outcome == lead_service_pb2.SUBMIT_OUTCOME_DUPLICATE
    assert resend.lead.id == a.lead.id


# ---------------------------------------------------------------------- channels


async def test_a_channel_learns_only_its_outcome_and_lead_id(lead: Harness) -> None:
    site = submit_request("13900007777", request_id="site-1")
    site.lead.customer.email = "han@example.com"
    first = await lead.submit(site, SERVICE)
    yiche = channel_caller("YICHE")
    reply = await lead.submit(
        submit_request("13900007777", channel=lead_pb2.CHANNEL_YICHE, request_id="yc-1"), yiche
    )
    assert reply.outcome == lead_service_pb2.SUBMIT_OUTCOME_MERGED
    assert reply.lead == lead_pb2.Lead(id=first.lead.id)
    # Its own retry and resend say no more.
    again = await lead.submit(
        submit_request("13900007777", channel=lead_pb2.CHANNEL_YICHE, request_id="yc-1"), yiche
    )
    assert again.outcome == lead_service_pb2.SUBMIT_OUTCOME_DUPLICATE
    assert again.lead == lead_pb2.Lead(id=first.lead.id)


async def test_a_channel_may_omit_its_channel(lead: Harness) -> None:
    req = submit_request("13900008888", request_id="ah-1")
    req.ClearField("channel")
    reply = await lead.submit(req, channel_caller("AUTOHOME"))
    assert reply.outcome == lead_service_pb2.SUBMIT_OUTCOME_CREATED
    assert (await get(lead, reply.lead.id)).channel == lead_pb2.CHANNEL_AUTOHOME
    # Another channel in the field stays refused.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.submit(
            submit_request("13900008889", channel=lead_pb2.CHANNEL_YICHE, request_id="ah-2"),
            channel_caller("AUTOHOME"),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == (
        "the token of channel AUTOHOME may only submit that channel's leads"
    )


# ---------------------------------------------------------------------- request ids reused


async def test_submit_with_a_reused_request_id_and_another_body_is_refused(
    lead: Harness,
) -> None:
    first = await lead.submit(submit_request("13900009991", request_id="r-1"))
    assert await reused(lead.submit(submit_request("13900009992", request_id="r-1"))) == (
        "REQUEST_ID_REUSED"
    )
    assert await lead.count(store.leads) == 1
    same = await lead.submit(submit_request("13900009991", request_id="r-1"))
    assert (same.outcome, same.lead.id) == (
        lead_service_pb2.SUBMIT_OUTCOME_DUPLICATE,
        first.lead.id,
    )


async def test_import_rows_with_a_reused_request_id_are_rejected(lead: Harness) -> None:
    async def stream() -> AsyncIterator[lead_service_pb2.ImportLeadsRequest]:
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13900009993"), request_id="i")
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13900009994"), request_id="i")
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13900009993"), request_id="i")

    summary = await lead.stub.ImportLeads(stream(), metadata=md(SERVICE))
    assert (summary.created, summary.duplicates, summary.rejected) == (1, 1, 1)
    assert [(r.row, r.field) for r in summary.rejections] == [(2, "request_id")]
    assert await lead.count(store.leads) == 1


async def test_status_and_assign_with_a_reused_request_id_are_refused(lead: Harness) -> None:
    one = (await lead.submit(submit_request("13900009995"))).lead
    two = (await lead.submit(submit_request("13900009996"))).lead

    def status(lead_id: str, value: int) -> lead_service_pb2.UpdateLeadStatusRequest:
        return lead_service_pb2.UpdateLeadStatusRequest(id=lead_id, status=value, request_id="s")  # type: ignore[arg-type]

    await lead.stub.UpdateLeadStatus(
        status(one.id, lead_pb2.LEAD_STATUS_CONTACTED), metadata=md(OEM)
    )
    for call in (
        lead.stub.UpdateLeadStatus(
            status(two.id, lead_pb2.LEAD_STATUS_CONTACTED), metadata=md(OEM)
        ),
        lead.stub.UpdateLeadStatus(status(one.id, lead_pb2.LEAD_STATUS_LOST), metadata=md(OEM)),
    ):
        assert await reused(call) == "REQUEST_ID_REUSED"
    assert (await get(lead, two.id)).status == lead_pb2.LEAD_STATUS_NEW
    retry = await lead.stub.UpdateLeadStatus(
        status(one.id, lead_pb2.LEAD_STATUS_CONTACTED), metadata=md(OEM)
    )
    assert retry.lead.id == one.id

    def assign(lead_id: str) -> lead_service_pb2.AssignLeadRequest:
        return lead_service_pb2.AssignLeadRequest(
            id=lead_id, dealer_id="SH2", reason="by hand", request_id="a"
        )

    await lead.stub.AssignLead(assign(one.id), metadata=md(OEM))
    assert await reused(lead.stub.AssignLead(assign(two.id), metadata=md(OEM))) == (
        "REQUEST_ID_REUSED"
    )
    # The same id from another caller is another request.
    other = await lead.stub.UpdateLeadStatus(
        status(two.id, lead_pb2.LEAD_STATUS_CONTACTED), metadata=md(SERVICE)
    )
    assert other.lead.status == lead_pb2.LEAD_STATUS_CONTACTED


async def test_create_dealer_with_a_reused_request_id_is_refused(lead: Harness) -> None:
    def create(dealer_id: str) -> lead_service_pb2.CreateDealerRequest:
        return lead_service_pb2.CreateDealerRequest(
            dealer=lead_pb2.Dealer(
                id=dealer_id,
                name=dealer_id,
                brands=["Marque"],
                province="Hubei",
                city="Wuhan",
                daily_capacity=5,
                active=True,
            ),
            request_id="d-new",
        )

    x = await lead.stub.CreateDealer(create("WH1"), metadata=md(OEM))
    assert await reused(lead.stub.CreateDealer(create("WH2"), metadata=md(OEM))) == (
        "REQUEST_ID_REUSED"
    )
    retry = await lead.stub.CreateDealer(create("WH1"), metadata=md(OEM))
    assert retry.dealer == x.dealer
    listed = await lead.stub.ListDealers(lead_service_pb2.ListDealersRequest(), metadata=md(OEM))
    assert "WH2" not in {d.id for d in listed.dealers}
