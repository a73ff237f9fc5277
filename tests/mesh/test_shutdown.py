"""SIGTERM on a real service process: in-flight calls complete, new calls are refused."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import grpc
import grpc.aio
import pytest
from marque.testing.v1 import testing_service_pb2 as pb
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc

from mesh.config import ROOT

pytestmark = pytest.mark.e2e


async def _serving_port(stderr: asyncio.StreamReader) -> int:
    """Reads the process's JSON log lines until it says where it serves."""
    while True:
        line = await asyncio.wait_for(stderr.readline(), timeout=20)
        if not line:
            raise AssertionError("the server exited before serving")
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("msg", "").startswith("serving"):
            return int(event["grpc_port"])


async def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MARQUE_VAR_DIR": str(tmp_path),
        "MARQUE_GRPC_PORT": "0",
        "MARQUE_METRICS_PORT": "0",
        "MARQUE_SHUTDOWN_GRACE": "5",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.mesh.serve_testing",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        port = await _serving_port(proc.stderr)
        address = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.TestingServiceStub(channel)
            in_flight = [
                asyncio.ensure_future(stub.Sleep(pb.SleepRequest(millis=1500))) for _ in range(3)
            ]
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            async with grpc.aio.insecure_channel(address) as fresh:
                late = pb_grpc.TestingServiceStub(fresh)
                try:
                    await late.Sleep(pb.SleepRequest(millis=0), timeout=2)
                except grpc.aio.AioRpcError as e:
                    assert e.code() in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    )
                else:
                    raise AssertionError("a call after SIGTERM was served")
            replies = await asyncio.gather(*in_flight)
            assert [r.slept_millis for r in replies] == [1500, 1500, 1500]
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
