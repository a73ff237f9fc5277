"""mesh.client inside real mesh servers: a served call relays to another service.

The upstream servicer calls downstream through `mesh.client.channel_to`, so the downstream
sees this process's `service` token (accepted by mesh.auth), the original caller in
`x-marque-on-behalf-of`, and the upstream call's remaining deadline (from mesh.chain).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc
from marque.testing.v1 import testing_service_pb2 as pb
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc

from mesh import client
from mesh.auth import on_behalf_of
from mesh.config import Settings
from mesh.identity import Kind, current_caller
from mesh.server import ServiceSpec, start
from tests.mesh.serving import bearer, keys_in
from tests.mesh.testing_servicer import TestingServicer as _Base
from tests.mesh.testing_servicer import testing_servicer as _entry


class _Relay(_Base):
    """Relays Echo through mesh.client."""

    async def Relay(self, request: pb.RelayRequest, context: Any) -> pb.RelayResponse:
        stub = pb_grpc.TestingServiceStub(client.channel_to(request.target, service_name="lead"))
        return pb.RelayResponse(downstream=await stub.Echo(pb.EchoRequest(message="x")))


class _Downstream(_Base):
    """Echo answers with what the call carried: remaining deadline and on-behalf-of."""

    async def Echo(self, request: pb.EchoRequest, context: Any) -> pb.EchoResponse:
        remaining = context.time_remaining()
        return pb.EchoResponse(
            message=f"{remaining if remaining is not None else -1:.3f}|{on_behalf_of()}",
            caller=current_caller().ref,
        )


async def test_relay_carries_identity_and_deadline() -> None:
    # The client mints with the process's default keys (MARQUE_VAR_DIR); the servers verify
    # with the same development pair.
    var_dir = Path(os.environ["MARQUE_VAR_DIR"])
    keys = keys_in(var_dir)
    settings = Settings(service="lead", var_dir=var_dir, shutdown_grace=0.5)
    up = await start(
        ServiceSpec("lead", [_entry(_Relay())]), settings, keys=keys, serve_metrics=False
    )
    down = await start(
        ServiceSpec("lead", [_entry(_Downstream())]), settings, keys=keys, serve_metrics=False
    )
    try:
        async with grpc.aio.insecure_channel(up.address) as ch:
            stub = pb_grpc.TestingServiceStub(ch)
            oem = bearer(keys, Kind.OEM, subject="alice")
            for timeout, low, high in ((2.0, 1.0, 2.1), (None, 9.0, 10.1)):
                reply = await stub.Relay(
                    pb.RelayRequest(target=down.address, message="hi"),
                    metadata=oem,
                    timeout=timeout,
                )
                remaining, obo = reply.downstream.message.split("|")
                assert reply.downstream.caller == "service:lead"
                assert obo == "oem:alice"
                # With a 2 s caller deadline the downstream gets what is left of it; without
                # one, the client's 10 s default instead of "infinite".
                assert low < float(remaining) <= high
    finally:
        await client.close_channels()
        await up.stop(0.1)
        await down.stop(0.1)
