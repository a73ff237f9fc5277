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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mesh.catalog import BY_NAME, ServiceEntry, existing
from mesh.config import ROOT, var_dir
from mesh.nats_server import NatsServer, NatsServerError

DEFAULT_READY_TIMEOUT = 60.0
DEFAULT_GRACE = 10.0
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


def runnable(entry: ServiceEntry) -> bool:
    """True when `python -m <module>` can start the service (it has a __main__)."""
    if not entry.exists():
        return False
    try:
        return importlib.util.find_spec(f"{entry.module}.__main__") is not None
    except ModuleNotFoundError:
        return False


def _display(path: Path) -> str:
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
    name, log = child.entry.name, _display(child.log_path)
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
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)

    children: list[Child] = []
    nats_url = nats.url if nats is not None else os.environ.get("MARQUE_NATS_URL", "")
    try:
        check_ports_free(entries, host)
        if nats is not None:
            print(f"starting nats on {nats.url}...", file=out, flush=True)
            await asyncio.to_thread(start_nats, nats)
        for e in entries:
            children.append(
                await start_child(e, log_dir, host, grace, nats.url if nats is not None else None)
            )
        print(f"starting {', '.join(e.name for e in entries)}...", file=out, flush=True)
        ready: asyncio.Future[Any] = asyncio.gather(
            *(wait_serving(c, ready_timeout) for c in children)
        )
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError, LaunchError):
                await ready
            print("interrupted during start-up", file=out)
            return 130
        stopping.cancel()
        ready.result()  # raises the first LaunchError

        print(banner(children, log_dir, nats, nats_url), file=out, flush=True)
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
    except LaunchError as e:
        print(f"error: {e}", file=out)
        return 1
    finally:
        await stop_children(children, grace, out)
        if nats is not None and nats.running:
            print("stopping nats", file=out, flush=True)
            await asyncio.to_thread(nats.stop)
        for handled_sig in handled:
            loop.remove_signal_handler(handled_sig)
        out.flush()


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
