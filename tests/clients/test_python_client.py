"""clients/python/marque/client against a real in-process grpc.aio server."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import pickle
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from marque.client import MarqueError, bearer, connect, decode
from marque.client.errors import DETAILS_KEY
from marque.testing.v1 import testing_service_pb2 as pb
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc


def _rich_status() -> grpc.Status:
    details: list[Any] = [
        error_details_pb2.ErrorInfo(
            reason="INVALID_MOBILE", domain="marque.lead", metadata={"region": "CN"}
        ),
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="lead.customer.mobile", description="is not a mobile number"
                ),
                error_details_pb2.BadRequest.FieldViolation(
                    field="lead.customer.mobile", description="is too short"
                ),
                error_details_pb2.BadRequest.FieldViolation(
                    field="request_id", description="is required"
                ),
            ]
        ),
        error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)
        ),
    ]
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)
        packed.append(item)
    packed.append(any_pb2.Any(type_url="type.googleapis.com/example.Unknown", value=b"\x01"))
    return rpc_status.to_status(
        status_pb2.Status(
            code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
            message="customer.mobile: is not a mobile number",
            details=packed,
        )
    )


class Recorder(pb_grpc.TestingServiceServicer):
    def __init__(self) -> None:
        self.auth: list[str | None] = []
        self.fail_first = 0

    async def Echo(self, request: pb.EchoRequest, context: grpc.aio.ServicerContext) -> Any:
        md = dict(context.invocation_metadata() or ())
        self.auth.append(md.get("authorization"))
        if self.fail_first:
            self.fail_first -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        if request.fail_with == "rich":
            status = _rich_status()
            await context.abort(status.code, status.details, status.trailing_metadata)
        return pb.EchoResponse(message=request.message)

    async def Sleep(self, request: pb.SleepRequest, context: Any) -> Any:
        await asyncio.sleep(request.millis / 1000)
        return pb.SleepResponse(slept_millis=request.millis)

    async def StreamEcho(self, request: pb.StreamEchoRequest, context: Any) -> Any:
        md = dict(context.invocation_metadata() or ())
        self.auth.append(md.get("authorization"))
        for i in range(request.count):
            yield pb.StreamEchoResponse(message=request.message, index=i)
        if request.message == "fail":
            status = _rich_status()
            await context.abort(status.code, status.details, status.trailing_metadata)


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
async def plain() -> AsyncIterator[tuple[str, Recorder]]:
    rec = Recorder()
    server = grpc.aio.server()
    pb_grpc.add_TestingServiceServicer_to_server(rec, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", rec
    await server.stop(None)


async def test_static_token_on_every_call_kind(plain: tuple[str, Recorder]) -> None:
    target, rec = plain
    async with connect(target, "tok-1") as channel:
        stub = pb_grpc.TestingServiceStub(channel)
        await stub.Echo(pb.EchoRequest(message="a"))
        async for _ in stub.StreamEcho(pb.StreamEchoRequest(message="b", count=1)):
            pass
    assert rec.auth == ["Bearer tok-1", "Bearer tok-1"]


async def test_callable_token_and_per_call_bearer(plain: tuple[str, Recorder]) -> None:
    target, rec = plain
    tokens = iter(["t1", "t2"])
    async with connect(target, lambda: next(tokens)) as channel:
        stub = pb_grpc.TestingServiceStub(channel)
        await stub.Echo(pb.EchoRequest(message="a"))
        await stub.Echo(pb.EchoRequest(message="b"))
        await stub.Echo(pb.EchoRequest(message="c"), metadata=bearer("end-user"))
    assert rec.auth == ["Bearer t1", "Bearer t2", "Bearer end-user"]


async def test_no_token(plain: tuple[str, Recorder]) -> None:
    target, rec = plain
    async with connect(target) as channel:
        await pb_grpc.TestingServiceStub(channel).Echo(pb.EchoRequest(message="a"))
    assert rec.auth == [None]


async def test_retries_unavailable(plain: tuple[str, Recorder]) -> None:
    target, rec = plain
    rec.fail_first = 3
    async with connect(target, "t") as channel:
        reply = await pb_grpc.TestingServiceStub(channel).Echo(pb.EchoRequest(message="ok"))
    assert reply.message == "ok"
    assert len(rec.auth) == 4


async def test_tls_with_call_credentials() -> None:
    key_pem, cert_pem = _self_signed()
    rec = Recorder()
    server = grpc.aio.server()
    pb_grpc.add_TestingServiceServicer_to_server(rec, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    await server.start()
    try:
        async with connect(
            f"localhost:{port}", "tls-token", secure=True, root_certificates=cert_pem
        ) as channel:
            await pb_grpc.TestingServiceStub(channel).Echo(pb.EchoRequest(message="x"))
    finally:
        await server.stop(None)
    assert rec.auth == ["Bearer tls-token"]


def test_bearer() -> None:
    assert bearer("abc") == (("authorization", "Bearer abc"),)


async def test_a_per_call_token_wins_over_the_channel_token(plain: tuple[str, Recorder]) -> None:
    target, rec = plain
    async with connect(target, "channel-token") as channel:
        await pb_grpc.TestingServiceStub(channel).Echo(
            pb.EchoRequest(message="a"), metadata=bearer("end-user")
        )
    assert rec.auth == ["Bearer end-user"]


async def test_error_details_are_decoded(plain: tuple[str, Recorder]) -> None:
    target, _ = plain
    async with connect(target) as channel:
        with pytest.raises(MarqueError) as caught:
            await pb_grpc.TestingServiceStub(channel).Echo(
                pb.EchoRequest(message="x", fail_with="rich")
            )
    e = caught.value
    assert isinstance(e, grpc.aio.AioRpcError)  # code catching grpc's own error still works
    assert e.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert e.message == e.details() == "customer.mobile: is not a mobile number"
    assert (e.reason, e.domain, dict(e.metadata)) == (
        "INVALID_MOBILE",
        "marque.lead",
        {"region": "CN"},
    )
    assert e.field_violations == {
        "lead.customer.mobile": "is not a mobile number; is too short",
        "request_id": "is required",
    }
    assert e.retry_delay == 1.5
    assert e.details_list[-1].type_url.endswith("example.Unknown")
    assert "INVALID_ARGUMENT" in str(e) and "request_id: is required" in str(e)
    again = pickle.loads(pickle.dumps(e))
    assert (again.code(), again.reason, again.field_violations) == (
        e.code(),
        e.reason,
        e.field_violations,
    )


async def test_a_failing_server_stream_raises_marque_error(plain: tuple[str, Recorder]) -> None:
    target, _ = plain
    got: list[int] = []
    async with connect(target) as channel:
        with pytest.raises(MarqueError) as caught:
            async for reply in pb_grpc.TestingServiceStub(channel).StreamEcho(
                pb.StreamEchoRequest(message="fail", count=2)
            ):
                got.append(reply.index)
    assert got == [0, 1]
    assert caught.value.reason == "INVALID_MOBILE"


async def test_deadlines_default_and_per_call(plain: tuple[str, Recorder]) -> None:
    target, _ = plain
    async with connect(target, timeout=0.1) as channel:
        stub = pb_grpc.TestingServiceStub(channel)
        with pytest.raises(MarqueError) as caught:
            await stub.Sleep(pb.SleepRequest(millis=1000))
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        reply = await stub.Sleep(pb.SleepRequest(millis=200), timeout=5)
        assert reply.slept_millis == 200
    async with connect(target, timeout=None) as channel:
        reply = await pb_grpc.TestingServiceStub(channel).Sleep(pb.SleepRequest(millis=200))
        assert reply.slept_millis == 200


def test_decode_any_rpc_error() -> None:
    status = _rich_status()
    error = grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        status.details,
        None,
    )
    decoded = decode(error)
    assert decoded.reason == "INVALID_MOBILE"
    assert decode(decoded) is decoded
    bare = decode(
        grpc.aio.AioRpcError(
            grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "boom", None
        )
    )
    assert (bare.reason, bare.field_violations, bare.retry_delay, bare.status) == (
        "",
        {},
        None,
        None,
    )
    assert DETAILS_KEY == "grpc-status-details-bin"
