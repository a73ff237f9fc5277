"""Cost of the mesh call chain against a bare grpc.aio server, unary Echo at fixed concurrency.

Each server runs in its own subprocess pinned to core 0 (the load client gets the other
cores):
- `bare`:      plain grpc.aio serving TestingService.Echo — the ceiling.
- `mesh 10%`:  mesh.server with the whole chain, default sampling (parentbased 10%).
- `mesh 100%`: the same at 100% sampling.
- `otel 100%`: bare + only opentelemetry-instrumentation-grpc's server interceptor at
  100% — the reference the mesh at 100% should match.
Sampled spans go through a BatchSpanProcessor to an exporter that drops them, so span
creation and processing are paid but no network.

The load comes from h2load (nghttp2-client) replaying a prepared gRPC request when it is
installed, so the figures are the server's; else from a Python grpc.aio client (which costs
about as much CPU as the server). The table says which one measured.

    python -m bench.mesh_overhead [--seconds 5] [--warmup 1] [--concurrency 64] [--rounds 3]

`--instructions` measures instead what a shared machine's noise cannot move: each server
runs under `valgrind --tool=callgrind`, its counters are zeroed after 800 warm-up calls
from h2load and read after `--calls` more (all threads), and the table gives instructions
per call (needs valgrind and h2load; about half a minute per server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    bearer_metadata,
    cpu_seconds_or_nan,
    keep_in_flight,
    percentile,
    pin_to_core,
    start_server,
    stop_server,
)

SERVICE = "marque.testing.v1.TestingService"
KINDS = ("bare", "mesh10", "mesh100", "otel100")
LABELS = {
    "bare": "bare grpc.aio",
    "mesh10": "mesh, 10% sampled",
    "mesh100": "mesh, 100% sampled",
    "otel100": "bare + otel interceptor, 100%",
}

# --------------------------------------------------------------------------- servers


def _null_processor() -> Any:
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return BatchSpanProcessor(Drop())


async def _serve(kind: str) -> None:
    import grpc
    from marque.testing.v1 import testing_service_pb2 as pb
    from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc

    class Echo(pb_grpc.TestingServiceServicer):
        async def Echo(self, request: Any, context: Any) -> Any:
            return pb.EchoResponse(message=request.message)

    stop: asyncio.Event = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if kind in ("mesh10", "mesh100"):
        from mesh import tracing
        from mesh.config import Settings
        from mesh.server import Servicer, ServiceSpec, start

        env = {"OTEL_TRACES_SAMPLER_ARG": "0.1" if kind == "mesh10" else "1.0"}
        t = tracing.configure("lead", env=env, processors=(_null_processor(),))
        spec = ServiceSpec(
            "lead",
            [
                Servicer(
                    pb.DESCRIPTOR.services_by_name["TestingService"],
                    pb_grpc.add_TestingServiceServicer_to_server,
                    impl=Echo(),
                )
            ],
        )
        running = await start(spec, Settings.from_env("lead"), tracing=t)
        print(f"PORT {running.port}", flush=True)
        await stop.wait()
        await running.stop(1.0)
        return
    interceptors: list[Any] = []
    if kind == "otel100":
        from opentelemetry.instrumentation.grpc import aio_server_interceptor
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider()
        provider.add_span_processor(_null_processor())
        interceptors.append(aio_server_interceptor(tracer_provider=provider))
    server = grpc.aio.server(interceptors=interceptors)
    pb_grpc.add_TestingServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await stop.wait()
    await server.stop(1.0)


def serve_main(kind: str) -> None:
    """Subprocess entry: serve one kind on core 0 until SIGTERM, logging to stderr only."""
    import logging

    from mesh import logging as mesh_logging

    pin_to_core(0 if (os.cpu_count() or 1) > 1 else None)
    mesh_logging.configure("lead", "INFO")
    logging.getLogger("mesh.server").setLevel(logging.WARNING)
    profile = os.environ.get("MARQUE_BENCH_PROFILE")
    if profile:  # a developer's aid: where the server's time goes
        import cProfile

        cProfile.runctx("asyncio.run(_serve(kind))", globals(), {"kind": kind}, profile)
        return
    asyncio.run(_serve(kind))


class Server:
    """One server subprocess."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        try:
            self.proc, line = start_server(
                [sys.executable, "-m", "bench.mesh_overhead", "--serve", kind],
                "PORT",
                on_failure=lambda p: stop_server(p, timeout=10),
                cwd=ROOT,
                env=env,
                stderr=subprocess.DEVNULL,
            )
        except RuntimeError:
            raise RuntimeError(f"{kind} server did not start") from None
        self.target = f"127.0.0.1:{int(line[1])}"

    def stop(self) -> None:
        """SIGTERM, then wait (kill after 10 s)."""
        stop_server(self.proc, timeout=10)


# ------------------------------------------------------------------------------ load


@dataclass
class Result:
    """What one load run measured."""

    qps: float
    p50_ms: float
    p99_ms: float
    errors: int
    # Server CPU (all its threads) per call: robust when neighbours steal the core.
    cpu_us: float = float("nan")


def _client_core() -> set[int] | None:
    if not hasattr(os, "sched_getaffinity") or (os.cpu_count() or 1) < 2:
        return None
    others = os.sched_getaffinity(0) - {0}
    return others or None


def h2load(target: str, token: str, args: argparse.Namespace, workdir: Path, pid: int) -> Result:
    """Drive Echo with h2load replaying one length-prefixed EchoRequest."""
    request = _echo_request(workdir)
    log_file = workdir / "h2load.log"
    log_file.unlink(missing_ok=True)
    clients = 4
    cmd = _h2load_command(
        target,
        token,
        request,
        f"-c{clients}",
        f"-m{max(1, args.concurrency // clients)}",
        f"-D{round(args.seconds * 1000)}ms",
        f"--warm-up-time={round(args.warmup * 1000)}ms",
        f"--log-file={log_file}",
    )
    core = _client_core()
    cpu: list[float] = []
    sampler = threading.Timer(args.warmup, lambda: cpu.append(cpu_seconds_or_nan(pid)))
    sampler.start()
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=args.seconds + args.warmup + 30,
        preexec_fn=(lambda: os.sched_setaffinity(0, core)) if core else None,
        check=False,
    )
    cpu.append(cpu_seconds_or_nan(pid))
    sampler.cancel()
    if out.returncode != 0 or not log_file.exists():
        raise RuntimeError(f"h2load failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    durations: list[float] = []
    errors = 0
    for line in log_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            if parts[1] != "200":
                errors += 1
            durations.append(int(parts[2]) / 1000)
    durations.sort()
    qps = 0.0
    for line in out.stdout.splitlines():
        if line.startswith("finished in"):
            qps = float(line.split(",")[1].split()[0])
    cpu_us = (cpu[-1] - cpu[0]) / len(durations) * 1e6 if len(cpu) == 2 and durations else 0.0
    return Result(qps, percentile(durations, 0.5), percentile(durations, 0.99), errors, cpu_us)


async def python_load(target: str, token: str, args: argparse.Namespace, pid: int) -> Result:
    """Drive Echo from a grpc.aio client with `concurrency` calls in flight."""
    import grpc
    from marque.testing.v1 import testing_service_pb2 as pb
    from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc

    core = _client_core()
    if core:
        os.sched_setaffinity(0, core)
    md = bearer_metadata(token)
    request = pb.EchoRequest(message="hello mesh")
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.TestingServiceStub(channel)
        start = time.perf_counter()
        measure_from = start + args.warmup
        end = measure_from + args.seconds

        cpu: list[float] = []
        loop = asyncio.get_running_loop()
        loop.call_later(args.warmup, lambda: cpu.append(cpu_seconds_or_nan(pid)))

        def on_error(t0: float) -> None:
            nonlocal errors
            errors += 1
            on_answer(t0, time.perf_counter())  # a failed call's latency counts too

        def on_answer(t0: float, done: float) -> None:
            if t0 >= measure_from:
                latencies.append((done - t0) * 1000)

        await keep_in_flight(
            lambda _n: stub.Echo(request, metadata=md), args.concurrency, end, on_error, on_answer
        )
        cpu.append(cpu_seconds_or_nan(pid))
    latencies.sort()
    cpu_us = (cpu[-1] - cpu[0]) / len(latencies) * 1e6 if len(cpu) == 2 and latencies else 0.0
    return Result(
        len(latencies) / args.seconds,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        errors,
        cpu_us,
    )


async def preflight(target: str, token: str) -> None:
    """One real call, so a misconfigured server cannot pass as a fast one."""
    import grpc
    from marque.testing.v1 import testing_service_pb2 as pb
    from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        reply = await pb_grpc.TestingServiceStub(channel).Echo(
            pb.EchoRequest(message="preflight"),
            metadata=bearer_metadata(token),
            timeout=10,
        )
    assert reply.message == "preflight"


# ------------------------------------------------------------------------------ main


def run(args: argparse.Namespace) -> dict[str, Result]:
    """Measure every kind in turn and print the table."""
    from mesh.identity import Caller, Kind
    from mesh.keys import load_keys, mint_token

    use_h2load = shutil.which("h2load") is not None and not args.python_client
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="marque-bench-") as tmp:
        workdir = Path(tmp)
        env = _server_env(tmp)
        keys = load_keys({"MARQUE_VAR_DIR": tmp})
        token = mint_token(Caller(Kind.OEM, "bench"), keys=keys, ttl_seconds=3600)
        # Rounds interleave the kinds so a noisy neighbour hits them alike; best run counts.
        for _ in range(args.rounds):
            for kind in args.kinds:
                server = Server(kind, env)
                try:
                    asyncio.run(preflight(server.target, token))
                    if use_h2load:
                        r = h2load(server.target, token, args, workdir, server.proc.pid)
                    else:
                        r = asyncio.run(python_load(server.target, token, args, server.proc.pid))
                finally:
                    server.stop()
                if kind not in results or r.qps > results[kind].qps:
                    results[kind] = r
    client = "h2load (nghttp2)" if use_h2load else "Python grpc.aio client"
    print(
        f"\nmesh overhead: unary Echo, {args.concurrency} in flight, {args.seconds}s after "
        f"{args.warmup}s warm-up, best of {args.rounds} interleaved rounds; server on 1 core; "
        f"load: {client}"
    )
    print(
        f"{'server':32} {'QPS':>7} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>8} "
        f"{'CPU us/call':>12} {'bare/CPU':>9} {'errors':>7}"
    )
    bare = results.get("bare")
    for kind, r in results.items():
        ratio = f"{r.qps / bare.qps:.0%}" if bare and bare.qps else "-"
        cpu_ratio = f"{bare.cpu_us / r.cpu_us:.0%}" if bare and r.cpu_us > 0 else "-"
        print(
            f"{LABELS[kind]:32} {r.qps:7.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f} {ratio:>8} "
            f"{r.cpu_us:12.0f} {cpu_ratio:>9} {r.errors:7d}"
        )
    print("bare/CPU: bare's server CPU per call over this one's (its throughput on a quiet core)")
    if "mesh100" in results and "otel100" in results and results["otel100"].qps:
        print(f"mesh 100% / otel-only 100%: {results['mesh100'].qps / results['otel100'].qps:.0%}")
    return results


def _h2load_command(target: str, token: str, request: Path, *options: str) -> list[str]:
    """h2load posting the prepared gRPC request to Echo, with `options`."""
    return [
        "h2load",
        *options,
        "-d",
        str(request),
        "-H",
        "te: trailers",
        "-H",
        "content-type: application/grpc",
        "-H",
        f"authorization: Bearer {token}",
        f"http://{target}/{SERVICE}/Echo",
    ]


def _server_env(var_dir: str) -> dict[str, str]:
    """A server subprocess's environment: its own var dir and free ports, no exporter."""
    env = {
        **os.environ,
        "MARQUE_VAR_DIR": var_dir,
        "MARQUE_GRPC_PORT": "0",
        "MARQUE_METRICS_PORT": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")]),
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.pop("OTEL_TRACES_EXPORTER", None)
    return env


def _echo_request(workdir: Path) -> Path:
    from marque.testing.v1 import testing_service_pb2 as pb

    body = pb.EchoRequest(message="hello mesh").SerializeToString()
    request = workdir / "echo.bin"
    request.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
    return request


def _h2load_calls(target: str, token: str, request: Path, calls: int) -> None:
    cmd = _h2load_command(target, token, request, f"-n{calls}", "-c4", "-m16")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if f"{calls} succeeded" not in out.stdout:
        raise RuntimeError(f"h2load under callgrind failed: {out.stdout[-300:]}")


def instructions(args: argparse.Namespace) -> dict[str, float]:
    """Instructions per call of each kind under callgrind (deterministic)."""
    from mesh.identity import Caller, Kind
    from mesh.keys import load_keys, mint_token

    if not all(shutil.which(tool) for tool in ("valgrind", "callgrind_control", "h2load")):
        raise SystemExit("--instructions needs valgrind (callgrind_control) and h2load")
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="marque-bench-cg-") as tmp:
        workdir = Path(tmp)
        env = _server_env(tmp)
        token = mint_token(Caller(Kind.OEM, "bench"), keys=load_keys({"MARQUE_VAR_DIR": tmp}))
        request = _echo_request(workdir)
        for kind in args.kinds:
            out_file = workdir / f"callgrind.{kind}"
            cmd = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out_file}",
                sys.executable,
                "-m",
                "bench.mesh_overhead",
                "--serve",
                kind,
            ]
            proc, line = start_server(
                cmd,
                "PORT",
                on_failure=lambda p: stop_server(p, timeout=30),
                cwd=ROOT,
                env=env,
                stderr=subprocess.DEVNULL,
            )
            try:
                target = f"127.0.0.1:{int(line[1])}"
                _h2load_calls(target, token, request, 800)
                control = ["callgrind_control", str(proc.pid)]
                subprocess.run([*control[:1], "-z", *control[1:]], capture_output=True, check=True)
                _h2load_calls(target, token, request, args.calls)
                subprocess.run([*control[:1], "-d", *control[1:]], capture_output=True, check=True)
            finally:
                stop_server(proc, timeout=60)
            dumps = sorted(workdir.glob(f"callgrind.{kind}.*"))
            total = next(
                int(text.split()[1])
                for text in dumps[0].read_text().splitlines()
                if text.startswith(("summary:", "totals:"))
            )
            counts[kind] = total / args.calls
    bare = counts.get("bare")
    print(f"\ninstructions per call (callgrind, {args.calls} calls after 800, all threads)")
    for kind, n in counts.items():
        vs = f"  bare's rate at this cost: {bare / n:.1%}" if bare else ""
        print(f"{LABELS[kind]:32} {n / 1000:8.1f}k{vs}")
    return counts


def main(argv: list[str] | None = None) -> None:
    """Command line entry."""
    parser = argparse.ArgumentParser(prog="python -m bench.mesh_overhead")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--python-client", action="store_true", help="do not use h2load")
    parser.add_argument(
        "--instructions", action="store_true", help="instructions per call under callgrind"
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls counted (--instructions)")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_main(args.serve)
        return
    if args.instructions:
        instructions(args)
        return
    run(args)


if __name__ == "__main__":
    main()
