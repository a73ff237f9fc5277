"""mesh.client against a real in-process grpc.aio server."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from marque.testing.v1 import testing_service_pb2 as pb
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from mesh import client
from mesh.identity import Caller, Kind, reset_caller, set_caller
from mesh.keys import decode_token


class Recorder(pb_grpc.TestingServiceServicer):
    """Remembers what each call carried."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.fail_first = 0

    def _record(self, context: grpc.aio.ServicerContext) -> None:
        self.seen.append(
            {
                "metadata": {k: v for k, v in context.invocation_metadata() or ()},
                "remaining": context.time_remaining(),
            }
        )

    async def Echo(self, request: pb.EchoRequest, context: grpc.aio.ServicerContext) -> Any:
        self._record(context)
        if self.fail_first > 0:
            self.fail_first -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return pb.EchoResponse(message=request.message)

    async def StreamEcho(
        self, request: pb.StreamEchoRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamEchoResponse]:
        self._record(context)
        for i in range(request.count):
            yield pb.StreamEchoResponse(message=request.message, index=i)

    async def CountEchoes(
        self, request_iterator: AsyncIterator[pb.CountEchoesRequest], context: Any
    ) -> pb.CountEchoesResponse:
        self._record(context)
        n = 0
        async for _ in request_iterator:
            n += 1
        return pb.CountEchoesResponse(count=n)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder()
    srv = grpc.aio.server()
    pb_grpc.add_TestingServiceServicer_to_server(recorder, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    yield f"127.0.0.1:{port}", recorder
    await client.close_channels()
    await srv.stop(None)


@pytest.fixture
def served_deadline(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """Stands in for mesh.chain.current_deadline(): tests set value[0]."""
    value: list[float | None] = [None]
    monkeypatch.setattr(client, "current_deadline", lambda: value[0])
    return value


async def test_service_token_and_on_behalf_of(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    target, rec = server
    stub = pb_grpc.TestingServiceStub(client.channel_to(target, service_name="lead"))
    token = set_caller(Caller(Kind.DEALER, "dealer-D001", dealer_id="D001"))
    try:
        await stub.Echo(pb.EchoRequest(message="hi"))
    finally:
        reset_caller(token)
    await stub.Echo(pb.EchoRequest(message="anonymous"))

    first, second = rec.seen
    scheme, _, jwt = first["metadata"]["authorization"].partition(" ")
    assert scheme == "Bearer"
    caller, _ = decode_token(jwt)
    assert caller.kind is Kind.SERVICE and caller.service == "lead"
    assert first["metadata"][client.ON_BEHALF_OF] == "dealer:dealer-D001"
    assert client.ON_BEHALF_OF not in second["metadata"]
    assert second["metadata"]["authorization"] == first["metadata"]["authorization"]  # cached


async def test_explicit_token_and_no_identity(
    server: tuple[str, Recorder], served_deadline: list[float | None], monkeypatch: Any
) -> None:
    monkeypatch.delenv("MARQUE_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("MARQUE_SERVICE_TOKEN", raising=False)
    target, rec = server
    await pb_grpc.TestingServiceStub(client.channel_to(target, token="abc")).Echo(
        pb.EchoRequest(message="x")
    )
    await pb_grpc.TestingServiceStub(client.channel_to(target)).Echo(pb.EchoRequest(message="x"))
    assert rec.seen[0]["metadata"]["authorization"] == "Bearer abc"
    assert "authorization" not in rec.seen[1]["metadata"]


def test_service_token_is_renewed_before_expiry() -> None:
    now = [1_000_000.0]
    source = client.ServiceToken("lead", ttl_seconds=3600, renew_before=300, clock=lambda: now[0])
    first = source.header()
    now[0] += 3000
    assert source.header() is first
    now[0] += 301
    assert source.header() != first


async def test_deadline_is_min_of_own_timeout_and_served_remaining(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    target, rec = server
    stub = pb_grpc.TestingServiceStub(client.channel_to(target, timeout=30.0))
    served_deadline[0] = time.monotonic() + 2.0
    await stub.Echo(pb.EchoRequest(message="a"))
    await stub.Echo(pb.EchoRequest(message="b"), timeout=0.5)
    served_deadline[0] = None
    await stub.Echo(pb.EchoRequest(message="c"))
    served_deadline[0] = time.monotonic() + 10 * 24 * 3600  # "infinite": never passed on
    await stub.Echo(pb.EchoRequest(message="d"))
    remaining = [s["remaining"] for s in rec.seen]
    assert 1.0 < remaining[0] <= 2.2
    assert remaining[1] <= 0.7
    assert 20.0 < remaining[2] <= 30.5
    assert 20.0 < remaining[3] <= 30.5


async def test_expired_served_deadline_fails_fast(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    target, rec = server
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))
    served_deadline[0] = time.monotonic() - 0.001
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Echo(pb.EchoRequest(message="late"))
    assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert rec.seen == []


async def test_streams_get_no_default_timeout_but_inherit_deadline(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    target, rec = server
    stub = pb_grpc.TestingServiceStub(
        client.channel_to(target, timeouts={"marque.testing.v1.TestingService/CountEchoes": 3})
    )
    got = [r.index async for r in stub.StreamEcho(pb.StreamEchoRequest(message="m", count=3))]
    assert got == [0, 1, 2]
    assert rec.seen[0]["remaining"] is None

    served_deadline[0] = time.monotonic() + 5.0
    async for _ in stub.StreamEcho(pb.StreamEchoRequest(message="m", count=1)):
        pass
    assert 4.0 < rec.seen[1]["remaining"] <= 5.2

    served_deadline[0] = None

    async def requests() -> AsyncIterator[pb.CountEchoesRequest]:
        for _ in range(4):
            yield pb.CountEchoesRequest(message="m")

    assert (await stub.CountEchoes(requests())).count == 4
    assert 2.0 < rec.seen[2]["remaining"] <= 3.2  # the per-method override


async def test_retries_unavailable(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    target, rec = server
    rec.fail_first = 2
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))
    assert (await stub.Echo(pb.EchoRequest(message="again"))).message == "again"
    assert len(rec.seen) == 3


async def test_channels_are_cached_per_target_and_arguments(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    target, _ = server
    assert client.channel_to(target) is client.channel_to(target)
    assert client.channel_to(target) is not client.channel_to(target, timeout=1.0)


def test_channel_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="event loop"):
        client.channel_to("127.0.0.1:1")


def test_channel_resolves_the_service_address(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(client, "channel_to", lambda target, **kw: seen.append(target))
    monkeypatch.setenv("MARQUE_MEMBER_ADDR", "dns:///member.marque:50052")
    client.channel("member")
    monkeypatch.delenv("MARQUE_MEMBER_ADDR")
    client.channel("lead")
    assert seen == ["dns:///member.marque:50052", "127.0.0.1:50051"]


def test_service_config_shape() -> None:
    config = client.service_config({"marque.lead.v1.LeadService/ImportLeads": 60})
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    first, default = config["methodConfig"]
    assert first["name"] == [{"service": "marque.lead.v1.LeadService", "method": "ImportLeads"}]
    assert first["timeout"] == "60s"
    assert first["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert default["name"] == [{}] and default["retryPolicy"]["maxAttempts"] == 4
    json.dumps(config)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Finished spans of this test, whatever TracerProvider other tests installed."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def _parent(sampled: bool) -> NonRecordingSpan:
    return NonRecordingSpan(
        SpanContext(
            trace_id=0x1234567890ABCDEF1234567890ABCDEF,
            span_id=0x1122334455667788,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        )
    )


async def test_sampled_parent_gets_a_client_span(
    server: tuple[str, Recorder], served_deadline: list[float | None], spans: InMemorySpanExporter
) -> None:
    target, rec = server
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))
    with trace.use_span(_parent(True)):
        await stub.Echo(pb.EchoRequest(message="traced"))
    traceparent = rec.seen[0]["metadata"]["traceparent"]
    _, trace_id, span_id, flags = traceparent.split("-")
    assert trace_id == "1234567890abcdef1234567890abcdef" and flags == "01"
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]
    assert len(mine) == 1
    assert mine[0].kind is trace.SpanKind.CLIENT
    assert f"{mine[0].context.span_id:016x}" == span_id  # the server's parent is the client span


async def test_unsampled_parent_only_propagates(
    server: tuple[str, Recorder], served_deadline: list[float | None], spans: InMemorySpanExporter
) -> None:
    target, rec = server
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))
    with trace.use_span(_parent(False)):
        await stub.Echo(pb.EchoRequest(message="cheap"))
    assert rec.seen[0]["metadata"]["traceparent"] == (
        "00-1234567890abcdef1234567890abcdef-1122334455667788-00"
    )
    assert spans.get_finished_spans() == ()


async def test_client_metrics(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    from prometheus_client import REGISTRY

    target, _ = server
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))
    labels = {
        "grpc_type": "unary",
        "grpc_service": "marque.testing.v1.TestingService",
        "grpc_method": "Echo",
    }
    before = REGISTRY.get_sample_value("grpc_client_started_total", labels) or 0.0
    await stub.Echo(pb.EchoRequest(message="count me"))
    assert REGISTRY.get_sample_value("grpc_client_started_total", labels) == before + 1
    count = REGISTRY.get_sample_value("grpc_client_handling_seconds_count", labels)
    assert count is not None and count >= 1
    async for _ in stub.StreamEcho(pb.StreamEchoRequest(message="m", count=2)):
        pass
    stream_labels = {**labels, "grpc_type": "server_stream", "grpc_method": "StreamEcho"}
    assert REGISTRY.get_sample_value("grpc_client_started_total", stream_labels) is not None


async def test_client_metrics_count_each_code(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    """A failed call (all four attempts UNAVAILABLE) and a good one: started twice, one
    handled per code, both timed; a server stream's end is counted too."""
    from prometheus_client import REGISTRY

    unary = {
        "grpc_type": "unary",
        "grpc_service": "marque.testing.v1.TestingService",
        "grpc_method": "Echo",
    }
    stream = {**unary, "grpc_type": "server_stream", "grpc_method": "StreamEcho"}
    series = {
        "started": ("grpc_client_started_total", unary),
        "unavailable": ("grpc_client_handled_total", {**unary, "grpc_code": "Unavailable"}),
        "ok": ("grpc_client_handled_total", {**unary, "grpc_code": "OK"}),
        "timed": ("grpc_client_handling_seconds_count", unary),
        "stream_ok": ("grpc_client_handled_total", {**stream, "grpc_code": "OK"}),
    }

    def read() -> dict[str, float]:
        return {k: REGISTRY.get_sample_value(n, lb) or 0.0 for k, (n, lb) in series.items()}

    before = read()
    target, rec = server
    rec.fail_first = 4  # all 4 attempts fail: the call fails UNAVAILABLE
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Echo(pb.EchoRequest(message="x"))
    await stub.Echo(pb.EchoRequest(message="x"))
    async for _ in stub.StreamEcho(pb.StreamEchoRequest(message="m", count=2)):
        pass
    await client.close_channels()

    after = read()
    assert {k: after[k] - before[k] for k in series} == {
        "started": 2,
        "unavailable": 1,
        "ok": 1,
        "timed": 2,
        "stream_ok": 1,
    }


async def test_client_stream_write_api(
    server: tuple[str, Recorder], served_deadline: list[float | None]
) -> None:
    """The call object is handed out at once, so `write()` works through the interceptors."""
    target, _ = server
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))
    call = stub.CountEchoes()
    for _ in range(3):
        await call.write(pb.CountEchoesRequest(message="w"))
    await call.done_writing()
    assert (await call).count == 3


async def test_sampled_server_stream_gets_a_client_span(
    server: tuple[str, Recorder], served_deadline: list[float | None], spans: InMemorySpanExporter
) -> None:
    target, rec = server
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))
    with trace.use_span(_parent(True)):
        got = [r.index async for r in stub.StreamEcho(pb.StreamEchoRequest(message="m", count=2))]
    assert got == [0, 1]
    assert rec.seen[0]["metadata"]["traceparent"].endswith("-01")
    names = [s.name for s in spans.get_finished_spans()]
    assert "/marque.testing.v1.TestingService/StreamEcho" in names


def test_own_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARQUE_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "member")
    assert client._own_service_name() == "member"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "bench-client")
    assert client._own_service_name() is None
    monkeypatch.setenv("MARQUE_SERVICE_NAME", "lead")
    assert client._own_service_name() == "lead"


async def test_a_served_unsampled_call_propagates_its_trace(
    server: tuple[str, Recorder], served_deadline: list[float | None], spans: InMemorySpanExporter
) -> None:
    """Inside a served call the gate did not sample, mesh.client injects that call's trace
    id as "not sampled" and records no client span."""
    from mesh import tracing

    target, rec = server
    gate = tracing.configure("lead", env={"OTEL_TRACES_SAMPLER_ARG": "0"}, set_global=False)
    stub = pb_grpc.TestingServiceStub(client.channel_to(target))

    async def served() -> str:
        assert gate.decide(None) is False
        ctx = tracing.current_span_context()
        await stub.Echo(pb.EchoRequest(message="cheap"))
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-00"

    import asyncio

    expected = await asyncio.create_task(served())  # a call is its own task, as when served
    assert rec.seen[0]["metadata"]["traceparent"] == expected
    assert spans.get_finished_spans() == ()
