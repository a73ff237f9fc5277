"""`make run`: every service that exists, each as its own process, on the ports of DESIGN.md §10.

    python -m mesh.launcher [--only lead,member] [--ready-timeout 60] [--grace 10]

First it starts the embedded NATS server (mesh/nats_server.py: JetStream with its store under
`var/nats`, MQTT, on 127.0.0.1:4222 / MQTT 1883 / monitoring 8222, its log in
`var/log/nats.log`), unless `MARQUE_NATS_URL` is set: then the services use that one and
none is started. It stops last, after every service has drained.

For each service in `mesh.catalog.existing()` that has a `__main__` module, the launcher runs
`python -m <module>` with `MARQUE_SERVICE_NAME`, `OTEL_SERVICE_NAME`, the catalog's ports and
`MARQUE_NATS_URL` in its environment, waits until it answers SERVING on `grpc.health.v1`,
prints where everything listens and how to call it, and then watches:
- Ctrl-C / SIGTERM: SIGTERM to every child (they report NOT_SERVING and drain their
  in-flight calls for the grace, which the launcher hands them as MARQUE_SHUTDOWN_GRACE),
  then SIGKILL for any still running `KILL_MARGIN` seconds after the grace;
- a child that dies: reported with the end of its log, and the rest are stopped (a partial
  platform is worse than a clear failure).

Children's stdout and stderr go to `var/log/<service>.log` (appended; the terminal stays
readable and the JSON logs stay machine-readable); the path is printed at start and with any
failure. Children run in their own session, so a terminal Ctrl-C reaches only the launcher,
which stops them in order; on Linux they also get SIGTERM if the launcher itself is killed.

What runs and in which order is here; starting, waiting for and stopping one process is
mesh/service_processes.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from mesh.catalog import BY_NAME, ServiceEntry, existing
from mesh.config import var_dir
from mesh.nats_server import NatsServer, NatsServerError
from mesh.service_processes import (
    KILL_MARGIN,
    LOG_TAIL_LINES,
    Child,
    LaunchError,
    child_env,
    log_tail,
    start_child,
    stop_children,
    wait_serving,
)
from mesh.service_processes import display_path as _display

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_READY_TIMEOUT",
    "KILL_MARGIN",
    "LOG_TAIL_LINES",
    "Child",
    "LaunchError",
    "banner",
    "check_ports_free",
    "child_env",
    "embedded_nats",
    "log_tail",
    "main",
    "run",
    "runnable",
    "select",
    "start_child",
    "start_nats",
    "stop_children",
    "wait_serving",
]

DEFAULT_READY_TIMEOUT = 60.0
DEFAULT_GRACE = 10.0


def runnable(entry: ServiceEntry) -> bool:
    """True when `python -m <module>` can start the service (it has a __main__)."""
    if not entry.exists():
        return False
    try:
        return importlib.util.find_spec(f"{entry.module}.__main__") is not None
    except ModuleNotFoundError:
        return False


def check_ports_free(entries: Sequence[ServiceEntry], host: str) -> None:
    """Fail early, naming the service, if one of its ports is taken (another `make run`?)."""
    for e in entries:
        for port, what in ((e.grpc_port, "gRPC"), (e.metrics_port, "metrics")):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError:
                    raise LaunchError(
                        f"{e.name}: {what} port {host}:{port} is already in use "
                        "(is another `make run` still running?)"
                    ) from None


def embedded_nats(log_dir: Path, env: dict[str, str] | None = None) -> NatsServer | None:
    """The NATS server `make run` starts (None when `MARQUE_NATS_URL` names one)."""
    env = dict(os.environ if env is None else env)
    if env.get("MARQUE_NATS_URL", "").strip():
        return None
    return NatsServer(var_dir(env) / "nats", log_path=log_dir / "nats.log")


def start_nats(server: NatsServer) -> None:
    """Start the embedded NATS, or LaunchError saying why not."""
    taken = server.ports_in_use()
    if taken:
        raise LaunchError(
            f"nats: {', '.join(taken)} already in use (is another `make run` still running? "
            f"To use a NATS that runs there, set MARQUE_NATS_URL={server.url})"
        )
    try:
        server.start()
    except NatsServerError as e:
        raise LaunchError(f"nats: {e}") from None


def banner(
    children: Sequence[Child], log_dir: Path, nats: NatsServer | None = None, nats_url: str = ""
) -> str:
    """The table of what runs where, and how to call it."""
    width = max(len("service"), *(len(c.entry.name) for c in children))
    addr_width = max(len("gRPC"), *(len(c.address) for c in children))
    lines = [
        f"Marque is running: {len(children)} service(s). Logs: {_display(log_dir)}/<service>.log",
        "",
        f"  {'service'.ljust(width)}  {'gRPC'.ljust(addr_width)}  metrics",
    ]
    for c in children:
        lines.append(
            f"  {c.entry.name.ljust(width)}  {c.address.ljust(addr_width)}  {c.metrics_url}"
        )
    if nats is not None:
        lines.append(
            f"  {'nats'.ljust(width)}  {nats.url} (JetStream, store {_display(nats.store_dir)}; "
            f"MQTT {nats.host}:{nats.mqtt_port}; http://{nats.host}:{nats.monitor_port}/)"
        )
    elif nats_url:
        lines.append(f"  {'nats'.ljust(width)}  {nats_url} (MARQUE_NATS_URL)")
    first = children[0].address
    lines += [
        "",
        "Get a development token (oem | dealer --dealer-id D | customer --member-id M | "
        "service --name S | channel --channel C):",
        '  TOKEN=$(make -s token ARGS="oem")',
        "Call a service (reflection is on, plaintext):",
        f'  grpcurl -plaintext -H "authorization: Bearer $TOKEN" {first} list',
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


async def run(
    entries: Sequence[ServiceEntry],
    *,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    grace: float = DEFAULT_GRACE,
    log_dir: Path | None = None,
    host: str = "127.0.0.1",
    stop: asyncio.Event | None = None,
    out: IO[str] = sys.stdout,
    nats: NatsServer | None = None,
) -> int:
    """Start `nats` (if any), then `entries`; wait for SERVING, print the banner, run until
    `stop` (or a signal) is set or a child dies; stop the services, then `nats`; returns
    the exit status."""
    log_dir = log_dir or var_dir() / "log"
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = _stop_on_signals(loop, stop)
    children: list[Child] = []
    nats_url = nats.url if nats is not None else os.environ.get("MARQUE_NATS_URL", "")
    try:
        check_ports_free(entries, host)
        await _start_all(
            entries, children, log_dir=log_dir, host=host, grace=grace, nats=nats, out=out
        )
        if not await _until_ready(children, ready_timeout, stop):
            print("interrupted during start-up", file=out)
            return 130
        print(banner(children, log_dir, nats, nats_url), file=out, flush=True)
        return await _watch(children, stop, out)
    except LaunchError as e:
        print(f"error: {e}", file=out)
        return 1
    finally:
        await _stop_all(children, grace, nats, out)
        for handled_sig in handled:
            loop.remove_signal_handler(handled_sig)
        out.flush()


def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> list[signal.Signals]:
    """Ctrl-C and SIGTERM set `stop`; returns the signals handled (none off the main thread)."""
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    return handled


async def _start_all(
    entries: Sequence[ServiceEntry],
    children: list[Child],
    *,
    log_dir: Path,
    host: str,
    grace: float,
    nats: NatsServer | None,
    out: IO[str],
) -> None:
    """NATS first, then every service process; each started child joins `children` at
    once, so a failure part-way still stops the ones already running."""
    if nats is not None:
        print(f"starting nats on {nats.url}...", file=out, flush=True)
        await asyncio.to_thread(start_nats, nats)
    for e in entries:
        children.append(
            await start_child(e, log_dir, host, grace, nats.url if nats is not None else None)
        )
    print(f"starting {', '.join(e.name for e in entries)}...", file=out, flush=True)


async def _until_ready(
    children: Sequence[Child], ready_timeout: float, stop: asyncio.Event
) -> bool:
    """True when every child reports SERVING, False when `stop` came first; the first
    child's LaunchError is raised."""
    ready: asyncio.Future[Any] = asyncio.gather(*(wait_serving(c, ready_timeout) for c in children))
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        with contextlib.suppress(asyncio.CancelledError, LaunchError):
            await ready
        return False
    stopping.cancel()
    ready.result()  # raises the first LaunchError
    return True


async def _watch(children: Sequence[Child], stop: asyncio.Event, out: IO[str]) -> int:
    """Run until `stop` (0) or until a child dies (1, reported with the end of its log)."""
    exits: dict[asyncio.Future[Any], Child] = {
        asyncio.ensure_future(c.process.wait()): c for c in children
    }
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    for task in exits:
        if task not in done:
            task.cancel()
    dead = [exits[t] for t in done if t in exits]
    if dead:
        for c in dead:
            print(
                f"{c.entry.name} exited with code {c.process.returncode}; "
                f"its log is {_display(c.log_path)}:\n{log_tail(c.log_path)}",
                file=out,
            )
        print("stopping the other services", file=out)
        return 1
    stopping.cancel()
    return 0


async def _stop_all(
    children: Sequence[Child], grace: float, nats: NatsServer | None, out: IO[str]
) -> None:
    """The services first (they drain for `grace`), NATS last: they publish until they stop."""
    await stop_children(children, grace, out)
    if nats is not None and nats.running:
        print("stopping nats", file=out, flush=True)
        await asyncio.to_thread(nats.stop)


def select(only: str | None, out: IO[str]) -> list[ServiceEntry]:
    """The services to start: `--only` names (validated) or every runnable one."""
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            raise LaunchError(
                f"unknown service(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}"
            )
        missing = [n for n in names if not runnable(BY_NAME[n])]
        if missing:
            raise LaunchError(f"not written yet (no __main__ module): {', '.join(missing)}")
        return [BY_NAME[n] for n in names]
    found = existing()
    started = [e for e in found if runnable(e)]
    for e in found:
        if e not in started:
            print(f"skipping {e.name}: {e.module} has no __main__ module yet", file=out)
    return started


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout) -> int:
    """Command-line entry; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mesh.launcher", description=__doc__)
    parser.add_argument("--only", help="comma-separated services to start, e.g. lead,member")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=DEFAULT_READY_TIMEOUT,
        help="seconds each service gets to report SERVING (default 60)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=None,
        help="seconds the services drain in-flight calls on stop (default "
        "MARQUE_SHUTDOWN_GRACE, else 10); stragglers are killed 5 s after it",
    )
    args = parser.parse_args(argv)
    try:
        entries = select(args.only, out)
    except LaunchError as e:
        print(f"error: {e}", file=out)
        return 2
    if not entries:
        print("No service exists yet in this checkout; nothing to run.", file=out)
        return 0
    # The dev signing key is created once here, not raced for by every child.
    from mesh.keys import load_keys

    load_keys()
    grace = args.grace
    if grace is None:
        grace = float(os.environ.get("MARQUE_SHUTDOWN_GRACE") or DEFAULT_GRACE)
    host = os.environ.get("MARQUE_BIND_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    log_dir = var_dir() / "log"
    return asyncio.run(
        run(
            entries,
            ready_timeout=args.ready_timeout,
            grace=grace,
            log_dir=log_dir,
            host=host,
            out=out,
            nats=embedded_nats(log_dir),
        )
    )


if __name__ == "__main__":
    sys.exit(main())
