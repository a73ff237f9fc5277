"""A small TestingService implementation the mesh tests serve."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from marque.testing.v1 import testing_service_pb2 as pb
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import TracerProvider

from mesh import chain, tracing
from mesh.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from mesh.identity import current_caller
from mesh.server import Servicer
from mesh.validation import violations

_ERRORS: dict[str, type[DomainError]] = {
    "not_found": NotFound,
    "already_exists": AlreadyExists,
    "failed_precondition": FailedPrecondition,
    "permission_denied": PermissionDenied,
    "unavailable": Unavailable,
}


def _trace_id() -> str:
    ctx = tracing.current_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


class TestingServicer(pb_grpc.TestingServiceServicer):
    """Echoes, sleeps, streams and relays; `fail_with` raises the named error."""

    def __init__(self, provider: TracerProvider | None = None, token: str = "") -> None:
        self.provider = provider
        self.token = token

    async def Echo(self, request: pb.EchoRequest, context: Any) -> pb.EchoResponse:
        if request.fail_with == "crash":
            raise RuntimeError(f"crashed while handling {request.mobile}")
        if request.fail_with:
            error = _ERRORS[request.fail_with]
            raise error(
                f"cannot echo for {request.mobile}",
                reason=request.fail_with.upper(),
                metadata={"resource": "echo"},
            )
        return pb.EchoResponse(
            message=request.message, caller=current_caller().ref, trace_id=_trace_id()
        )

    async def AdminEcho(self, request: pb.AdminEchoRequest, context: Any) -> pb.AdminEchoResponse:
        return pb.AdminEchoResponse(message=request.message)

    async def Relay(self, request: pb.RelayRequest, context: Any) -> pb.RelayResponse:
        # Plain OpenTelemetry client instrumentation, not mesh.client: it needs the unsampled
        # call's trace context made current first (mesh.client does that itself).
        tracing.attach_pending()
        interceptors = aio_client_interceptors(tracer_provider=self.provider)
        deadline = chain.current_deadline()
        timeout = None if deadline is None else deadline - time.monotonic()
        async with grpc.aio.insecure_channel(request.target, interceptors=interceptors) as ch:
            stub = pb_grpc.TestingServiceStub(ch)
            down = await stub.Echo(
                pb.EchoRequest(message=request.message),
                metadata=[("authorization", f"Bearer {self.token}")],
                timeout=timeout,
            )
        return pb.RelayResponse(
            downstream=down, trace_id=_trace_id(), downstream_deadline_seconds=timeout or 0.0
        )

    async def Sleep(self, request: pb.SleepRequest, context: Any) -> pb.SleepResponse:
        await asyncio.sleep(request.millis / 1000)
        return pb.SleepResponse(slept_millis=request.millis)

    async def StreamEcho(
        self, request: pb.StreamEchoRequest, context: Any
    ) -> AsyncIterator[pb.StreamEchoResponse]:
        for i in range(request.count):
            yield pb.StreamEchoResponse(message=request.message, index=i)

    async def CountEchoes(
        self, request_iterator: AsyncIterator[pb.CountEchoesRequest], context: Any
    ) -> pb.CountEchoesResponse:
        n = 0
        async for _ in request_iterator:
            n += 1
        return pb.CountEchoesResponse(count=n)

    async def TallyEchoes(
        self, request_iterator: AsyncIterator[pb.TallyEchoesRequest], context: Any
    ) -> pb.TallyEchoesResponse:
        valid, invalid = 0, []
        row = 0
        async for message in request_iterator:
            row += 1
            if violations(message):
                invalid.append(row)
            else:
                valid += 1
        return pb.TallyEchoesResponse(valid=valid, invalid_rows=invalid)


def testing_servicer(impl: TestingServicer) -> Servicer:
    """The mesh Servicer entry for `impl`."""
    return Servicer(
        descriptor=pb.DESCRIPTOR.services_by_name["TestingService"],
        add_to_server=pb_grpc.add_TestingServiceServicer_to_server,
        impl=impl,
    )
