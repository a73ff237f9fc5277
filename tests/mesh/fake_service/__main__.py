"""Serves grpc.health.v1 on MARQUE_GRPC_PORT like a real service would.

FAKE_SERVICE_MODE: "ok" (default), "never_ready" (listens but reports NOT_SERVING),
"crash" (exits 3 one second after SERVING), "stubborn" (ignores SIGTERM).
It reports whether the NATS of MARQUE_NATS_URL answers when it starts and when it stops.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def nats_answers() -> str:
    """ "up" when a NATS server greets us at MARQUE_NATS_URL, else why not."""
    url = os.environ.get("MARQUE_NATS_URL", "")
    if not url:
        return "not set"
    where = urlsplit(url.split(",")[0])
    try:
        with socket.create_connection((where.hostname, where.port or 4222), timeout=2) as s:
            return "up" if s.recv(5) == b"INFO " else "not nats"
    except OSError:
        return "down"


async def main() -> int:
    mode = os.environ.get("FAKE_SERVICE_MODE", "ok")
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{os.environ['MARQUE_GRPC_PORT']}")
    await server.start()
    status = (
        health_pb2.HealthCheckResponse.NOT_SERVING
        if mode == "never_ready"
        else health_pb2.HealthCheckResponse.SERVING
    )
    await servicer.set("", status)
    print(f"{os.environ['MARQUE_SERVICE_NAME']} serving", file=sys.stderr, flush=True)
    print(f"nats at start: {nats_answers()}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if mode == "stubborn":
        loop.add_signal_handler(signal.SIGTERM, lambda: None)
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    if mode == "crash":
        await asyncio.sleep(1.0)
        print("fatal: simulated crash", file=sys.stderr, flush=True)
        return 3
    await stop.wait()
    print(f"nats at stop: {nats_answers()}", file=sys.stderr, flush=True)
    await servicer.enter_graceful_shutdown()
    await server.stop(1.0)
    print("drained", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
