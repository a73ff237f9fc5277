"""Overload: what callers see at ~4x the load a service sustains, with the shedder and without.

For each service (lead: 80% SubmitLead, 20% GetLead; member: 80% EarnPoints, 20% GetMember)
and each mode (`MARQUE_LOAD_SHEDDING=on`, then `off` as the baseline, in the same run), a
fresh server subprocess on core 0 (the client runs on the other cores):
1. sustainable load: `--concurrency` calls kept in flight (closed loop), calls answered OK/s;
2. overload: an open loop offering `--factor` x the sustainable rate of the shedding run
   (the same rate for both modes) for `--seconds`, each call with a `--deadline`, at most
   `--cap` in flight (a call due beyond it is counted as not sent).
It prints, for the calls started in the measured window: RESOURCE_EXHAUSTED reply latency
p50/p99, accepted (OK) latency p50/p99, the shed fraction, goodput (OK/s) against the
sustainable rate, the other codes, the client's own CPU (a saturated client would measure
itself), and the calls whose servicer started after their deadline had passed (must be 0;
`late` counts those that finished after it: work nobody waited for).

    python -m bench.overload [--services lead member] [--seconds 8] [--factor 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import grpc

from bench.harness import (
    LOOPBACK,
    ROOT,
    bearer_metadata,
    keep_in_flight,
    percentile,
    pin_to_core,
    process_cpu_seconds,
    serve_command,
    server_settings,
    start_server,
    stop_server,
    wait_for_term,
)

SERVER_CMD = ["-m", "bench.overload"]
SERVICES = ("lead", "member")
RETRY_AFTER = 0.5  # the shedder's RetryInfo (mesh.shedding.RETRY_AFTER)
_counts = [0, 0]  # in a server: servicers started after their deadline, finished after it

# ---------------------------------------------------------------------------- servers


def _counting(impl: Any) -> Any:
    """Wrap every public coroutine method of a servicer to count deadline-expired calls."""
    for name in dir(type(impl)):
        method = getattr(impl, name)
        if name.startswith("_") or not asyncio.iscoroutinefunction(method):
            continue

        async def wrapped(request: Any, context: Any, method: Any = method) -> Any:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                _counts[0] += 1
            try:
                return await method(request, context)
            finally:
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:
                    _counts[1] += 1

        setattr(impl, name, wrapped)
    return impl


def _made(impl: Any, factory: Any) -> Any:
    """The servicer (given, or made by its factory after start-up), counted."""
    return _counting(impl if impl is not None else factory())


async def serve(service: str, url: str) -> None:
    """One service as `make run` starts it (on a free port), its servicers counted."""
    from mesh.server import start
    from services.lead.app import build_spec as lead_spec
    from services.member.app import build_spec as member_spec

    spec = lead_spec(events=False) if service == "lead" else member_spec(events=False)
    for servicer in spec.servicers:
        servicer.factory = partial(_made, servicer.impl, servicer.factory)
        servicer.impl = None
    logging.getLogger("mesh").setLevel(logging.ERROR)  # no handler: stderr gets WARNING+
    running = await start(spec, server_settings(service, url))
    print(f"READY {running.port}", flush=True)
    await wait_for_term()
    await running.stop(1.0)
    print(f"EXPIRED {_counts[0]} {_counts[1]}", flush=True)


class ServerProcess:
    """A service subprocess with shedding on or off; `stop()` reads its expired counts."""

    def __init__(self, service: str, shedding: bool, env: dict[str, str], core: int | None):
        env = {**env, "MARQUE_LOAD_SHEDDING": "on" if shedding else "off"}
        url = f"sqlite+aiosqlite:///{env['MARQUE_VAR_DIR']}/{service}-{uuid.uuid4().hex[:6]}.db"
        cmd = serve_command(SERVER_CMD, service, url, core)
        self.proc, line = start_server(
            cmd, "READY", on_failure=lambda p: p.kill(), cwd=ROOT, env=env
        )
        self.target = f"{LOOPBACK}:{int(line[1])}"
        self.expired = (0, 0)

    def stop(self) -> None:
        for line in stop_server(self.proc, timeout=30).splitlines():
            if line.startswith("EXPIRED "):
                self.expired = (int(line.split()[1]), int(line.split()[2]))


# ---------------------------------------------------------------------------- load


async def lead_calls(target: str, md: Any) -> tuple[Callable[[int, float], Awaitable[Any]], Any]:
    """80% SubmitLead (distinct mobiles), 20% GetLead of leads submitted earlier."""
    from marque.lead.v1 import lead_service_pb2, lead_service_pb2_grpc

    from bench.lead_submit import Mobiles, lead_request

    channel = grpc.aio.insecure_channel(target)
    stub = lead_service_pb2_grpc.LeadServiceStub(channel)
    mobiles, run, ids = Mobiles("139"), uuid.uuid4().hex[:8], []
    for n in range(20):
        req = lead_request(mobiles.next(), n, request_id=f"seed-{run}-{n}")
        ids.append((await stub.SubmitLead(req, metadata=md, timeout=10)).lead.id)

    def call(n: int, timeout: float) -> Awaitable[Any]:
        if n % 5 == 4:
            get = lead_service_pb2.GetLeadRequest(id=ids[n % len(ids)])
            return stub.GetLead(get, metadata=md, timeout=timeout)
        req = lead_request(mobiles.next(), n, request_id=f"{run}-{n}")
        return stub.SubmitLead(req, metadata=md, timeout=timeout)

    return call, channel


async def member_calls(target: str, md: Any) -> tuple[Callable[[int, float], Awaitable[Any]], Any]:
    """80% EarnPoints over 256 members, 20% GetMember."""
    from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc

    channel = grpc.aio.insecure_channel(target)
    stub = member_service_pb2_grpc.MemberServiceStub(channel)
    run, members = uuid.uuid4().hex[:8], []
    for i in range(256):
        key = member_service_pb2.IdentityKey(
            type=member_pb2.IDENTITY_TYPE_APP_USER_ID, value=f"bench-{run}-{i}"
        )
        req = member_service_pb2.RegisterMemberRequest(identity=key, request_id=f"r-{run}-{i}")
        members.append((await stub.RegisterMember(req, metadata=md, timeout=10)).member.id)

    def call(n: int, timeout: float) -> Awaitable[Any]:
        member = members[n % len(members)]
        if n % 5 == 4:
            get = member_service_pb2.GetMemberRequest(member_id=member)
            return stub.GetMember(get, metadata=md, timeout=timeout)
        earn = member_service_pb2.EarnPointsRequest(
            member_id=member, points=10, reason="service visit", request_id=f"{run}-{n}"
        )
        return stub.EarnPoints(earn, metadata=md, timeout=timeout)

    return call, channel


@dataclass
class Overload:
    """What callers saw in one overload phase (latencies in seconds, by status code)."""

    seconds: float
    by_code: dict[str, list[float]] = field(default_factory=dict)
    not_sent: int = 0
    client_cpu: float = 0.0  # the load client's CPU seconds per second
    client_lag: list[float] = field(default_factory=list)  # its event loop's lateness
    server_cpu: float = float("nan")

    def n(self, code: str) -> int:
        return len(self.by_code.get(code, []))

    def pct(self, code: str, p: float) -> float:
        return percentile(sorted(self.by_code.get(code, [])), p) * 1000


async def sustainable(call: Callable[[int, float], Awaitable[Any]], args: Any) -> tuple[float, int]:
    """Calls answered OK per second with `args.concurrency` in flight (closed loop), and
    the calls that failed (shed) meanwhile; a shed caller waits before its next call."""
    ok = failed = 0
    start = time.perf_counter()
    measure_from, end = start + args.warmup, start + args.warmup + args.seconds

    def on_answer(t0: float, done: float) -> None:
        nonlocal ok
        ok += measure_from <= t0 and done <= end

    def on_error(_t0: float) -> None:
        nonlocal failed
        failed += 1

    async def polite(n: int) -> Any:  # a shed caller waits as RetryInfo says
        try:
            return await call(n, 10.0)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                await asyncio.sleep(RETRY_AFTER)
            raise

    await keep_in_flight(polite, args.concurrency, end, on_error, on_answer)
    return ok / args.seconds, failed


async def overload(
    call: Callable[[int, float], Awaitable[Any]], rate: float, args: Any, pid: int
) -> Overload:
    """Offer `rate` calls/s (open loop) for warm-up + `args.seconds`; keep the window's."""
    result = Overload(args.seconds)
    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    measure_from, end = start + args.warmup, start + args.warmup + args.seconds

    async def one(n: int, t0: float) -> None:
        try:
            await call(n, args.deadline)
            code = "OK"
        except grpc.aio.AioRpcError as e:
            code = e.code().name
        if t0 >= measure_from:
            result.by_code.setdefault(code, []).append(time.perf_counter() - t0)

    sent, cpu0, server0 = 0, time.process_time(), None
    due = start
    while (now := time.perf_counter()) < end:
        if now >= measure_from:
            result.client_lag.append(max(0.0, now - due))
        due = now + 0.001
        if server0 is None and now >= measure_from:
            server0, cpu0 = process_cpu_seconds(pid), time.process_time()
        for _ in range(int((now - start) * rate) - sent):
            sent += 1
            if len(pending) >= args.cap:
                result.not_sent += now >= measure_from
                continue
            task = asyncio.ensure_future(one(sent, now))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(0.001)
    result.client_cpu = (time.process_time() - cpu0) / args.seconds
    server1 = process_cpu_seconds(pid)
    if server0 is not None and server1 is not None:
        result.server_cpu = (server1 - server0) / args.seconds
    if pending:
        await asyncio.wait(pending, timeout=args.deadline + 5)
    return result


# ---------------------------------------------------------------------------- main


def _row(label: str, r: Overload, sustained: float, expired: tuple[int, int]) -> str:
    answered = sum(len(v) for v in r.by_code.values())
    shed = r.n("RESOURCE_EXHAUSTED")
    others = ", ".join(
        f"{code} {len(v)}"
        for code, v in sorted(r.by_code.items())
        if code not in ("OK", "RESOURCE_EXHAUSTED")
    )
    others = f" | {others}" if others else ""
    lag = percentile(sorted(r.client_lag), 0.99) * 1000
    return (
        f"  {label:<13} shed p50 {r.pct('RESOURCE_EXHAUSTED', 0.5):7.1f} p99 "
        f"{r.pct('RESOURCE_EXHAUSTED', 0.99):7.1f} ms | OK p50 {r.pct('OK', 0.5):7.1f} p99 "
        f"{r.pct('OK', 0.99):7.1f} ms | shed {shed / answered if answered else 0:4.0%} | "
        f"goodput {r.n('OK') / r.seconds:6.0f}/s = {r.n('OK') / r.seconds / sustained:4.0%} | "
        f"expired served {expired[0]} (late {expired[1]}) | not sent {r.not_sent} | "
        f"client CPU {r.client_cpu:4.0%} (lag p99 {lag:.0f} ms)"
        f" server {r.server_cpu:4.0%}{others}"
    )


async def run_service(service: str, args: Any, env: dict[str, str], md: Any) -> None:
    """Both modes of one service; the baseline first: its sustainable rate sets the offer."""
    rate = 0.0
    make = lead_calls if service == "lead" else member_calls
    for shedding in (False, True):
        server = ServerProcess(service, shedding, env, args.server_core)
        try:
            call, channel = await make(server.target, md)
            sustained, failed = await sustainable(call, args)
            rate = rate or sustained * args.factor
            r = await overload(call, rate, args, server.proc.pid)
            await channel.close()
        finally:
            server.stop()
        if not shedding:
            print(
                f"{service}: sustainable {sustained:.0f} OK/s at {args.concurrency} in flight "
                f"(baseline server); offered {rate:.0f}/s ({args.factor:g}x) for "
                f"{args.seconds:g} s, deadline {args.deadline:g} s, at most {args.cap} in flight",
                flush=True,
            )
        label = "shedding on" if shedding else "baseline off"
        print(_row(label, r, rate / args.factor, server.expired), flush=True)
        print(f"  {'':13} closed loop: {sustained:.0f} OK/s, {failed} shed", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run the bench (or, with --serve, be one of its servers)."""
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__)
    parser.add_argument("--services", nargs="+", choices=SERVICES, default=list(SERVICES))
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64, help="sustainable: in flight")
    parser.add_argument("--factor", type=float, default=4.0, help="overload: x sustainable")
    parser.add_argument("--deadline", type=float, default=2.0, help="overload: call deadline")
    parser.add_argument("--cap", type=int, default=2000, help="overload: most calls in flight")
    parser.add_argument("--serve", choices=SERVICES, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        pin_to_core(args.core)
        asyncio.run(serve(args.serve, args.url))
        return
    from mesh.identity import Caller, Kind
    from mesh.keys import load_keys, mint_token

    multi = (os.cpu_count() or 1) > 1
    args.server_core = 0 if multi else None
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with tempfile.TemporaryDirectory(prefix="marque-bench-overload-") as tmp:
        env = {
            **os.environ,
            "MARQUE_VAR_DIR": tmp,
            "MARQUE_LOG_LEVEL": "ERROR",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")]),
        }
        md = bearer_metadata(
            mint_token(Caller(Kind.SERVICE, "bench", service="bench"), keys=load_keys(env))
        )
        if multi and affinity is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, (affinity - {0}) or affinity)
        try:
            for service in args.services:
                asyncio.run(run_service(service, args, env, md))
        finally:
            if affinity is not None:
                os.sched_setaffinity(0, affinity)


if __name__ == "__main__":
    main()
