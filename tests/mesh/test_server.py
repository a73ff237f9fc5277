"""mesh.server + mesh.chain over a real in-process grpc.aio server."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from marque.testing.v1 import testing_service_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from mesh.auth import PolicyMissing
from mesh.config import Settings
from mesh.identity import Kind
from mesh.server import Servicer, ServiceSpec, start
from tests.mesh import testing_servicer as testing
from tests.mesh.serving import bearer, serve

SERVICE = "marque.testing.v1.TestingService"


def details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    """The google.rpc details of a failed call, by type name."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, object] = {}
    for item in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if item.Is(cls.DESCRIPTOR):
                msg = cls()
                item.Unpack(msg)
                found[cls.__name__] = msg
    return found


async def test_health_per_service_and_overall(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        health = health_pb2_grpc.HealthStub(s.channel)
        for name in (SERVICE, ""):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        stub = reflection_pb2_grpc.ServerReflectionStub(s.channel)

        async def one() -> object:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for reply in stub.ServerReflectionInfo(one()):
            names = {svc.name for svc in reply.list_services_response.service}
            assert SERVICE in names
            assert "grpc.health.v1.Health" in names
            break


async def test_echo_sees_the_authenticated_caller(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        reply = await s.stub.Echo(
            pb.EchoRequest(message="hi"), metadata=bearer(s.keys, Kind.DEALER, dealer_id="D1")
        )
        assert reply.message == "hi"
        assert reply.caller == "dealer:u1"


async def test_missing_token_is_unauthenticated(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.Echo(pb.EchoRequest(message="hi"))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.Echo(
                pb.EchoRequest(message="hi"), metadata=[("authorization", "Bearer nope")]
            )
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert details(e.value)["ErrorInfo"].reason == "INVALID_TOKEN"  # type: ignore[attr-defined]


async def test_wrong_principal_is_permission_denied(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.AdminEcho(
                pb.AdminEchoRequest(message="hi"),
                metadata=bearer(s.keys, Kind.DEALER, dealer_id="D1"),
            )
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        ok = await s.stub.AdminEcho(pb.AdminEchoRequest(message="hi"), metadata=bearer(s.keys))
        assert ok.message == "hi"


async def test_public_method_needs_no_token(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        assert (await s.stub.Sleep(pb.SleepRequest(millis=0))).slept_millis == 0


async def test_invalid_field_has_the_field_path(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.Echo(pb.EchoRequest(message=""), metadata=bearer(s.keys))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad = details(e.value)["BadRequest"]
        assert [v.field for v in bad.field_violations] == ["message"]  # type: ignore[attr-defined]


async def test_streamed_requests_are_validated(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:

        async def good() -> object:
            for _ in range(3):
                yield pb.CountEchoesRequest(message="m")

        assert (await s.stub.CountEchoes(good())).count == 3

        async def bad() -> object:
            yield pb.CountEchoesRequest(message="m")
            yield pb.CountEchoesRequest(message="")

        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.CountEchoes(bad())
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        replies = [
            r.index async for r in s.stub.StreamEcho(pb.StreamEchoRequest(message="m", count=3))
        ]
        assert replies == [0, 1, 2]


async def test_stream_declared_deliver_gets_invalid_rows(tmp_path: Path) -> None:
    """A bulk-import style method sees every row, so one bad row does not end the call."""
    async with serve(tmp_path) as s:

        async def rows() -> object:
            for text in ["a", "", "b", "", "c"]:
                yield pb.TallyEchoesRequest(message=text)

        tally = await s.stub.TallyEchoes(rows())
        assert tally.valid == 3
        assert list(tally.invalid_rows) == [2, 4]


async def test_domain_error_maps_to_code_and_error_info(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.Echo(
                pb.EchoRequest(message="hi", fail_with="not_found"), metadata=bearer(s.keys)
            )
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        info = details(e.value)["ErrorInfo"]
        assert info.reason == "NOT_FOUND"  # type: ignore[attr-defined]
        assert info.domain == "marque.lead"  # type: ignore[attr-defined]
        assert dict(info.metadata) == {"resource": "echo"}  # type: ignore[attr-defined]


async def test_unexpected_exception_is_internal_without_internals(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.Echo(
                pb.EchoRequest(message="hi", fail_with="crash"), metadata=bearer(s.keys)
            )
        assert e.value.code() == grpc.StatusCode.INTERNAL
        assert e.value.details() == "internal error"


async def test_overload_is_resource_exhausted(tmp_path: Path) -> None:
    async with serve(tmp_path, max_concurrency=2) as s:
        held = [asyncio.ensure_future(s.stub.Sleep(pb.SleepRequest(millis=600))) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.stub.Sleep(pb.SleepRequest(millis=0))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "RetryInfo" in details(e.value)
        assert [r.slept_millis for r in await asyncio.gather(*held)] == [600, 600]
        assert (await s.stub.Sleep(pb.SleepRequest(millis=0))).slept_millis == 0


async def test_deadline_is_propagated_and_absent_without_one(tmp_path: Path) -> None:
    async with serve(tmp_path) as a, serve(tmp_path) as b:
        md = bearer(a.keys)
        with_deadline = await a.stub.Relay(
            pb.RelayRequest(target=b.running.address, message="m"), metadata=md, timeout=5
        )
        # grpc-timeout travels as a duration, re-anchored on arrival: a few ms of slack.
        assert 0 < with_deadline.downstream_deadline_seconds <= 5.05
        without = await a.stub.Relay(
            pb.RelayRequest(target=b.running.address, message="m"), metadata=md
        )
        assert without.downstream_deadline_seconds == 0


async def test_metrics_names_and_labels(tmp_path: Path) -> None:
    async with serve(tmp_path, serve_metrics=True) as s:
        await s.stub.Echo(pb.EchoRequest(message="hi"), metadata=bearer(s.keys))
        with pytest.raises(grpc.aio.AioRpcError):
            await s.stub.Echo(pb.EchoRequest(message=""), metadata=bearer(s.keys))
        async for _ in s.stub.StreamEcho(pb.StreamEchoRequest(message="m", count=2)):
            pass
        url = f"http://127.0.0.1:{s.running.metrics_port}/metrics"
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode()
        )
    samples = {
        (m.name, tuple(sorted(sample.labels.items())), sample.name): sample.value
        for m in text_string_to_metric_families(text)
        for sample in m.samples
    }

    def value(sample: str, **labels: str) -> float:
        for (_, lbls, name), v in samples.items():
            if name == sample and dict(lbls) == labels:
                return v
        raise AssertionError(f"no {sample} {labels}")

    echo = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Echo"}
    assert value("grpc_server_started_total", **echo) >= 2
    assert value("grpc_server_handled_total", **echo, grpc_code="OK") >= 1
    assert value("grpc_server_handled_total", **echo, grpc_code="InvalidArgument") >= 1
    assert value("grpc_server_handling_seconds_count", **echo) >= 2
    assert value("grpc_server_handling_seconds_bucket", **echo, le="+Inf") >= 2
    stream = {"grpc_type": "server_stream", "grpc_service": SERVICE, "grpc_method": "StreamEcho"}
    assert value("grpc_server_msg_sent_total", **stream) >= 2
    assert value("grpc_server_msg_received_total", **stream) >= 1
    assert value("marque_grpc_server_in_flight", grpc_service=SERVICE) == 0


async def test_refuses_to_start_without_access_policy(tmp_path: Path) -> None:
    health = Servicer(
        descriptor=health_pb2.DESCRIPTOR.services_by_name["Health"],
        add_to_server=health_pb2_grpc.add_HealthServicer_to_server,
        impl=health_pb2_grpc.HealthServicer(),
    )
    with pytest.raises(PolicyMissing, match=r"grpc.health.v1.Health.Check"):
        await start(ServiceSpec("lead", [health]), Settings(service="lead"), serve_metrics=False)


async def test_stop_reports_not_serving_then_drains(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        watch = health_pb2_grpc.HealthStub(s.channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE)
        )
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        sleeping = asyncio.ensure_future(s.stub.Sleep(pb.SleepRequest(millis=300)))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(s.running.stop(2.0))
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert (await sleeping).slept_millis == 300
        await stopping


async def test_concurrent_calls_each_see_their_own_caller(tmp_path: Path) -> None:
    """The chain reads each call's metadata from grpc's handler look-up: calls in flight
    together, each with another token, must never see one another's caller."""
    async with serve(tmp_path) as s:
        subjects = [f"u{i}" for i in range(40)]
        replies = await asyncio.gather(
            *(
                s.stub.Echo(
                    pb.EchoRequest(message=subject), metadata=bearer(s.keys, subject=subject)
                )
                for subject in subjects
            )
        )
    assert [r.caller for r in replies] == [f"oem:{subject}" for subject in subjects]


async def test_serving_raises_the_young_generation_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    before = gc.get_threshold()
    try:
        async with serve(tmp_path):
            assert gc.get_threshold() == (10_000, before[1], before[2])
        monkeypatch.setenv("MARQUE_GC_GEN0_THRESHOLD", "0")  # 0: leave CPython's own
        gc.set_threshold(*before)
        async with serve(tmp_path):
            assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)


async def test_a_second_server_cannot_take_a_bound_port(tmp_path: Path) -> None:
    """grpc binds with SO_REUSEPORT by default: a second process on a service's port would
    silently take half its connections. The mesh binds exclusively unless asked."""
    stopped: list[str] = []

    async def shutdown() -> None:
        stopped.append("second")

    async with serve(tmp_path) as first:
        impl = testing.TestingServicer()
        spec = ServiceSpec("lead", [testing.testing_servicer(impl)], shutdown=shutdown)
        settings = Settings(service="lead", grpc_port=first.running.port, var_dir=tmp_path)
        with pytest.raises(RuntimeError, match=f"cannot bind 127.0.0.1:{first.running.port}"):
            await start(spec, settings, keys=first.keys, serve_metrics=False)
        assert stopped == ["second"]  # its startup ran: its shutdown ran too
        reply = await first.stub.Echo(pb.EchoRequest(message="hi"), metadata=bearer(first.keys))
        assert reply.message == "hi"


async def test_reuseport_is_explicit(tmp_path: Path) -> None:
    assert Settings.from_env("lead", {}).reuseport is False
    assert Settings.from_env("lead", {"MARQUE_REUSEPORT": "1"}).reuseport is True
    async with serve(tmp_path, reuseport=True) as first:
        settings = Settings(
            service="lead", grpc_port=first.running.port, var_dir=tmp_path, reuseport=True
        )
        spec = ServiceSpec("lead", [testing.testing_servicer(testing.TestingServicer())])
        second = await start(spec, settings, keys=first.keys, serve_metrics=False)
        await second.stop(0)
