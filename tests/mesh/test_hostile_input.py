"""Hostile request bodies are INVALID_ARGUMENT at the door, for every service alike
(DESIGN.md §8): undecodable bytes, out-of-range timestamps, NUL bytes in strings. Never
INTERNAL or UNKNOWN, never a traceback per call."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from marque.lead.v1 import lead_pb2, lead_service_pb2
from marque.member.v1 import member_pb2, member_service_pb2
from marque.testing.v1 import testing_service_pb2 as pb

from mesh.config import Settings
from mesh.identity import Caller, Kind
from mesh.keys import mint_token
from mesh.server import ServiceSpec, start
from tests.mesh.serving import bearer, serve

TESTING = "/marque.testing.v1.TestingService"
LEAD = "/marque.lead.v1.LeadService"
MEMBER = "/marque.member.v1.MemberService"
OEM = (("authorization", f"Bearer {mint_token(Caller(Kind.OEM, 'staff-1'))}"),)
# A string field (1, length-delimited) carrying bytes that are not UTF-8.
BAD_UTF8 = b"\x0a\x02\xc3\x28"


def status_of(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    """(ErrorInfo reason, BadRequest field -> description) of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no google.rpc.Status: {error.code()} {error.details()}"
    reason, fields = "", {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            fields.update({v.field: v.description for v in br.field_violations})
    return reason, fields


async def refused(call: Any) -> tuple[str, dict[str, str]]:
    """Await a call that must fail with INVALID_ARGUMENT; its reason and violations."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return status_of(err.value)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


async def stream_of(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


def raw(ch: grpc.aio.Channel, method: str, kind: str = "unary_unary") -> Any:
    """A multicallable sending and receiving raw bytes (no serializers)."""
    return getattr(ch, kind)(method)


# ------------------------------------------------------------------ undecodable bodies


@pytest.mark.parametrize("body", [b"\xff", BAD_UTF8, b"\x0a\x05ab"], ids=["ff", "utf8", "short"])
@pytest.mark.parametrize("with_token", [True, False])
async def test_undecodable_unary_body_is_invalid_argument(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes, with_token: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve(tmp_path) as s:
        md = bearer(s.keys) if with_token else []
        for _ in range(3):
            reason, fields = await refused(raw(s.channel, f"{TESTING}/Echo")(body, metadata=md))
            assert reason == "UNDECODABLE_REQUEST"
        if body == BAD_UTF8:
            assert fields == {"message": "is not valid UTF-8"}
        # The server still answers.
        ok = await s.stub.Echo(pb.EchoRequest(message="hi"), metadata=bearer(s.keys))
        assert ok.message == "hi"
    no_tracebacks(caplog)


async def test_undecodable_server_stream_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(tmp_path) as s:
        call = raw(s.channel, f"{TESTING}/StreamEcho", "unary_stream")(b"\xff")

        async def drain() -> None:
            async for _ in call:
                pass

        reason, _ = await refused(drain())
        assert reason == "UNDECODABLE_REQUEST"
    no_tracebacks(caplog)


async def test_validated_client_stream_fails_at_the_undecodable_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = pb.CountEchoesRequest(message="a").SerializeToString()
    async with serve(tmp_path) as s:
        count = raw(s.channel, f"{TESTING}/CountEchoes", "stream_unary")
        reason, fields = await refused(count(stream_of([good, BAD_UTF8, good])))
        assert reason == "UNDECODABLE_REQUEST" and fields == {"message": "is not valid UTF-8"}
    no_tracebacks(caplog)


async def test_delivering_client_stream_gets_a_row_it_rejects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = pb.TallyEchoesRequest(message="a").SerializeToString()
    async with serve(tmp_path) as s:
        tally = raw(s.channel, f"{TESTING}/TallyEchoes", "stream_unary")
        reply = pb.TallyEchoesResponse.FromString(
            await tally(stream_of([good, b"\xff", good, BAD_UTF8, good]))
        )
        assert reply.valid == 3 and list(reply.invalid_rows) == [2, 4]
    no_tracebacks(caplog)


# ------------------------------------------------------------ lead and member services


@asynccontextmanager
async def service(spec: ServiceSpec, database_url: str) -> AsyncIterator[grpc.aio.Channel]:
    settings = Settings(service=spec.name, grpc_port=0, metrics_port=0, database_url=database_url)
    running = await start(spec, settings, serve_metrics=False)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            yield ch
    finally:
        await running.stop(1.0)


def lead_row(mobile: str) -> bytes:
    return lead_service_pb2.ImportLeadsRequest(
        lead=lead_service_pb2.LeadInput(
            customer=lead_pb2.Customer(
                name="Han Meimei", mobile=mobile, city="Shanghai", province="Shanghai"
            ),
            vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M5"),
            consents=lead_pb2.Consents(contact=True, share_with_dealer=True),
        ),
        request_id=f"row-{mobile}",
    ).SerializeToString()


@pytest.fixture
async def lead(database_url: str) -> AsyncIterator[grpc.aio.Channel]:
    from services.lead.app import build_spec

    async with service(build_spec(events=False), database_url) as ch:
        yield ch


@pytest.fixture
async def member(database_url: str) -> AsyncIterator[grpc.aio.Channel]:
    from services.member.app import build_spec

    async with service(build_spec(events=False), database_url) as ch:
        yield ch


async def call(ch: grpc.aio.Channel, method: str, request: Message, md: Any = OEM) -> Any:
    return await raw(ch, method)(request.SerializeToString(), metadata=md)


async def test_import_leads_rejects_an_undecodable_row_and_goes_on(
    lead: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [lead_row("13800138001"), b"\xff", lead_row("13800138002")]
    body = await raw(lead, f"{LEAD}/ImportLeads", "stream_unary")(stream_of(rows), metadata=OEM)
    reply = lead_service_pb2.ImportLeadsResponse.FromString(body)
    assert (reply.received, reply.created, reply.rejected) == (3, 2, 1)
    assert [r.row for r in reply.rejections] == [2]
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("start", "path"),
    [
        (Timestamp(seconds=253402300800), "create_time_start"),
        (Timestamp(seconds=-62135596801), "create_time_start"),
        (Timestamp(seconds=0, nanos=-1), "create_time_start"),
        (Timestamp(seconds=0, nanos=1_000_000_000), "create_time_start"),
    ],
)
async def test_list_leads_timestamp_out_of_range(
    lead: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, start: Timestamp, path: str
) -> None:
    request = lead_service_pb2.ListLeadsRequest(create_time_start=start)
    reason, fields = await refused(call(lead, f"{LEAD}/ListLeads", request))
    assert reason == "INVALID_REQUEST" and list(fields) == [path]
    # The extremes themselves are fine.
    for edge in (
        Timestamp(seconds=253402300799, nanos=999_999_999),
        Timestamp(seconds=-62135596800),
    ):
        await call(
            lead, f"{LEAD}/ListLeads", lead_service_pb2.ListLeadsRequest(create_time_end=edge)
        )
    no_tracebacks(caplog)


async def test_nul_bytes_are_refused_at_the_door(
    lead: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    _, fields = await refused(
        call(lead, f"{LEAD}/GetLead", lead_service_pb2.GetLeadRequest(id="L\x00"))
    )
    assert list(fields) == ["id"]
    nested = lead_service_pb2.SubmitLeadRequest(
        lead=lead_service_pb2.LeadInput(customer=lead_pb2.Customer(name="a\x00b")),
        channel=lead_pb2.CHANNEL_BRAND_SITE,
        request_id="nul-1",
    )
    _, fields = await refused(call(lead, f"{LEAD}/SubmitLead", nested))
    assert "lead.customer.name" in fields
    no_tracebacks(caplog)


async def test_member_nul_and_timestamp(
    member: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    register = member_service_pb2.RegisterMemberRequest(
        identity=member_service_pb2.IdentityKey(
            type=member_pb2.IDENTITY_TYPE_MOBILE, value="13800138000"
        ),
        display_name="a\x00b",
        request_id="r-1",
    )
    _, fields = await refused(call(member, f"{MEMBER}/RegisterMember", register))
    assert "display_name" in fields
    consent = member_service_pb2.RecordConsentRequest(
        member_id="M1",
        purpose=member_pb2.CONSENT_PURPOSE_MARKETING_SMS,
        channel=member_pb2.CONSENT_CHANNEL_APP,
        action=member_pb2.CONSENT_ACTION_GRANT,
        occur_time=Timestamp(seconds=1, nanos=-1),
        source="test",
        request_id="c-1",
    )
    _, fields = await refused(call(member, f"{MEMBER}/RecordConsent", consent))
    assert list(fields) == ["occur_time"]
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("/grpc.health.v1.Health/Check", "unary_unary"),
        ("/grpc.health.v1.Health/Watch", "unary_stream"),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "stream_stream"),
    ],
)
async def test_health_and_reflection_refuse_undecodable_bodies_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, method: str, kind: str
) -> None:
    """Probes and tooling are outside the chain, yet just as public."""
    async with serve(tmp_path) as s:
        multicallable = raw(s.channel, method, kind)
        body: Any = stream_of([b"\xff"]) if kind.startswith("stream") else b"\xff"

        async def drain() -> None:
            result = multicallable(body, timeout=5)
            if kind.endswith("stream"):
                async for _ in result:
                    pass
            else:
                await result

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await drain()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    no_tracebacks(caplog)
