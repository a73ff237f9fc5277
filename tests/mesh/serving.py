"""Helpers the mesh tests share: an in-process TestingService server and tokens."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mesh import tracing
from mesh.config import Settings
from mesh.identity import Caller, Kind
from mesh.keys import KeySet, load_keys, mint_token
from mesh.server import RunningServer, ServiceSpec, start
from tests.mesh.testing_servicer import TestingServicer, testing_servicer


def keys_in(directory: Path) -> KeySet:
    """A development key pair in `directory` (no global, lru-cached keys involved)."""
    return load_keys({"MARQUE_VAR_DIR": str(directory)})


def token(keys: KeySet, kind: Kind = Kind.OEM, subject: str = "u1", **extra: Any) -> str:
    """A bearer token of the given principal kind."""
    return mint_token(Caller(kind, subject, **extra), keys=keys)


def bearer(keys: KeySet, kind: Kind = Kind.OEM, **extra: Any) -> list[tuple[str, str]]:
    """`authorization` metadata for a call."""
    return [("authorization", f"Bearer {token(keys, kind, **extra)}")]


def traced(env: dict[str, str] | None = None) -> tuple[tracing.Tracing, InMemorySpanExporter]:
    """A private tracer provider (never the global one) exporting to memory."""
    exporter = InMemorySpanExporter()
    t = tracing.configure(
        "lead",
        env=env if env is not None else {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
        processors=(SimpleSpanProcessor(exporter),),
        set_global=False,
    )
    return t, exporter


@dataclass
class Served:
    """A running TestingService with a channel and stub to it."""

    running: RunningServer
    channel: grpc.aio.Channel
    stub: pb_grpc.TestingServiceStub
    keys: KeySet
    tracing: tracing.Tracing


@asynccontextmanager
async def serve(
    var_dir: Path,
    *,
    tracing_: tracing.Tracing | None = None,
    serve_metrics: bool = False,
    **settings: Any,
) -> AsyncIterator[Served]:
    """Start a TestingService on 127.0.0.1:0 and stop it afterwards."""
    keys = keys_in(var_dir)
    t = tracing_ or tracing.configure("lead", env={}, set_global=False)
    base = Settings(service="lead", var_dir=var_dir, shutdown_grace=1.0)
    cfg = dataclasses.replace(base, **settings)
    impl = TestingServicer(
        provider=t.provider, token=token(keys, Kind.SERVICE, "lead", service="lead")
    )
    running = await start(
        ServiceSpec("lead", [testing_servicer(impl)]),
        cfg,
        tracing=t,
        keys=keys,
        serve_metrics=serve_metrics,
    )
    channel = grpc.aio.insecure_channel(running.address)
    try:
        yield Served(running, channel, pb_grpc.TestingServiceStub(channel), keys, t)
    finally:
        await channel.close(None)
        await running.stop(0.5)
