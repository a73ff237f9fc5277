"""LeadService over a real in-process grpc.aio server (mesh.server.start), on SQLite and
PostgreSQL through the `database_url` fixture. Tokens are minted for each principal, so
the mesh's auth, access policy and validation run exactly as in production."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from marque.lead.v1 import lead_pb2, lead_service_pb2
from prometheus_client import REGISTRY

from mesh.identity import Caller, Kind
from mesh.validation import validates_stream
from services.lead import store
from services.lead.domain.config import LeadConfig
from services.lead.domain.model import Grade
from services.lead.tests.harness import (
    ADF_SAMPLES,
    DEALERS,
    OEM,
    SERVICE,
    Harness,
    channel_caller,
    dealer_caller,
    lead_input,
    md,
    sample,
    serve,
    submit_request,
    violations,
)

# ------------------------------------------------------------------------------ intake


CHANNELS = ["BRAND_SITE", "AUTOHOME", "YICHE", "TENCENT_ADS", "CALL_CENTER"]


async def test_each_channel_submits_its_own_leads(lead: Harness) -> None:
    for i, name in enumerate(CHANNELS):
        number = lead_pb2.Channel.Value(f"CHANNEL_{name}")
        resp = await lead.submit(
            submit_request(f"1391111{i:04d}", channel=number, channel_lead_id=f"{name}-1"),
            channel_caller(name),
        )
        assert resp.outcome == lead_service_pb2.SUBMIT_OUTCOME_CREATED
        # A channel is told its submission's lead id, nothing more (see test_isolation).
        assert resp.lead == lead_pb2.Lead(id=resp.lead.id)
        got = await lead.stub.GetLead(
            lead_service_pb2.GetLeadRequest(id=resp.lead.id), metadata=md(OEM)
        )
        assert got.lead.channel == number
        assert got.lead.dealer_id in {"SH1", "SH2"}
        assert got.lead.customer.mobile == f"+861391111{i:04d}"
        assert got.lead.grade == lead_pb2.LEAD_GRADE_A
        assert got.lead.rating_reasons and got.lead.routing_reason
        assert got.lead.HasField("follow_up_due_time")
    # A channel may not submit another channel's leads.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.submit(
            submit_request("13922220000", channel=lead_pb2.CHANNEL_YICHE),
            channel_caller("AUTOHOME"),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_dealer_walk_in_stays_with_the_dealer(lead: Harness) -> None:
    resp = await lead.submit(
        submit_request("13933330000", channel=lead_pb2.CHANNEL_DEALER_WALK_IN),
        dealer_caller("SH2"),
    )
    assert resp.lead.dealer_id == "SH2"
    assert resp.lead.channel == lead_pb2.CHANNEL_DEALER_WALK_IN
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.submit(submit_request("13933330001"), dealer_caller("SH2"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.skipif(not ADF_SAMPLES, reason="../shared/data/adf is not beside the checkout")
@pytest.mark.parametrize(("name", "document"), ADF_SAMPLES, ids=[n for n, _ in ADF_SAMPLES])
async def test_adf_samples(lead: Harness, name: str, document: str) -> None:
    req = lead_service_pb2.SubmitLeadRequest(raw_adf=document, request_id=f"adf-{name}")
    first = await lead.submit(req)
    assert first.outcome == lead_service_pb2.SUBMIT_OUTCOME_CREATED
    assert first.lead.channel == lead_pb2.CHANNEL_ADF
    assert first.lead.customer.mobile or first.lead.customer.email
    assert first.lead.touchpoints[0].payload_ref.startswith("sha256:")
    assert document not in first.lead.touchpoints[0].payload_ref
    # The same document again under a new request id: a resend (same ADF id) is a
    # duplicate; a document without an id merges into the same lead.
    again = await lead.submit(
        lead_service_pb2.SubmitLeadRequest(raw_adf=document, request_id=f"adf2-{name}")
    )
    assert again.lead.id == first.lead.id
    assert again.outcome in (
        lead_service_pb2.SUBMIT_OUTCOME_DUPLICATE,
        lead_service_pb2.SUBMIT_OUTCOME_MERGED,
    )
    assert await lead.count(store.leads) == 1


async def test_adf_without_contact_is_invalid_argument_on_raw_adf(lead: Harness) -> None:
    doc = "<adf><prospect><customer><contact><name>X</name></contact></customer></prospect></adf>"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.submit(lead_service_pb2.SubmitLeadRequest(raw_adf=doc, request_id="adf-bad"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_adf" in violations(err.value)
    assert await lead.count(store.leads) == 0


async def test_merge_resend_and_retry(lead: Harness) -> None:
    first = await lead.submit(
        submit_request(channel=lead_pb2.CHANNEL_AUTOHOME, channel_lead_id="ah-1", request_id="a")
    )
    assert first.outcome == lead_service_pb2.SUBMIT_OUTCOME_CREATED

    retried = await lead.submit(
        submit_request(channel=lead_pb2.CHANNEL_AUTOHOME, channel_lead_id="ah-1", request_id="a")
    )
    resent = await lead.submit(
        submit_request(channel=lead_pb2.CHANNEL_AUTOHOME, channel_lead_id="ah-1", request_id="b")
    )
    for r in (retried, resent):
        assert r.outcome == lead_service_pb2.SUBMIT_OUTCOME_DUPLICATE
        assert r.lead.id == first.lead.id
        assert len(r.lead.touchpoints) == 1

    merged = await lead.submit(
        submit_request(
            "+86 138-0013-8000",
            channel=lead_pb2.CHANNEL_YICHE,
            channel_lead_id="yc-7",
            request_id="c",
            time_frame=lead_pb2.PURCHASE_TIME_FRAME_WITHIN_7_DAYS,
        )
    )
    assert merged.outcome == lead_service_pb2.SUBMIT_OUTCOME_MERGED
    assert merged.lead.id == first.lead.id
    assert merged.lead.grade == lead_pb2.LEAD_GRADE_H
    assert [t.channel for t in merged.lead.touchpoints] == [
        lead_pb2.CHANNEL_AUTOHOME,
        lead_pb2.CHANNEL_YICHE,
    ]
    assert (await lead.count(store.leads), await lead.count(store.touchpoints)) == (1, 2)
    got = await lead.stub.GetLead(
        lead_service_pb2.GetLeadRequest(id=first.lead.id), metadata=md(OEM)
    )
    assert got.lead == merged.lead


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "lead.customer.name"),
        ({"mobile": "021 6555 1234"}, "lead.customer.mobile"),  # a Shanghai landline
        ({"time_frame": 99}, "lead.time_frame"),
    ],
    ids=["empty-name", "landline", "bad-time-frame"],
)
async def test_bad_input_is_invalid_argument_with_the_field(
    lead: Harness, change: dict[str, object], field: str
) -> None:
    req = submit_request()
    if "time_frame" in change:
        req.lead.time_frame = change["time_frame"]  # type: ignore[assignment]
    else:
        for k, v in change.items():
            setattr(req.lead.customer, k, v)
    before = sample("BRAND_SITE", "rejected")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.submit(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(err.value)
    for table in (store.leads, store.touchpoints, store.lead_keys):
        assert await lead.count(table) == 0, table.name
    assert await lead.count(store.request_ids) == len(DEALERS)  # the fixture's CreateDealer
    if "time_frame" not in change:  # the mesh refuses an undefined enum before the service
        assert sample("BRAND_SITE", "rejected") == before + 1


async def test_concurrent_submissions_of_one_mobile_make_one_lead(lead: Harness) -> None:
    reqs = [
        submit_request(
            "13844445555",
            channel=lead_pb2.CHANNEL_AUTOHOME,
            channel_lead_id=f"x{i}",
            request_id=f"r{i}",
        )
        for i in range(40)
    ]
    results = await asyncio.gather(*(lead.submit(r) for r in reqs))
    assert len({r.lead.id for r in results}) == 1
    outcomes = [r.outcome for r in results]
    assert outcomes.count(lead_service_pb2.SUBMIT_OUTCOME_CREATED) == 1
    assert outcomes.count(lead_service_pb2.SUBMIT_OUTCOME_MERGED) == 39
    assert (await lead.count(store.leads), await lead.count(store.touchpoints)) == (1, 40)


async def test_metrics_count_outcomes_and_grades(lead: Harness) -> None:
    def value(outcome: str) -> float:
        return sample("CALL_CENTER", outcome)

    grade_before = REGISTRY.get_sample_value("marque_leads_graded_total", {"grade": "A"}) or 0
    before = {o: value(o) for o in ("created", "merged", "duplicate")}
    req = submit_request("13866667777", channel=lead_pb2.CHANNEL_CALL_CENTER, request_id="m1")
    await lead.submit(req)
    await lead.submit(req)
    await lead.submit(
        submit_request("13866667777", channel=lead_pb2.CHANNEL_CALL_CENTER, request_id="m2")
    )
    assert {o: value(o) - before[o] for o in before} == {"created": 1, "merged": 1, "duplicate": 1}
    grade_after = REGISTRY.get_sample_value("marque_leads_graded_total", {"grade": "A"}) or 0
    assert grade_after - grade_before == 2


# ------------------------------------------------------------------------------ import


async def test_import_with_good_and_bad_rows(lead: Harness) -> None:
    def rows() -> Iterator[lead_service_pb2.ImportLeadsRequest]:
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13700000001"))
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("021 6555 1234"))
        nameless = lead_input("13700000002")
        nameless.customer.name = ""
        yield lead_service_pb2.ImportLeadsRequest(lead=nameless)
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13700000001"))  # merge
        yield lead_service_pb2.ImportLeadsRequest(raw_adf="<not-adf/>")
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13700000003"), request_id="i3")
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13700000003"), request_id="i3")

    async def stream() -> AsyncIterator[lead_service_pb2.ImportLeadsRequest]:
        for r in rows():
            yield r

    summary = await lead.stub.ImportLeads(stream(), metadata=md(SERVICE))
    assert (summary.received, summary.created, summary.merged) == (7, 2, 1)
    assert (summary.duplicates, summary.rejected) == (1, 3)
    assert [(r.row, r.field) for r in summary.rejections] == [
        (2, "lead.customer.mobile"),
        (3, "lead.customer.name"),
        (5, "raw_adf"),
    ]
    assert all(r.reason for r in summary.rejections)
    listed = await lead.stub.ListLeads(
        lead_service_pb2.ListLeadsRequest(channel=lead_pb2.CHANNEL_BULK_IMPORT), metadata=md(OEM)
    )
    assert len(listed.leads) == 2


async def test_import_row_breaking_a_proto_rule_is_rejected_alone(lead: Harness) -> None:
    async def stream() -> AsyncIterator[lead_service_pb2.ImportLeadsRequest]:
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13700000011"))
        bad = lead_input("13700000012")
        bad.customer.email = "not-an-email"
        yield lead_service_pb2.ImportLeadsRequest(lead=bad)
        yield lead_service_pb2.ImportLeadsRequest(lead=lead_input("13700000013"))

    summary = await lead.stub.ImportLeads(stream(), metadata=md(SERVICE))
    assert (summary.received, summary.created, summary.rejected) == (3, 2, 1)
    assert not validates_stream(
        lead_service_pb2.DESCRIPTOR.services_by_name["LeadService"].methods_by_name["ImportLeads"]
    )
    assert [(r.row, r.field) for r in summary.rejections] == [(2, "lead.customer.email")]


# ------------------------------------------------------------------------------ reads


async def test_dealer_isolation(lead: Harness) -> None:
    ids: dict[str, list[str]] = {}
    for i in range(4):
        resp = await lead.submit(submit_request(f"1385555000{i}"))
        ids.setdefault(resp.lead.dealer_id, []).append(resp.lead.id)
    assert set(ids) == {"SH1", "SH2"}
    mine, theirs = ids["SH1"][0], ids["SH2"][0]
    sh1 = md(dealer_caller("SH1"))
    got = await lead.stub.GetLead(lead_service_pb2.GetLeadRequest(id=mine), metadata=sh1)
    assert got.lead.dealer_id == "SH1"
    for call in (
        lead.stub.GetLead(lead_service_pb2.GetLeadRequest(id=theirs), metadata=sh1),
        lead.stub.UpdateLeadStatus(
            lead_service_pb2.UpdateLeadStatusRequest(
                id=theirs, status=lead_pb2.LEAD_STATUS_CONTACTED, request_id="iso"
            ),
            metadata=sh1,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # A dealer lists its own leads; asking for another dealer's (or the pool) finds nothing.
    listed = await lead.stub.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=sh1)
    assert {x.id for x in listed.leads} == set(ids["SH1"])
    for asked in ({"dealer_id": "SH2"}, {"unassigned_only": True}):
        listed = await lead.stub.ListLeads(lead_service_pb2.ListLeadsRequest(**asked), metadata=sh1)
        assert list(listed.leads) == [] and not listed.next_page_token
    named = await lead.stub.ListLeads(
        lead_service_pb2.ListLeadsRequest(dealer_id="SH1"), metadata=sh1
    )
    assert {x.id for x in named.leads} == set(ids["SH1"])
    everything = await lead.stub.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=md(OEM))
    assert len(everything.leads) == 4
    # Customers cannot read leads at all.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.stub.GetLead(
            lead_service_pb2.GetLeadRequest(id=mine),
            metadata=md(Caller(Kind.CUSTOMER, "c1", member_id="M1")),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_list_filters_and_paging(lead: Harness) -> None:
    frames = [
        lead_pb2.PURCHASE_TIME_FRAME_WITHIN_7_DAYS,
        lead_pb2.PURCHASE_TIME_FRAME_WITHIN_90_DAYS,
    ]
    created = []
    for i in range(11):
        resp = await lead.submit(
            submit_request(
                f"1361234{i:04d}",
                channel=lead_pb2.CHANNEL_AUTOHOME if i % 2 else lead_pb2.CHANNEL_YICHE,
                time_frame=frames[i % 2],
            )
        )
        created.append(resp.lead)
    oem = md(OEM)

    async def all_pages(req: lead_service_pb2.ListLeadsRequest) -> list[lead_pb2.Lead]:
        out: list[lead_pb2.Lead] = []
        while True:
            page = await lead.stub.ListLeads(req, metadata=oem)
            assert len(page.leads) <= (req.page_size or 50)
            out.extend(page.leads)
            if not page.next_page_token:
                return out
            req.page_token = page.next_page_token

    paged = await all_pages(lead_service_pb2.ListLeadsRequest(page_size=3))
    assert [x.id for x in paged] == [x.id for x in reversed(created)]  # newest first
    keys = [(x.create_time.ToDatetime(), x.id) for x in paged]
    assert keys == sorted(keys, reverse=True)

    autohome = await all_pages(
        lead_service_pb2.ListLeadsRequest(page_size=2, channel=lead_pb2.CHANNEL_AUTOHOME)
    )
    assert len(autohome) == 5 and all(x.channel == lead_pb2.CHANNEL_AUTOHOME for x in autohome)
    h = await all_pages(lead_service_pb2.ListLeadsRequest(grade=lead_pb2.LEAD_GRADE_H))
    assert len(h) == 6
    sh1 = await all_pages(lead_service_pb2.ListLeadsRequest(dealer_id="SH1", page_size=4))
    assert {x.dealer_id for x in sh1} == {"SH1"}
    assert await all_pages(lead_service_pb2.ListLeadsRequest(unassigned_only=True)) == []

    middle = created[5].create_time
    start = Timestamp(seconds=middle.seconds, nanos=middle.nanos)
    newer = await all_pages(lead_service_pb2.ListLeadsRequest(create_time_start=start))
    assert {x.id for x in newer} == {x.id for x in created[5:]}
    older = await all_pages(lead_service_pb2.ListLeadsRequest(create_time_end=start))
    assert {x.id for x in older} == {x.id for x in created[:5]}

    first = await lead.stub.ListLeads(lead_service_pb2.ListLeadsRequest(page_size=2), metadata=oem)
    for bad in (
        lead_service_pb2.ListLeadsRequest(
            page_size=2, page_token=first.next_page_token, grade=lead_pb2.LEAD_GRADE_H
        ),
        lead_service_pb2.ListLeadsRequest(page_token="not-a-token"),
        lead_service_pb2.ListLeadsRequest(page_size=-1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await lead.stub.ListLeads(bad, metadata=oem)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    default = await lead.stub.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=oem)
    assert len(default.leads) == 11 and not default.next_page_token


async def test_page_size_default_and_cap(lead: Harness) -> None:
    async def stream() -> AsyncIterator[lead_service_pb2.ImportLeadsRequest]:
        for i in range(1005):
            yield lead_service_pb2.ImportLeadsRequest(lead=lead_input(f"1357777{i:04d}"))

    summary = await lead.stub.ImportLeads(stream(), metadata=md(SERVICE))
    assert summary.created == 1005
    oem = md(OEM)
    default = await lead.stub.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=oem)
    assert len(default.leads) == 50 and default.next_page_token
    capped = await lead.stub.ListLeads(
        lead_service_pb2.ListLeadsRequest(page_size=5000), metadata=oem
    )
    assert len(capped.leads) == 1000 and capped.next_page_token


# ------------------------------------------------------------------------------ changes


async def test_status_transitions_and_overdue(database_url: str) -> None:
    # Every grade due at once: a new lead is overdue the moment it exists.
    config = LeadConfig(follow_up_days=dict.fromkeys(Grade, 0))
    async with serve(database_url, config) as lead:
        a = (await lead.submit(submit_request("13911110001"))).lead
        b = (await lead.submit(submit_request("13911110002"))).lead
        c = (await lead.submit(submit_request("13911110003"))).lead
        oem = md(OEM)

        async def status(
            lead_id: str, s: lead_pb2.LeadStatus, rid: str, reason: str = ""
        ) -> lead_pb2.Lead:
            req = lead_service_pb2.UpdateLeadStatusRequest(
                id=lead_id, status=s, request_id=rid, lost_reason=reason
            )
            return (await lead.stub.UpdateLeadStatus(req, metadata=oem)).lead

        contacted = await status(a.id, lead_pb2.LEAD_STATUS_CONTACTED, "s1")
        assert contacted.status == lead_pb2.LEAD_STATUS_CONTACTED
        assert (await status(a.id, lead_pb2.LEAD_STATUS_CONTACTED, "s1")) == contacted
        booked = await status(a.id, lead_pb2.LEAD_STATUS_TEST_DRIVE_BOOKED, "s2")
        won = await status(a.id, lead_pb2.LEAD_STATUS_WON, "s3")
        assert booked.status == lead_pb2.LEAD_STATUS_TEST_DRIVE_BOOKED
        assert won.status == lead_pb2.LEAD_STATUS_WON and not won.HasField("follow_up_due_time")
        lost = await status(b.id, lead_pb2.LEAD_STATUS_LOST, "s4", "bought a competitor")
        assert lost.lost_reason == "bought a competitor"

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await status(c.id, lead_pb2.LEAD_STATUS_LOST, "s5")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "lost_reason" in violations(err.value)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await status(a.id, lead_pb2.LEAD_STATUS_CONTACTED, "s6")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        overdue = await lead.stub.ListLeads(
            lead_service_pb2.ListLeadsRequest(overdue_only=True), metadata=oem
        )
        assert [x.id for x in overdue.leads] == [c.id]
        new = await lead.stub.ListLeads(
            lead_service_pb2.ListLeadsRequest(status=lead_pb2.LEAD_STATUS_NEW), metadata=oem
        )
        assert [x.id for x in new.leads] == [c.id]


async def test_assign_lead_is_oem_only(lead: Harness) -> None:
    created = (await lead.submit(submit_request("13977770000"))).lead
    other = "SH2" if created.dealer_id == "SH1" else "SH1"
    req = lead_service_pb2.AssignLeadRequest(
        id=created.id, dealer_id=other, reason="customer moved", request_id="as-1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.stub.AssignLead(req, metadata=md(dealer_caller(created.dealer_id)))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    moved = (await lead.stub.AssignLead(req, metadata=md(OEM))).lead
    assert moved.dealer_id == other and "customer moved" in moved.routing_reason
    assert (await lead.stub.AssignLead(req, metadata=md(OEM))).lead == moved
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.stub.AssignLead(
            lead_service_pb2.AssignLeadRequest(
                id=created.id, dealer_id="BJ1", reason="try", request_id="as-2"
            ),
            metadata=md(OEM),
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The new dealer sees it, the old one no longer does.
    got = await lead.stub.GetLead(
        lead_service_pb2.GetLeadRequest(id=created.id), metadata=md(dealer_caller(other))
    )
    assert got.lead.id == created.id


async def test_dealers_create_is_idempotent_and_list_pages(lead: Harness) -> None:
    oem = md(OEM)
    d = lead_pb2.Dealer(
        id="GZ1",
        name="Guangzhou",
        brands=["Marque", "Lumen"],
        province="Guangdong",
        city="Guangzhou",
        daily_capacity=5,
        active=True,
    )
    first = await lead.stub.CreateDealer(
        lead_service_pb2.CreateDealerRequest(dealer=d, request_id="gz"), metadata=oem
    )
    again = await lead.stub.CreateDealer(
        lead_service_pb2.CreateDealerRequest(dealer=d, request_id="gz"), metadata=oem
    )
    assert again.dealer == first.dealer
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lead.stub.CreateDealer(
            lead_service_pb2.CreateDealerRequest(dealer=d, request_id="gz-other"), metadata=oem
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    page1 = await lead.stub.ListDealers(
        lead_service_pb2.ListDealersRequest(page_size=2), metadata=oem
    )
    page2 = await lead.stub.ListDealers(
        lead_service_pb2.ListDealersRequest(page_size=2, page_token=page1.next_page_token),
        metadata=oem,
    )
    assert [x.id for x in page1.dealers] + [x.id for x in page2.dealers] == [
        "BJ1",
        "GZ1",
        "SH1",
        "SH2",
    ]
    lumen = await lead.stub.ListDealers(
        lead_service_pb2.ListDealersRequest(brand="lumen"), metadata=oem
    )
    assert [x.id for x in lumen.dealers] == ["GZ1"]


async def test_a_dealer_created_while_leads_flow_is_routed_to_at_once(lead: Harness) -> None:
    """The registry is cached for routing; creating a dealer through the service must not
    leave new leads of its city in the OEM pool until the cache expires."""

    def in_guangzhou(mobile: str) -> lead_service_pb2.SubmitLeadRequest:
        req = submit_request(mobile)
        req.lead.customer.city, req.lead.customer.province = "Guangzhou", "Guangdong"
        return req

    before = await lead.submit(in_guangzhou("13800138101"))
    assert before.lead.dealer_id == ""  # no dealer in Guangzhou or Guangdong yet: OEM pool
    gz = lead_pb2.Dealer(
        id="GZ9",
        name="Guangzhou Nine",
        brands=["Marque"],
        province="Guangdong",
        city="Guangzhou",
        daily_capacity=10,
        active=True,
    )
    await lead.stub.CreateDealer(
        lead_service_pb2.CreateDealerRequest(dealer=gz, request_id="gz9"), metadata=md(OEM)
    )
    after = await lead.submit(in_guangzhou("13800138102"))
    assert after.lead.dealer_id == "GZ9"


async def test_request_ids_are_forgotten_after_their_retention(database_url: str) -> None:
    """The sweeper runs in the served process: once a request id is older than the
    retention its row goes, and the lead it made stays."""
    async with serve(
        database_url, request_id_retention_days=0.5 / 86400, retention_sweep_seconds=0.05
    ) as lead:
        kept_at_start = await lead.count(store.request_ids)  # the fixture's CreateDealers
        resp = await lead.submit(submit_request("13800138201", request_id="forget-me"))
        assert kept_at_start + 1 >= await lead.count(store.request_ids) >= 1
        for _ in range(100):
            if await lead.count(store.request_ids) == 0:
                break
            await asyncio.sleep(0.05)
        assert await lead.count(store.request_ids) == 0
        assert await lead.count(store.leads) == 1
        got = await lead.stub.GetLead(
            lead_service_pb2.GetLeadRequest(id=resp.lead.id), metadata=md(OEM)
        )
        assert got.lead.id == resp.lead.id


def test_the_contract_declares_what_is_required() -> None:
    """Rules a client can see with `describe`, not only in the service's code."""
    from mesh.validation import violations as proto_violations

    req = submit_request("13800138000", request_id="c-1")
    req.lead.vehicle.brand = ""
    assert [v.field for v in proto_violations(req)] == ["lead.vehicle.brand"]
    req.lead.vehicle.brand = "Marque"
    req.lead.vehicle.model_year = 2026
    assert proto_violations(req) == []


async def test_a_lead_keeps_its_model_year(lead: Harness) -> None:
    req = submit_request("13800138111", request_id="y-1")
    req.lead.vehicle.model_year = 2026
    reply = await lead.submit(req)
    assert reply.lead.vehicle.model_year == 2026
    got = await lead.stub.GetLead(
        lead_service_pb2.GetLeadRequest(id=reply.lead.id), metadata=md(OEM)
    )
    assert got.lead.vehicle.model_year == 2026
