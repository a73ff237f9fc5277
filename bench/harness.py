"""Load-driving pieces the benches share, written once so every bench measures alike.

Each bench keeps its own figures and table; what lives here is the plumbing whose
behaviour must not drift between them: pinning to a core, starting and stopping a
server subprocess, reading a process's CPU time, keeping calls in flight, percentiles.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

# The repository root: where a server subprocess runs, so `-m bench....` finds the code.
ROOT = Path(__file__).resolve().parent.parent
# Everything a bench starts listens here only.
LOOPBACK = "127.0.0.1"


def pin_to_core(core: int | None) -> None:
    """Pin this process to one core, so a server's figure is one core's worth."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        return
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {core})


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, all threads (/proc; None elsewhere).

    Server CPU per call is the figure a shared machine's noise disturbs far less than QPS.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # Fields 14 and 15 (utime, stime), counted from the state field (3) after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_or_nan(pid: int) -> float:
    """`process_cpu_seconds`, NaN where /proc is missing (for benches that print NaN)."""
    cpu = process_cpu_seconds(pid)
    return float("nan") if cpu is None else cpu


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying `token`, as the mesh's auth interceptor expects it."""
    return (("authorization", f"Bearer {token}"),)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The `p` percentile of already sorted values (NaN when empty), one rule for all."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


@dataclass
class LatencyResult:
    """What one load phase measured: calls and latencies (seconds) over `seconds`."""

    name: str
    calls: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def qps(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """Latency percentile in milliseconds."""
        return percentile(sorted(self.latencies), p) * 1000


def start_server(
    cmd: list[str],
    ready: str,
    *,
    on_failure: Callable[[subprocess.Popen[str]], object],
    **popen: Any,
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start a server subprocess and read the line it prints once listening.

    The line must start with `ready` (its port follows); otherwise `on_failure` gets the
    process and RuntimeError is raised with the line. Returns the process and the line's
    words, so a bench can read its own extra fields.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **popen)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != ready:
        on_failure(proc)
        raise RuntimeError(line)
    return proc, line


def stop_server(proc: subprocess.Popen[str], timeout: float) -> str:
    """SIGTERM (servers stop gracefully on it), kill after `timeout`; returns stdout."""
    if proc.poll() is not None:
        out, _ = proc.communicate()
        return out or ""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


# The load client's young-generation threshold while it measures (a server's, mesh/server.py).
CLIENT_GC_GEN0_THRESHOLD = 10_000


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """Keep the load client's own garbage collector out of the latencies it measures.

    The client is a Python process too: a full collection of everything it has loaded
    (grpc, protobuf, the generated modules) stopped it for 50-70 ms, which every call in
    flight then counted as the server's latency (seen as one slow BookTestDrive contest
    in twenty, the p99 of them all). As the servers do at start (mesh/server.py), what
    exists before the measurement is frozen out of the collector's way and young
    collections are rarer; both are undone after.
    """
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(CLIENT_GC_GEN0_THRESHOLD, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


async def keep_in_flight(
    call: Callable[[int], Awaitable[Any]],
    concurrency: int,
    end: float,
    on_error: Callable[[float], None],
    on_answer: Callable[[float, float], None],
) -> None:
    """Keep `concurrency` calls in flight until `end` (perf_counter), numbering them.

    A call starts only before `end`; `on_error(t0)` or `on_answer(t0, done)` sees each, so
    a bench decides itself which calls its window counts.
    """
    import asyncio

    counter = iter(range(1 << 62))

    async def worker() -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                await call(next(counter))
            except grpc.aio.AioRpcError:
                on_error(t0)
                continue
            on_answer(t0, time.perf_counter())

    with quiet_collector():
        await asyncio.gather(*(worker() for _ in range(concurrency)))


def server_settings(service: str, url: str) -> Any:
    """`service`'s settings from the environment, as `make run` has them, but on free
    ports, on `url`, and logging only failed calls (the access log would cost per call)."""
    import dataclasses

    from mesh.config import Settings

    return dataclasses.replace(
        Settings.from_env(service),
        grpc_port=0,
        metrics_port=0,
        database_url=url,
        access_log="errors",
    )


async def wait_for_term() -> None:
    """Return on SIGTERM or SIGINT: how a bench tells its server subprocess to stop."""
    import asyncio

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()


def serve_command(module: list[str], kind: str, url: str, core: int | None) -> list[str]:
    """The command line starting a bench's own `--serve kind` subprocess."""
    import sys

    cmd = [sys.executable, *module, "--serve", kind, "--url", url]
    if core is not None:
        cmd += ["--core", str(core)]
    return cmd


def naive_engine(url: str) -> Any:
    """The naive baselines' async SQLAlchemy engine: one connection per call in flight (so
    the baseline waits on its database, not on SQLAlchemy's pool: the default 5 + 10 would
    queue most of 64 calls) and, on SQLite, WAL with `mesh.db.sqlite_synchronous()` (what
    MARQUE_SQLITE_SYNCHRONOUS gives the real services too: the same durability) and the
    same busy timeout. Nothing else of `mesh.db`: the baseline is what a first version of a
    service would do."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    from mesh.db import SQLITE_BUSY_TIMEOUT_MS, sqlite_synchronous

    engine = create_async_engine(url, pool_size=16, max_overflow=64, pool_timeout=60)
    if url.startswith("sqlite"):
        synchronous = sqlite_synchronous()

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.close()

    return engine


def bench_postgres_url(no_postgres: bool = False) -> str | None:
    """Where PostgreSQL benches run: `MARQUE_BENCH_POSTGRES_URL`, else
    `MARQUE_TEST_POSTGRES_URL`, else nowhere (and nowhere with `--no-postgres`)."""
    if no_postgres:
        return None
    return os.environ.get("MARQUE_BENCH_POSTGRES_URL") or os.environ.get("MARQUE_TEST_POSTGRES_URL")


@contextlib.contextmanager
def server_env(prefix: str) -> Iterator[dict[str, str]]:
    """The environment of a bench's server subprocesses: a private var dir (the dev signing
    key the servers and the client share), SQLite synchronous=FULL (the naive baselines'
    durability), warnings only, the checkout on the path. The client pins itself off the
    servers' core; the process gets its cores back after (`python -m bench` runs the other
    benches in this same process)."""
    import tempfile

    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        env = dict(os.environ)
        env["MARQUE_VAR_DIR"] = tmp
        env["MARQUE_SQLITE_SYNCHRONOUS"] = "FULL"
        env["MARQUE_LOG_LEVEL"] = "WARNING"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(ROOT / "clients" / "python"), env.get("PYTHONPATH", "")]
        )
        try:
            yield env
        finally:
            if affinity is not None:
                os.sched_setaffinity(0, affinity)
