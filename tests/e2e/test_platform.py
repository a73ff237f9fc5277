"""The platform as a user starts it: `python -m mesh.launcher` (what `make run` runs) starts
every service as its own process on the ports of DESIGN.md §10; a lead travels through it
over real sockets; Ctrl-C stops everything gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from marque.lead.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc

from mesh.catalog import existing
from mesh.identity import Caller, Kind
from mesh.keys import KeySet, load_keys, mint_token
from mesh.nats_server import NatsServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MOBILE = "13912345678"


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    services = existing()
    busy = [s.name for s in services if _busy(s.grpc_port) or _busy(s.metrics_port)]
    if busy:
        pytest.skip(f"ports of {', '.join(busy)} are taken by another process on this machine")
    var = tmp_path_factory.mktemp("var")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARQUE_", "OTEL_"))}
    env["MARQUE_VAR_DIR"] = str(var)
    # The launcher's own NATS needs 4222/1883/8222; where another NATS (or MQTT broker)
    # holds them, the platform is pointed at a NATS of the test's, as a user would.
    own_nats = NatsServer(var / "own-nats", port=0, monitor_port=0, mqtt_port=0)
    if any(_busy(p) for p in (4222, 1883, 8222)):
        own_nats.start()
        env["MARQUE_NATS_URL"] = own_nats.url
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh.launcher"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("Ctrl-C stops everything"):
            break
    banner = "".join(seen)
    if "Ctrl-C stops everything" not in banner:
        proc.kill()
        own_nats.stop()
        pytest.fail(f"the platform did not start:\n{banner}")
    try:
        yield var, banner
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        own_nats.stop()


def _keys(var: Path) -> KeySet:
    return load_keys({"MARQUE_VAR_DIR": str(var)})


def _auth(var: Path, caller: Caller) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {mint_token(caller, keys=_keys(var))}")]


def test_every_service_is_serving_and_announced(platform: tuple[Path, str]) -> None:
    _, banner = platform
    assert "  nats " in banner  # the embedded one, or MARQUE_NATS_URL's

    async def check() -> None:
        for s in existing():
            assert f"127.0.0.1:{s.grpc_port}" in banner
            async with grpc.aio.insecure_channel(f"127.0.0.1:{s.grpc_port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=5
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

    asyncio.run(check())


def test_a_lead_is_routed_merged_and_isolated_across_processes(
    platform: tuple[Path, str],
) -> None:
    var, _ = platform
    channel_caller = Caller(Kind.CHANNEL, "autohome-feed", channel="AUTOHOME")

    async def journey() -> None:
        async with grpc.aio.insecure_channel("127.0.0.1:50051") as channel:
            stub = lead_service_pb2_grpc.LeadServiceStub(channel)
            first = await stub.SubmitLead(
                lead_service_pb2.SubmitLeadRequest(
                    lead=lead_service_pb2.LeadInput(
                        customer=lead_pb2.Customer(
                            name="王小明",
                            mobile=f"+86 {MOBILE[:3]} {MOBILE[3:7]} {MOBILE[7:]}",
                            city="Shanghai",
                            province="Shanghai",
                        ),
                        vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M5"),
                        time_frame=lead_pb2.PURCHASE_TIME_FRAME_WITHIN_7_DAYS,
                    ),
                    channel=lead_pb2.CHANNEL_AUTOHOME,
                    channel_lead_id="ah-e2e-1",
                    request_id="e2e-1",
                ),
                metadata=_auth(var, channel_caller),
                timeout=10,
            )
            assert first.outcome == lead_service_pb2.SUBMIT_OUTCOME_CREATED
            # A channel is told its lead's id, nothing more; the OEM reads the lead.
            assert first.lead == lead_pb2.Lead(id=first.lead.id)
            oem = _auth(var, Caller(Kind.OEM, "staff-1"))
            lead = (
                await stub.GetLead(lead_service_pb2.GetLeadRequest(id=first.lead.id), metadata=oem)
            ).lead
            assert lead.customer.mobile == f"+86{MOBILE}"
            assert lead.grade == lead_pb2.LEAD_GRADE_H
            assert lead.dealer_id == "D-SH-01", lead.routing_reason

            again = await stub.SubmitLead(
                lead_service_pb2.SubmitLeadRequest(
                    lead=lead_service_pb2.LeadInput(
                        customer=lead_pb2.Customer(name="王小明", mobile=MOBILE),
                        vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M7"),
                    ),
                    channel=lead_pb2.CHANNEL_YICHE,
                    channel_lead_id="yc-e2e-1",
                    request_id="e2e-2",
                ),
                metadata=_auth(var, Caller(Kind.CHANNEL, "yiche-feed", channel="YICHE")),
                timeout=10,
            )
            assert again.outcome == lead_service_pb2.SUBMIT_OUTCOME_MERGED
            assert again.lead == lead_pb2.Lead(id=lead.id)
            merged = await stub.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=oem)
            assert len(merged.lead.touchpoints) == 2

            own = _auth(var, Caller(Kind.DEALER, "sales-1", dealer_id="D-SH-01"))
            got = await stub.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=own)
            assert got.lead.id == lead.id
            other = _auth(var, Caller(Kind.DEALER, "sales-9", dealer_id="D-BJ-01"))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=other)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(journey())

    metrics = urllib.request.urlopen("http://127.0.0.1:9451/metrics", timeout=5).read().decode()
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="SubmitLead",'
        'grpc_service="marque.lead.v1.LeadService",grpc_type="unary"} 2.0'
    ) in metrics
    assert 'marque_leads_submitted_total{channel="AUTOHOME",outcome="created"} 1.0' in metrics
    assert MOBILE not in metrics
    logs = "".join(p.read_text() for p in (var / "log").glob("*.log"))
    assert MOBILE not in logs and MOBILE[3:7] + " " + MOBILE[7:] not in logs


def test_a_member_registers_earns_and_sees_only_itself(platform: tuple[Path, str]) -> None:
    from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc

    var, _ = platform
    service = _auth(var, Caller(Kind.SERVICE, "sales", service="sales"))

    async def journey() -> None:
        async with grpc.aio.insecure_channel("127.0.0.1:50052") as channel:
            stub = member_service_pb2_grpc.MemberServiceStub(channel)
            identity = member_service_pb2.IdentityKey(
                type=member_pb2.IDENTITY_TYPE_MOBILE, value=MOBILE
            )
            reg = member_service_pb2.RegisterMemberRequest(identity=identity, request_id="e2e-m1")
            first = await stub.RegisterMember(reg, metadata=service, timeout=10)
            retried = await stub.RegisterMember(reg, metadata=service, timeout=10)
            assert first.created and retried == first  # a retry returns the same answer
            reg.request_id = "e2e-m2"  # the same person through another touchpoint
            again = await stub.RegisterMember(reg, metadata=service, timeout=10)
            assert not again.created
            member_id = first.member.id
            assert again.member.id == member_id
            earned = await stub.EarnPoints(
                member_service_pb2.EarnPointsRequest(
                    member_id=member_id, points=500, reason="delivery", request_id="e2e-e1"
                ),
                metadata=service,
                timeout=10,
            )
            assert earned.member.points_balance == 500
            own = _auth(var, Caller(Kind.CUSTOMER, "c1", member_id=member_id))
            got = await stub.GetMember(
                member_service_pb2.GetMemberRequest(member_id=member_id), metadata=own
            )
            assert got.member.points_balance == 500
            stranger = _auth(var, Caller(Kind.CUSTOMER, "c2", member_id="m-someone-else"))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.GetMember(
                    member_service_pb2.GetMemberRequest(member_id=member_id), metadata=stranger
                )
            assert e.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(journey())


def _rows(var: Path, service: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    import sqlite3

    with sqlite3.connect(var / f"{service}.db", timeout=10) as db:
        return db.execute(sql, args).fetchall()


def _eventually(probe: Callable[[], object], what: str, seconds: float = 20) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"not within {seconds:g} s: {what}")


def test_member_and_lead_affect_each_other_through_events(platform: tuple[Path, str]) -> None:
    """Over the launcher's real NATS: a member registered with a lead's mobile becomes the
    lead's member; the lead WON gives the member the dealer's lead relation; the member's
    erasure empties the lead of the person, in the trace of the erasure request."""
    from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc

    var, _ = platform
    mobile = "13700137000"
    oem = _auth(var, Caller(Kind.OEM, "staff-1"))
    sales = _auth(var, Caller(Kind.SERVICE, "sales", service="sales"))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = [*oem, ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01")]

    async def journey() -> tuple[str, str]:
        async with (
            grpc.aio.insecure_channel("127.0.0.1:50051") as lc,
            grpc.aio.insecure_channel("127.0.0.1:50052") as mc,
        ):
            leads = lead_service_pb2_grpc.LeadServiceStub(lc)
            members = member_service_pb2_grpc.MemberServiceStub(mc)
            submitted = await leads.SubmitLead(
                lead_service_pb2.SubmitLeadRequest(
                    lead=lead_service_pb2.LeadInput(
                        customer=lead_pb2.Customer(name="李雷", mobile=mobile, city="Shanghai"),
                        vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M5"),
                    ),
                    channel=lead_pb2.CHANNEL_BRAND_SITE,
                    request_id="ev-1",
                ),
                metadata=oem,
                timeout=10,
            )
            lead_id = submitted.lead.id
            identity = member_service_pb2.IdentityKey(
                type=member_pb2.IDENTITY_TYPE_MOBILE, value=mobile
            )
            member = await members.RegisterMember(
                member_service_pb2.RegisterMemberRequest(identity=identity, request_id="ev-m1"),
                metadata=sales,
                timeout=10,
            )
            member_id = member.member.id
            _eventually(
                lambda: _rows(
                    var,
                    "lead",
                    "SELECT 1 FROM leads WHERE id=? AND member_id=?",
                    lead_id,
                    member_id,
                ),
                "lead learns the member from MemberRegistered",
            )
            for status, rid in ((lead_pb2.LEAD_STATUS_CONTACTED, "ev-s1"),
                                (lead_pb2.LEAD_STATUS_WON, "ev-s2")):  # fmt: skip
                await leads.UpdateLeadStatus(
                    lead_service_pb2.UpdateLeadStatusRequest(
                        id=lead_id, status=status, request_id=rid
                    ),
                    metadata=oem,
                    timeout=10,
                )
            dealer = (
                submitted.lead.dealer_id
                or (
                    await leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead_id), metadata=oem)
                ).lead.dealer_id
            )
            _eventually(
                lambda: _rows(
                    var,
                    "member",
                    "SELECT 1 FROM dealer_relations WHERE member_id=? "
                    "AND dealer_id=? AND relation='lead'",
                    member_id,
                    dealer,
                ),
                "member records the dealer of the won lead",
            )
            await members.EraseMember(
                member_service_pb2.EraseMemberRequest(member_id=member_id, request_id="ev-e1"),
                metadata=traced,
                timeout=10,
            )
            _eventually(
                lambda: _rows(
                    var,
                    "lead",
                    "SELECT 1 FROM leads WHERE id=? AND name='' AND mobile_e164 IS NULL",
                    lead_id,
                ),
                "lead erases the person's lead after MemberErased",
            )
            got = await leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead_id), metadata=oem)
            assert got.lead.customer.mobile == "" and got.lead.customer.name == ""
            assert got.lead.channel == lead_pb2.CHANNEL_BRAND_SITE
            # The erasure is visible as done per service: lead's answer reached member.
            for _ in range(200):
                erasure = await members.GetErasureStatus(
                    member_service_pb2.GetErasureStatusRequest(member_id=member_id),
                    metadata=oem,
                    timeout=10,
                )
                if not erasure.pending:
                    break
                await asyncio.sleep(0.1)
            assert not erasure.pending, erasure
            assert {d.service: d.record_count for d in erasure.done} == {
                "member": 1,
                "lead": 1,
                "sales": 0,
            }
            return member_id, lead_id

    member_id, _ = asyncio.run(journey())
    done = _rows(
        var,
        "lead",
        "SELECT traceparent FROM outbox WHERE aggregate=? AND type LIKE '%LeadDataErased'",
        member_id,
    )
    assert len(done) == 1 and trace_id in str(done[0][0]), done  # one trace across the hop
    logs = "".join(p.read_text() for p in (var / "log").glob("*.log"))
    assert mobile not in logs and mobile[3:] not in logs
