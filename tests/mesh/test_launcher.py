"""mesh.launcher with stand-in service processes (tests/mesh/fake_service)."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import pytest

from mesh import launcher
from mesh.catalog import ServiceEntry
from mesh.nats_server import NatsServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake(name: str) -> ServiceEntry:
    return ServiceEntry(name, "tests.mesh.fake_service", free_port(), free_port())


async def _run(entries: list[ServiceEntry], tmp_path: Path, **kw: object) -> tuple[int, str]:
    out = io.StringIO()
    code = await launcher.run(entries, log_dir=tmp_path, out=out, **kw)  # type: ignore[arg-type]
    return code, out.getvalue()


async def test_starts_reports_and_stops_gracefully(tmp_path: Path) -> None:
    entries = [fake("alpha"), fake("beta")]
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(
        launcher.run(entries, log_dir=tmp_path, out=out, stop=stop, ready_timeout=20)
    )
    await _until_running(out)
    text = out.getvalue()
    assert f"127.0.0.1:{entries[0].grpc_port}" in text
    assert f"http://127.0.0.1:{entries[1].metrics_port}/metrics" in text
    assert "grpcurl -plaintext" in text and "make -s token" in text
    stop.set()
    assert await task == 0
    for e in entries:
        log = (tmp_path / f"{e.name}.log").read_text()
        assert f"{e.name} serving" in log and "drained" in log


async def test_never_ready_names_the_service_and_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SERVICE_MODE", "never_ready")
    code, text = await _run([fake("slowpoke")], tmp_path, ready_timeout=1.5)
    assert code == 1
    assert "slowpoke did not report SERVING" in text
    assert str(tmp_path / "slowpoke.log") in text


async def test_a_dying_child_stops_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SERVICE_MODE", "crash")
    code, text = await _run([fake("fragile")], tmp_path, ready_timeout=20)
    assert code == 1
    assert "fragile exited with code 3" in text
    assert "simulated crash" in text  # the log tail


async def test_stragglers_are_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SERVICE_MODE", "stubborn")
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(
        launcher.run([fake("mule")], log_dir=tmp_path, out=out, stop=stop, grace=0.5)
    )
    await _until_running(out)
    stop.set()
    assert await task == 0
    limit = 0.5 + launcher.KILL_MARGIN
    assert f"stopping mule (drain 0.5s, killed after {limit:g}s)" in out.getvalue()
    assert f"mule did not stop within {limit:g}s: killed" in out.getvalue()


async def _until_running(out: io.StringIO) -> None:
    for _ in range(400):
        if "Ctrl-C stops everything" in out.getvalue():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"launcher did not come up:\n{out.getvalue()}")


async def test_port_in_use_is_reported(tmp_path: Path) -> None:
    entry = fake("squatted")
    with socket.socket() as s:
        s.bind(("127.0.0.1", entry.grpc_port))
        s.listen()
        code, text = await _run([entry], tmp_path)
    assert code == 1
    assert f"squatted: gRPC port 127.0.0.1:{entry.grpc_port} is already in use" in text


def test_no_services_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "existing", lambda: [])
    out = io.StringIO()
    assert launcher.main([], out=out) == 0
    assert "No service exists yet" in out.getvalue()


def test_only_rejects_unknown_names() -> None:
    out = io.StringIO()
    assert launcher.main(["--only", "lead,nope"], out=out) == 2
    assert "unknown service(s) nope" in out.getvalue()


def test_child_env_sets_name_and_ports() -> None:
    entry = ServiceEntry("lead", "services.lead", 50051, 9451)
    env = launcher.child_env(entry, {"MARQUE_GRPC_PORT": "1", "OTEL_SERVICE_NAME": "x"})
    assert env["MARQUE_SERVICE_NAME"] == "lead" and env["OTEL_SERVICE_NAME"] == "lead"
    assert env["MARQUE_GRPC_PORT"] == "50051" and env["MARQUE_METRICS_PORT"] == "9451"
    # The grace the launcher waits for is the one the service drains for.
    assert launcher.child_env(entry, {}, grace=7.5)["MARQUE_SHUTDOWN_GRACE"] == "7.5"


async def test_embedded_nats_starts_first_and_stops_last(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats", port=0, monitor_port=0, mqtt_port=0)
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(
        launcher.run(
            [fake("gamma")], log_dir=tmp_path, out=out, stop=stop, ready_timeout=20, nats=nats
        )
    )
    await _until_running(out)
    assert f"  nats     {nats.url} (JetStream, store " in out.getvalue()
    assert nats.running
    stop.set()
    assert await task == 0
    assert not nats.running
    log = (tmp_path / "gamma.log").read_text()
    assert "nats at start: up" in log and "nats at stop: up" in log
    assert out.getvalue().index("stopping gamma") < out.getvalue().index("stopping nats")


async def test_nats_url_given_starts_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARQUE_NATS_URL", "nats://127.0.0.1:1")
    assert launcher.embedded_nats(tmp_path) is None
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(
        launcher.run([fake("delta")], log_dir=tmp_path, out=out, stop=stop, ready_timeout=20)
    )
    await _until_running(out)
    assert "nats://127.0.0.1:1 (MARQUE_NATS_URL)" in out.getvalue()
    stop.set()
    assert await task == 0
    assert "nats at start: down" in (tmp_path / "delta.log").read_text()


def test_the_embedded_nats_keeps_its_store_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARQUE_NATS_URL", raising=False)
    server = launcher.embedded_nats(Path("/logs"), {"MARQUE_VAR_DIR": "/v"})
    assert server is not None
    assert server.store_dir == Path("/v/nats") and server.log_path == Path("/logs/nats.log")
    assert (server.port, server.mqtt_port, server.monitor_port) == (4222, 1883, 8222)


async def test_nats_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        nats = NatsServer(tmp_path / "nats", port=taken, monitor_port=0, mqtt_port=0)
        code, text = await _run([fake("epsilon")], tmp_path, nats=nats)
    assert code == 1
    assert f"nats: NATS 127.0.0.1:{taken} already in use" in text
    assert f"MARQUE_NATS_URL=nats://127.0.0.1:{taken}" in text


def test_child_env_passes_the_nats_url() -> None:
    entry = ServiceEntry("lead", "services.lead", 50051, 9451)
    env = launcher.child_env(entry, {}, nats_url="nats://127.0.0.1:4222")
    assert env["MARQUE_NATS_URL"] == "nats://127.0.0.1:4222"
