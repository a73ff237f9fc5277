"""clients/python/marque/client.py against a real in-process grpc.aio server."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from marque.client import bearer, connect
from marque.testing.v1 import testing_service_pb2 as pb
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc


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
        return pb.EchoResponse(message=request.message)

    async def StreamEcho(self, request: pb.StreamEchoRequest, context: Any) -> Any:
        md = dict(context.invocation_metadata() or ())
        self.auth.append(md.get("authorization"))
        for i in range(request.count):
            yield pb.StreamEchoResponse(message=request.message, index=i)


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
