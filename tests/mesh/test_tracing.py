"""Traces: full spans for sampled calls, parents across servers, the cheap gate."""

from __future__ import annotations

import contextvars
from pathlib import Path

import grpc
import pytest
from marque.testing.v1 import testing_service_pb2 as pb
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from mesh.tracing import attach_pending, configure, current_span_context, parse_traceparent
from tests.mesh.serving import bearer, serve, traced

RELAY = "/marque.testing.v1.TestingService/Relay"
ECHO = "/marque.testing.v1.TestingService/Echo"


async def test_parent_propagates_across_two_servers(tmp_path: Path) -> None:
    tracing, exporter = traced()
    async with serve(tmp_path, tracing_=tracing) as a, serve(tmp_path, tracing_=tracing) as b:
        reply = await a.stub.Relay(
            pb.RelayRequest(target=b.running.address, message="m"), metadata=bearer(a.keys)
        )
    spans = exporter.get_finished_spans()
    a_server = next(s for s in spans if s.name == RELAY and s.kind is SpanKind.SERVER)
    a_client = next(s for s in spans if s.name == ECHO and s.kind is SpanKind.CLIENT)
    b_server = next(s for s in spans if s.name == ECHO and s.kind is SpanKind.SERVER)
    trace_id = a_server.context.trace_id
    assert {s.context.trace_id for s in (a_server, a_client, b_server)} == {trace_id}
    assert a_client.parent is not None and a_client.parent.span_id == a_server.context.span_id
    assert b_server.parent is not None and b_server.parent.span_id == a_client.context.span_id
    assert reply.trace_id == reply.downstream.trace_id == format(trace_id, "032x")
    assert a_server.attributes is not None and a_server.attributes["rpc.service"] == (
        "marque.testing.v1.TestingService"
    )
    assert a_server.resource.attributes["service.namespace"] == "marque"
    assert a_server.resource.attributes["service.name"] == "marque-lead"


async def test_health_is_not_traced(tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    tracing, exporter = traced()
    async with serve(tmp_path, tracing_=tracing) as s:
        await health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest())
    assert exporter.get_finished_spans() == ()


async def test_ratio_zero_records_nothing_but_propagates_not_sampled(tmp_path: Path) -> None:
    tracing, exporter = traced({"OTEL_TRACES_SAMPLER_ARG": "0"})
    async with serve(tmp_path, tracing_=tracing) as a, serve(tmp_path, tracing_=tracing) as b:
        reply = await a.stub.Relay(
            pb.RelayRequest(target=b.running.address, message="m"), metadata=bearer(a.keys)
        )
    assert exporter.get_finished_spans() == ()
    assert reply.trace_id and reply.downstream.trace_id == reply.trace_id


async def test_sampled_parent_is_respected_at_ratio_zero(tmp_path: Path) -> None:
    tracing, exporter = traced({"OTEL_TRACES_SAMPLER_ARG": "0"})
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with serve(tmp_path, tracing_=tracing) as s:
        reply = await s.stub.Echo(
            pb.EchoRequest(message="m"), metadata=[*bearer(s.keys), ("traceparent", parent)]
        )
    (span,) = exporter.get_finished_spans()
    assert reply.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331


async def test_unsampled_parent_is_respected_at_full_sampling(tmp_path: Path) -> None:
    tracing, exporter = traced()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    async with serve(tmp_path, tracing_=tracing) as s:
        reply = await s.stub.Echo(
            pb.EchoRequest(message="m"), metadata=[*bearer(s.keys), ("traceparent", parent)]
        )
    assert exporter.get_finished_spans() == ()
    assert reply.trace_id == "0af7651916cd43dd8448eb211c80319c"


async def test_gate_and_sdk_agree_on_new_traces(tmp_path: Path) -> None:
    """At 50% the gate samples exactly the trace ids TraceIdRatioBased would (no r² effect)."""
    tracing, exporter = traced({"OTEL_TRACES_SAMPLER_ARG": "0.5"})
    bound = TraceIdRatioBased.get_bound_for_rate(0.5)
    async with serve(tmp_path, tracing_=tracing) as s:
        md = bearer(s.keys)
        ids = [
            (await s.stub.Echo(pb.EchoRequest(message="m"), metadata=md)).trace_id
            for _ in range(60)
        ]
    spans = {format(span.context.trace_id, "032x") for span in exporter.get_finished_spans()}
    expected = {t for t in ids if int(t, 16) & ((1 << 64) - 1) < bound}
    assert spans == expected
    assert 0 < len(spans) < 60


def test_parse_traceparent() -> None:
    assert parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        1,
    )
    for bad in ("", "00-xyz", "00-" + "0" * 32 + "-b7ad6b7169203331-01", "ff-" + "1" * 52):
        assert parse_traceparent(bad) is None


@pytest.mark.parametrize(
    ("env", "ratio"),
    [
        ({}, 0.1),
        ({"OTEL_TRACES_SAMPLER_ARG": "1"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, None),
    ],
)
def test_sampler_from_env(env: dict[str, str], ratio: float | None) -> None:
    tracing = configure("lead", env=env, set_global=False)
    assert tracing.ratio == ratio


async def test_server_spans_follow_the_rpc_conventions(tmp_path: Path) -> None:
    tracing, exporter = traced()
    async with serve(tmp_path, tracing_=tracing) as s:
        md = bearer(s.keys)
        await s.stub.Echo(pb.EchoRequest(message="m"), metadata=md)
        for fail in ("not_found", "crash"):
            with pytest.raises(grpc.aio.AioRpcError):
                await s.stub.Echo(pb.EchoRequest(message="m", fail_with=fail), metadata=md)
    ok, not_found, crash = exporter.get_finished_spans()
    for span in (ok, not_found, crash):
        assert span.name == ECHO and span.kind is SpanKind.SERVER
        assert span.attributes is not None
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.service"] == "marque.testing.v1.TestingService"
        assert span.attributes["rpc.method"] == "Echo"
        assert span.attributes["network.peer.address"] == "127.0.0.1"
        assert isinstance(span.attributes["network.peer.port"], int)
    codes = [s.attributes["rpc.grpc.status_code"] for s in (ok, not_found, crash) if s.attributes]
    assert codes == [0, 5, 13]
    # A client's mistake is not the server's error; a crash is, with its exception.
    assert ok.status.status_code is StatusCode.UNSET and not ok.events
    assert not_found.status.status_code is StatusCode.UNSET and not not_found.events
    assert crash.status.status_code is StatusCode.ERROR
    (event,) = crash.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.type"] == "RuntimeError"


async def test_a_sampled_parent_keeps_its_tracestate(tmp_path: Path) -> None:
    tracing, exporter = traced({"OTEL_TRACES_SAMPLER_ARG": "0"})
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with serve(tmp_path, tracing_=tracing) as s:
        await s.stub.Echo(
            pb.EchoRequest(message="m"),
            metadata=[*bearer(s.keys), ("traceparent", parent), ("tracestate", "vendor=abc")],
        )
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_state.get("vendor") == "abc"
    assert span.parent is not None and span.parent.is_remote


def test_unsampled_context_is_pending_until_asked_for() -> None:
    """The gate only notes an unsampled call's ids; they become OpenTelemetry's current
    context when asked for, and are injected as "not sampled" with the same trace id."""
    tracing = configure("lead", env={"OTEL_TRACES_SAMPLER_ARG": "0"}, set_global=False)

    def in_a_call() -> tuple[SpanContext, SpanContext, dict[str, str]]:
        assert tracing.decide(None) is False
        before = trace.get_current_span().get_span_context()
        pending = current_span_context()
        attach_pending()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        assert trace.get_current_span().get_span_context() == pending
        return before, pending, carrier

    before, pending, carrier = contextvars.copy_context().run(in_a_call)
    assert not before.is_valid  # nothing was built for the call itself
    assert pending.is_valid and not pending.trace_flags.sampled
    assert carrier["traceparent"] == f"00-{pending.trace_id:032x}-{pending.span_id:016x}-00"
    assert not current_span_context().is_valid  # it stayed inside that call's context
