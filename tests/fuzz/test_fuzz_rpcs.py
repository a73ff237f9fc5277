"""A bounded, seeded fuzz of every RPC of every service in `mesh.catalog.existing()` (a
service is fuzzed by being added to the catalog), on SQLite and PostgreSQL.

Each service is started in-process from its `<module>.app.build_spec()`; every method of
its servicers receives undecodable bodies and random mutations of valid-looking requests
(tests/fuzz/messages.py), from OEM staff, without a token and as scoped principals, unary
and streaming alike. No call may end INTERNAL or UNKNOWN, nothing may be logged at ERROR or
with a traceback, and the service must still answer afterwards. A fixed seed: a failure
reproduces; ~5 s per service and back end here.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.catalog import ServiceEntry, existing
from mesh.config import Settings
from mesh.identity import Caller, Kind
from mesh.keys import mint_token
from mesh.server import RunningServer, start
from tests.fuzz.messages import Generator

SEED = 20260412
MUTATIONS = 100  # random requests per method
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
UNDECODABLE = [b"\xff", b"\x0a\x02\xc3\x28", b"\x0a\x05ab", b"\x12\x03\xff\xfe\xfd", b"\x08"]
BUDGET_SECONDS = 60.0


# Who calls, in turn: mostly OEM staff (who may call everything), no token at all, and the
# scoped principals whose row-level checks are the services' own.
CALLERS: list[Caller | None] = [
    Caller(Kind.OEM, "fuzz"),
    None,
    Caller(Kind.OEM, "fuzz"),
    Caller(Kind.DEALER, "fuzz-dealer", dealer_id="SH1"),
    Caller(Kind.OEM, "fuzz"),
    Caller(Kind.CUSTOMER, "fuzz-customer", member_id="M1"),
    Caller(Kind.OEM, "fuzz"),
    Caller(Kind.SERVICE, "fuzz-service", service="lead"),
]


def _bearer(caller: Caller | None) -> tuple[tuple[str, str], ...]:
    return () if caller is None else (("authorization", f"Bearer {mint_token(caller)}"),)


@dataclass
class Outcome:
    """What one call did."""

    method: str
    request: bytes | list[bytes]
    code: grpc.StatusCode
    details: str


def _methods(running: RunningServer) -> list[MethodDescriptor]:
    return [m for s in running.spec.servicers for m in s.descriptor.methods]


@asynccontextmanager
async def served(entry: ServiceEntry, database_url: str) -> AsyncIterator[RunningServer]:
    app = importlib.import_module(f"{entry.module}.app")
    settings = Settings(service=entry.name, grpc_port=0, metrics_port=0, database_url=database_url)
    running = await start(app.build_spec(), settings, serve_metrics=False)
    try:
        yield running
    finally:
        await running.stop(1.0)


def _channel(running: RunningServer) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(running.address)


async def _messages(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def send(
    ch: grpc.aio.Channel, method: MethodDescriptor, body: bytes | list[bytes], md: Any
) -> Outcome:
    """One call of `method` with raw request bytes (a list for a client stream)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = (
        ("stream" if method.client_streaming else "unary")
        + "_"
        + ("stream" if method.server_streaming else "unary")
    )
    call = getattr(ch, kind)(path)
    request: Any = _messages(body) if isinstance(body, list) else body
    try:
        if method.server_streaming:
            async for _ in call(request, metadata=md, timeout=20):
                pass
        else:
            await call(request, metadata=md, timeout=20)
        code, details = grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as e:
        code, details = e.code(), e.details() or ""
    return Outcome(path, body, code, details)


def bodies(method: MethodDescriptor, gen: Generator) -> list[bytes | list[bytes]]:
    """The requests one method receives: undecodable bytes, then random mutations."""
    cls = GetMessageClass(method.input_type)
    found: list[bytes | list[bytes]] = []
    for raw in UNDECODABLE:
        found.append(
            [gen.message(cls).SerializeToString(), raw] if method.client_streaming else raw
        )
    for _ in range(MUTATIONS):
        if method.client_streaming:
            count = gen.rng.randint(1, 4)
            found.append([gen.message(cls).SerializeToString() for _ in range(count)])
        else:
            found.append(gen.message(cls).SerializeToString())
    return found


@pytest.fixture(autouse=True)
def _free_side_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service's own HTTP endpoint (the DMS adapter's inbound STAR port) on a free port, so
    the test does not depend on the default port being unused on this machine."""
    monkeypatch.setenv("MARQUE_DMS_ADAPTER_HTTP_PORT", "0")


@pytest.mark.parametrize("entry", existing(), ids=lambda e: e.name)
async def test_no_rpc_fails_internally_on_hostile_input(
    entry: ServiceEntry, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    callers = [_bearer(c) for c in CALLERS]
    gen = Generator(SEED)
    began = time.monotonic()
    outcomes: list[Outcome] = []
    async with served(entry, database_url) as running, _channel(running) as ch:
        for method in _methods(running):
            for i, body in enumerate(bodies(method, gen)):
                outcomes.append(await send(ch, method, body, callers[i % len(callers)]))
        health = health_pb2_grpc.HealthStub(ch)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    elapsed = time.monotonic() - began
    bad = [o for o in outcomes if o.code in FORBIDDEN]
    assert not bad, "\n".join(
        f"{o.method} {o.code.name} {o.details} {o.request!r:.300}" for o in bad
    )
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not logged, [f"{r.name}: {r.getMessage()}" for r in logged]
    # An adapter's backend (SAP, a DMS) is another system, absent here: UNAVAILABLE is its
    # answer, and its RPCs against the simulators are tested in services/adapters/*/tests.
    adapter = entry.module.startswith("services.adapters.")
    codes = {o.code for o in outcomes} - ({grpc.StatusCode.UNAVAILABLE} if adapter else set())
    # Every code a hostile request may get is a caller's fault or a refusal.
    assert codes <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
    # Valid-looking requests get through to the service, not only refusals at the door.
    assert adapter or sum(o.code == grpc.StatusCode.OK for o in outcomes) >= 10
    assert elapsed < BUDGET_SECONDS, f"fuzz took {elapsed:.0f}s"
