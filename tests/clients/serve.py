"""A real lead and member service for the client tests: `python -m tests.clients.serve`.

Both run in one process (mesh.server.start, as docs/mesh.md describes for tests) on free
ports of 127.0.0.1, never the catalog ports a `make run` may hold, on SQLite files in a
temporary directory that is also MARQUE_VAR_DIR (the development signing key, the page-token
secret). Once both answer, one JSON line goes to stdout:

    {"lead": "127.0.0.1:PORT", "member": "127.0.0.1:PORT",
     "tokens": {"service": JWT, "oem": JWT, "channel": JWT}}

and they run until stdin closes (the parent is gone) or SIGTERM/SIGINT; then they stop and
the directory is removed. Service logs go to stderr. The Node client's tests
(clients/node/test) start it so; the Python ones use `services()` in their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from mesh import tracing
from mesh.config import Settings
from mesh.identity import Caller, Kind
from mesh.keys import load_keys, mint_token
from mesh.server import RunningServer, ServiceSpec, start

SERVICES = ("lead", "member")
# Who the tests call as: a backend holding a service token (what a mini-program backend
# is given, see README "Client packages"), OEM staff, and a lead channel.
CALLERS = {
    "service": Caller(Kind.SERVICE, "client-tests", service="client-tests"),
    "oem": Caller(Kind.OEM, "client-tests-staff"),
    "channel": Caller(Kind.CHANNEL, "autohome-client-tests", channel="AUTOHOME"),
}


@dataclass(frozen=True)
class Platform:
    """Where the services listen and tokens they accept."""

    addresses: dict[str, str]
    tokens: dict[str, str]

    def to_json(self) -> str:
        return json.dumps({**self.addresses, "tokens": self.tokens})


def _spec(service: str) -> ServiceSpec:
    if service == "lead":
        from services.lead.app import build_spec as lead_spec

        return lead_spec(events=False)
    from services.member.app import build_spec as member_spec

    return member_spec(events=False)


@contextlib.asynccontextmanager
async def services(var: Path) -> AsyncIterator[Platform]:
    """Lead and member serving from `var` (databases, signing key) until the block ends."""
    keys = load_keys({"MARQUE_VAR_DIR": str(var)})
    running: dict[str, RunningServer] = {}
    try:
        for service in SERVICES:
            settings = Settings(
                service=service,
                grpc_port=0,
                metrics_port=0,
                database_url=f"sqlite+aiosqlite:///{var / service}.db",
                var_dir=var,
            )
            running[service] = await start(
                _spec(service),
                settings,
                tracing=tracing.configure(service, env={}, set_global=False),
                keys=keys,
                serve_metrics=False,
            )
        yield Platform(
            addresses={service: running[service].address for service in SERVICES},
            tokens={name: mint_token(c, keys=keys) for name, c in CALLERS.items()},
        )
    finally:
        for server in running.values():
            await server.stop(1.0)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Sets `stop` when stdin reaches EOF: the parent is gone, so are we."""
    with contextlib.suppress(Exception):
        while sys.stdin.buffer.read(4096):
            pass
    with contextlib.suppress(RuntimeError):  # the loop already closed
        loop.call_soon_threadsafe(stop.set)


async def _serve(var: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
    async with services(var) as platform:
        print(platform.to_json(), flush=True)
        await stop.wait()


def main() -> None:
    var = Path(tempfile.mkdtemp(prefix="marque-client-tests-"))
    # Whatever of the mesh reads the environment (the page-token secret) stays in here too.
    os.environ["MARQUE_VAR_DIR"] = str(var)
    try:
        asyncio.run(_serve(var))
    finally:
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
