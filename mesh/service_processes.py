"""The launcher's service processes: start one with its log, wait until it answers SERVING,
stop them all (SIGTERM, the grace, then SIGKILL).

Children's stdout and stderr go to `var/log/<service>.log` (appended, each run after a
marker line, so the end of this run's log can be quoted in errors). Children run in their
own session, so a terminal Ctrl-C reaches only the launcher, which stops them in order; on
Linux they also get SIGTERM if the launcher itself is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mesh.catalog import ServiceEntry
from mesh.config import ROOT

# After the grace, a child still has its shutdown hooks to run (drain the writer, close the
# database): it is killed only this much later.
KILL_MARGIN = 5.0
LOG_TAIL_LINES = 20
_RUN_MARKER = "===== "


class LaunchError(Exception):
    """Start-up failed; the message says which service and where its log is."""


@dataclass
class Child:
    """One running service process."""

    entry: ServiceEntry
    process: asyncio.subprocess.Process
    log_path: Path
    host: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.entry.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.entry.metrics_port}/metrics"


def display_path(path: Path) -> str:
    """`path` relative to the repository when it is inside it, for messages."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, indented, for error messages."""
    try:
        content = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    # Only this run's output: the log is appended to across runs.
    this_run = content.rpartition(_RUN_MARKER)[2].splitlines()[1:]
    text = [line for line in this_run if line.strip()][-lines:]
    return "\n".join("    " + line for line in text) or "    (no output)"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launcher dies, even by SIGKILL (Linux)."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def child_env(
    entry: ServiceEntry,
    base: dict[str, str] | None = None,
    *,
    grace: float | None = None,
    nats_url: str | None = None,
) -> dict[str, str]:
    """The environment of a service process: ours plus its name, catalog ports, the
    grace it drains for on SIGTERM (the one the launcher waits for) and the NATS it
    publishes and consumes events on."""
    env = dict(os.environ if base is None else base)
    if grace is not None:
        env["MARQUE_SHUTDOWN_GRACE"] = f"{grace:g}"
    if nats_url is not None:
        env["MARQUE_NATS_URL"] = nats_url
    env.update(
        MARQUE_SERVICE_NAME=entry.name,
        OTEL_SERVICE_NAME=entry.name,
        MARQUE_GRPC_PORT=str(entry.grpc_port),
        MARQUE_METRICS_PORT=str(entry.metrics_port),
        PYTHONUNBUFFERED="1",
    )
    return env


def _open_log(log_dir: Path, entry: ServiceEntry) -> tuple[Path, IO[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{entry.name}.log"
    log = log_path.open("ab")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    log.write(f"\n{_RUN_MARKER}{stamp} launcher: starting {entry.module}\n".encode())
    log.flush()
    return log_path, log


async def start_child(
    entry: ServiceEntry,
    log_dir: Path,
    host: str,
    grace: float | None = None,
    nats_url: str | None = None,
) -> Child:
    """Start `python -m <module>` with its output appended to log_dir/<service>.log."""
    log_path, log = _open_log(log_dir, entry)
    with log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            entry.module,
            cwd=ROOT,
            env=child_env(entry, grace=grace, nats_url=nats_url),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    return Child(entry, process, log_path, host)


async def wait_serving(child: Child, ready_timeout: float) -> None:
    """Poll grpc.health.v1 until the child reports SERVING; LaunchError on exit or timeout."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + ready_timeout
    name, log = child.entry.name, display_path(child.log_path)
    async with grpc.aio.insecure_channel(child.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if child.process.returncode is not None:
                raise LaunchError(
                    f"{name} exited with code {child.process.returncode} while starting; "
                    f"its log is {log}:\n{log_tail(child.log_path)}"
                )
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass  # not listening yet
            if time.monotonic() >= deadline:
                raise LaunchError(
                    f"{name} did not report SERVING on {child.address} within {ready_timeout:g}s; "
                    f"its log is {log}:\n{log_tail(child.log_path)}"
                )
            await asyncio.sleep(0.1)


async def stop_children(children: Sequence[Child], grace: float, out: IO[str]) -> None:
    """SIGTERM all, give them `grace` seconds to drain and `KILL_MARGIN` more to shut
    down, SIGKILL the rest."""
    alive = [c for c in children if c.process.returncode is None]
    for c in alive:
        with contextlib.suppress(ProcessLookupError):
            c.process.send_signal(signal.SIGTERM)
    if not alive:
        return
    limit = grace + KILL_MARGIN
    names = ", ".join(c.entry.name for c in alive)
    print(f"stopping {names} (drain {grace:g}s, killed after {limit:g}s)...", file=out, flush=True)
    _, pending = await asyncio.wait(
        [asyncio.ensure_future(c.process.wait()) for c in alive], timeout=limit
    )
    for task in pending:
        task.cancel()
    for c in alive:
        if c.process.returncode is None:
            print(f"{c.entry.name} did not stop within {limit:g}s: killed", file=out)
            with contextlib.suppress(ProcessLookupError):
                c.process.kill()
            await c.process.wait()
