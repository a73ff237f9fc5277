"""The DMS adapter's inbound target (issue 15): >= 2,000 signed STAR events/s on one process,
beside a baseline of the same run.

Servers run in their own subprocess pinned to core 0 (the load client on the other), on
loopback: `bare` (a plain aiohttp POST handler that reads the body and answers 200 JSON: the
HTTP floor of one Python process), `dms` (the real adapter through `mesh.server`, its
inbound endpoint verifying each dealer's HMAC, checking the STAR subset, group-committing
the document, its signature and its event in the outbox, and relaying the events to a
nats-server the run starts, as `make run` has it). Every request is a distinct repair
status event (its own id and stage time) signed by one of 20 dealers, so each is accepted
(a resend or a replay would be the cheaper path); the client speaks HTTP/1.1 keep-alive on
`--connections` connections (256: at 2,000/s and 100 ms a request that many dealers' posts
are open at once) shared by `--clients` load-client processes, `--depth` requests pipelined
on each, from pre-signed bytes, so that the load client is not what limits the rate. Every
answer is checked: 200 and `"duplicate": false`. SQLite (WAL, synchronous=FULL), and PostgreSQL with
MARQUE_BENCH_POSTGRES_URL (a throwaway database). Bounded in time and count.

    python -m bench.dms [--seconds 5] [--warmup 1] [--connections 256] [--clients 2] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench import harness as h
from bench.member_earn import _cores, throwaway_postgres

SERVER_CMD = ["-m", "bench.dms"]
DEALERS = [f"B{n:02d}" for n in range(20)]
SECRET = "bench-dms-secret-0123456789"
PATH = "/star/v1/dealers/{dealer}/repair-status-events"


# ---------------------------------------------------------------------------- servers


async def serve_bare() -> None:
    """A plain aiohttp handler: read the body, answer 200 JSON."""
    from aiohttp import web

    async def post(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"document_id": "x", "duplicate": False})

    app = web.Application()
    app.router.add_post("/star/v1/dealers/{dealer}/{collection}", post)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, h.LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"READY {port}", flush=True)
    await h.wait_for_term()
    await runner.cleanup()


async def serve_dms(url: str) -> None:
    """The real DMS adapter, on free ports, its events relayed (MARQUE_NATS_URL)."""
    from mesh.server import start
    from services.adapters.dms.app import Endpoint, build_spec
    from services.adapters.dms.domain.config import DmsConfig

    config = DmsConfig(
        http_port=0,
        dealer_secrets=dict.fromkeys(DEALERS, SECRET),
        default_url="http://127.0.0.1:9/star/v1",  # no outbound calls in this bench
        start_simulator=False,
    )
    endpoint = Endpoint()
    running = await start(
        build_spec(config=config, endpoint=endpoint), h.server_settings("dms-adapter", url)
    )
    print(f"READY {endpoint.port}", flush=True)
    await h.wait_for_term()
    await running.stop(1.0)


# ---------------------------------------------------------------------------- client


def requests(count: int, run: str) -> list[bytes]:
    """`count` distinct signed status events as raw HTTP/1.1 requests."""
    from services.adapters.dms.domain import signature

    key = SECRET.encode()
    now = int(time.time())
    out = []
    for n in range(count):
        dealer = DEALERS[n % len(DEALERS)]
        body = json.dumps(
            {
                "repair_order_id": f"RO-{run}-{n // 7}",
                "repair_status_event_id": f"E-{run}-{n}",
                "repair_stage_type": "WORK_IN_PROGRESS",
                "repair_status_type": "ACTIVE",
                "occurrence_date_time": "2026-12-03T09:00:00Z",
            },
            separators=(",", ":"),
        ).encode()
        head = signature.headers(key, now, body)
        out.append(
            (
                f"POST {PATH.format(dealer=dealer)} HTTP/1.1\r\nHost: bench\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-Marque-Timestamp: {head['X-Marque-Timestamp']}\r\n"
                f"X-Marque-Signature: {head['X-Marque-Signature']}\r\n\r\n"
            ).encode()
            + body
        )
    return out


@dataclass
class Result:
    """One phase's figures."""

    name: str
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu_seconds: float = float("nan")

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.calls * 1e6 if self.calls else float("nan")


def _parse(buf: bytearray) -> tuple[int, bool] | None:
    """The first whole answer in `buf` (removed): (status, accepted), or None if partial."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end])
    at = head.lower().find(b"content-length:")
    length = int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
    if len(buf) < head_end + 4 + length:
        return None
    body = bytes(buf[head_end + 4 : head_end + 4 + length])
    del buf[: head_end + 4 + length]
    return int(head[9:12]), b'"duplicate": false' in body


async def drive(port: int, reqs: list[bytes], connections: int, depth: int, begin: float,
                seconds: float, name: str) -> Result:  # fmt: skip
    """Send `reqs` on `connections` keep-alive connections, `depth` requests pipelined on
    each (HTTP/1.1: the server answers them in order) from now on; count the answers to
    requests sent in the window [begin, begin + seconds) (wall clock, shared by the client
    processes)."""
    result = Result(name)
    queue = iter(reqs)
    start = time.perf_counter() + (begin - time.time())
    end = start + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(h.LOOPBACK, port)
        buf = bytearray()
        try:
            while True:
                t0 = time.perf_counter()
                batch = [r for _, r in zip(range(depth), queue, strict=False)]
                if t0 >= end or not batch:
                    return
                writer.write(b"".join(batch))
                pending = len(batch)
                while pending:
                    answer = _parse(buf)
                    if answer is None:
                        chunk = await reader.read(65536)
                        if not chunk:
                            raise ConnectionError("the server closed the connection")
                        buf += chunk
                        continue
                    pending -= 1
                    if start <= t0:
                        ok = answer[0] == 200 and answer[1]
                        result.calls += ok
                        result.errors += not ok
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    result.seconds = seconds
    return result


def client_main(args: argparse.Namespace) -> None:
    """One load-client process (`--drive`): sign its requests, drive, print its counts."""
    count = int(args.max_rate / args.clients * (args.seconds + args.warmup + 2))
    reqs = requests(count, args.run)
    result = asyncio.run(
        drive(args.port, reqs, args.connections, args.depth, args.begin, args.seconds, "client")
    )
    print(json.dumps({"calls": result.calls, "errors": result.errors}), flush=True)


async def load(port: int, pid: int, name: str, args: argparse.Namespace,
               env: dict[str, str]) -> Result:  # fmt: skip
    """`--clients` client processes on one window; the server's CPU over that window."""
    import subprocess
    import sys

    begin = time.time() + 2.0 + args.warmup  # the clients sign their requests meanwhile
    cmd = [
        sys.executable, *SERVER_CMD, "--drive", "--port", str(port), "--begin", str(begin),
        "--seconds", str(args.seconds), "--warmup", str(args.warmup),
        "--clients", str(args.clients), "--max-rate", str(args.max_rate),
        "--connections", str(args.connections // args.clients), "--depth", str(args.depth),
    ]  # fmt: skip

    def spawn(n: int) -> subprocess.Popen[str]:
        run = f"{name[:3]}{n}{time.time_ns()}"
        return subprocess.Popen(
            [*cmd, "--run", run], stdout=subprocess.PIPE, text=True, cwd=h.ROOT, env=env
        )

    procs = [spawn(n) for n in range(args.clients)]
    await asyncio.sleep(max(0.0, begin - time.time()))
    cpu0 = h.cpu_seconds_or_nan(pid)
    await asyncio.sleep(args.seconds)
    cpu1 = h.cpu_seconds_or_nan(pid)
    result = Result(name, seconds=args.seconds, cpu_seconds=cpu1 - cpu0)
    for proc in procs:
        out, _ = await asyncio.to_thread(proc.communicate)
        counts = json.loads(out.strip().splitlines()[-1])
        result.calls += counts["calls"]
        result.errors += counts["errors"]
    return result


class ServerProcess:
    """A server subprocess: started with `--serve`, stopped with SIGTERM."""

    def __init__(self, kind: str, url: str, core: int | None, env: dict[str, str]) -> None:
        cmd = h.serve_command(SERVER_CMD, kind, url, core)
        self.proc, line = h.start_server(
            cmd, "READY", on_failure=lambda p: p.kill(), cwd=h.ROOT, env=env, bufsize=1
        )
        self.port = int(line[1])

    def stop(self) -> None:
        h.stop_server(self.proc, timeout=30)


async def phase(kind: str, name: str, url: str, env: dict[str, str], core: int | None,
                args: argparse.Namespace) -> Result:  # fmt: skip
    """One server, driven for warmup + seconds by the client processes."""
    server = ServerProcess(kind, url, core, env)
    try:
        return await load(server.port, server.proc.pid, name, args, env)
    finally:
        server.stop()


async def run(args: argparse.Namespace, env: dict[str, str]) -> None:
    from mesh.nats_server import NatsServer

    core, client_cores = _cores()
    if client_cores:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, client_cores)
    tmp = Path(env["MARQUE_VAR_DIR"])
    nats = NatsServer(tmp / "nats", port=0, monitor_port=0, mqtt_port=0, log_path=tmp / "nats.log")
    nats.start()
    env["MARQUE_NATS_URL"] = nats.url
    try:
        bare = await phase("bare", "bare aiohttp 200 (baseline)", "", env, core, args)
        backends = [("SQLite", None), ("PostgreSQL", h.bench_postgres_url(args.no_postgres))]
        print(f"{'server':<44} {'accepted':>8} {'errors':>6} {'events/s':>9} {'CPU us':>7} "
              f"{'vs bare':>8}")  # fmt: skip
        rows = [bare]
        for label, base in backends:
            if label == "PostgreSQL" and not base:
                continue
            with throwaway_postgres(base) as pg:
                url = pg or f"sqlite+aiosqlite:///{tmp / 'dms.db'}"
                rows.append(
                    await phase("dms", f"dms-adapter inbound, {label}", url, env, core, args)
                )
        for r in rows:
            ratio = f"{r.rate / bare.rate:.2f}x" if bare.rate else ""
            print(f"{r.name:<44} {r.calls:>8} {r.errors:>6} {r.rate:>9.0f} {r.cpu_us:>7.0f} "
                  f"{ratio:>8}")  # fmt: skip
        for r in rows[1:]:
            verdict = "met" if r.rate >= 2000 and not r.errors else "NOT met"
            print(f"  target >= 2,000 signed STAR events/s on one process: {verdict} ({r.name})")
    finally:
        nats.stop()


def main() -> None:
    """Run the benchmark (or, with --serve, be one of its server subprocesses)."""
    parser = argparse.ArgumentParser(prog="python -m bench.dms", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=256, help="over all clients")
    parser.add_argument("--depth", type=int, default=1, help="requests pipelined per connection")
    parser.add_argument("--max-rate", type=float, default=12000.0, help="requests signed per s")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--clients", type=int, default=2, help="load-client processes")
    parser.add_argument("--serve", choices=["bare", "dms"], help=argparse.SUPPRESS)
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--begin", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--run", default="", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        client_main(args)
        return
    if args.serve:
        h.pin_to_core(args.core)
        asyncio.run(serve_bare() if args.serve == "bare" else serve_dms(args.url))
        return
    with h.server_env("marque-bench-dms-") as env:
        asyncio.run(run(args, env))


if __name__ == "__main__":
    main()
