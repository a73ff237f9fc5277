"""Serving a service: `start()` for tests and embedding, `run()` as the process entry.

The generated `add_XServicer_to_server` is given a proxy that captures the method handlers;
each is wrapped by the chain (mesh/chain.py) once, here, before the real server sees it.
Health and reflection are registered directly: not wrapped, not traced.

A unary method may answer with its reply already encoded (`bytes` of the response message),
which go out as they are (`_as_is`): a reply whose bulk the servicer encodes from plain
integers (sales' CalculateQuote, a 60-month schedule of 240 amounts) is then not built as
hundreds of messages only for grpc to serialise them again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from mesh import logging as mesh_logging
from mesh import tracing as mesh_tracing
from mesh.auth import Authenticator, Policy
from mesh.chain import MethodChain, Runtime, note_metadata
from mesh.config import Settings
from mesh.door import guarded_generic
from mesh.keys import KeySet
from mesh.metrics import MetricsServer
from mesh.paging import default_secret
from mesh.shedding import Acceptors, Shedder
from mesh.validation import validates_stream

log = logging.getLogger("mesh.server")


@dataclass
class Servicer:
    """One gRPC service of a process: its descriptor, generated adder, and implementation
    (`impl`, or a `factory` called after the spec's startup)."""

    descriptor: ServiceDescriptor
    add_to_server: Callable[[Any, Any], None]
    impl: Any = None
    factory: Callable[[], Any] | None = None

    def instance(self) -> Any:
        """The implementation object, created by the factory if there is one."""
        if self.impl is not None:
            return self.impl
        if self.factory is None:
            raise ValueError(f"{self.descriptor.full_name}: give impl or factory")
        return self.factory()


@dataclass
class ServiceSpec:
    """What a service process serves, and its async start-up/shutdown hooks.

    `longest_call_seconds`: how long the service's longest call may run (a streaming
    import). A connection past its maximum age is told to go away (new calls open another
    one, so clients rebalance) and the calls on it get the age grace to finish, then are
    cut: the grace is at least this long, so recycling never cuts a call the service means
    to serve.
    """

    name: str
    servicers: list[Servicer]
    startup: Callable[[Settings], Awaitable[None]] | None = None
    shutdown: Callable[[], Awaitable[None]] | None = None
    longest_call_seconds: float = 0.0


class _Capture:
    """Stands in for the server in `add_XServicer_to_server` and keeps the method handlers."""

    def __init__(self) -> None:
        self.registered: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        self.generic: list[Any] = []

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.registered[service] = dict(handlers)

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def handlers(self, service: str) -> dict[str, grpc.RpcMethodHandler]:
        """The method handlers the generated code declared for `service`."""
        if service in self.registered:
            return self.registered[service]
        for generic in self.generic:  # generated code older than registered methods
            found = getattr(generic, "_method_handlers", None)
            if getattr(generic, "_name", None) == service and isinstance(found, dict):
                return {k.rpartition("/")[2]: v for k, v in found.items()}
        raise RuntimeError(f"add_to_server registered no handlers for {service}")


@dataclass
class RunningServer:
    """A started server; `stop()` drains it."""

    server: grpc.aio.Server
    health: Any
    services: list[str]
    spec: ServiceSpec
    metrics: MetricsServer | None
    port: int
    metrics_port: int
    address: str
    _stopped: bool = field(default=False, repr=False)
    acceptors: Acceptors | None = field(default=None, repr=False)  # see mesh/shedding.py

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first, refuse new calls, let in-flight ones finish within `grace`,
        then the spec's shutdown and the metrics endpoint."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.acceptors is not None:
            await self.acceptors.wait_stopped()
        try:
            if self.spec.shutdown is not None:
                await self.spec.shutdown()
        finally:
            if self.metrics is not None:
                self.metrics.stop()


async def start(
    spec: ServiceSpec,
    settings: Settings,
    *,
    tracing: mesh_tracing.Tracing | None = None,
    keys: KeySet | None = None,
    serve_metrics: bool = True,
) -> RunningServer:
    """Start serving `spec` on settings.host:grpc_port (0 = any free port)."""
    tracing = tracing or mesh_tracing.default(spec.name)
    default_secret()  # page tokens (mesh/paging.py): a bad secret fails the start, not a List
    if spec.startup is not None:
        await spec.startup(settings)
    runtime = _runtime(spec.name, settings, tracing, keys)
    shedder = (
        Shedder(spec.name, settings.max_concurrency, settings.queue_delay_target)
        if settings.load_shedding
        else None
    )
    generic: list[Any] = []  # every generic handler, for the acceptors (mesh/shedding.py)
    server = _grpc_server(settings, spec.longest_call_seconds)
    names: list[str] = []
    for servicer in spec.servicers:
        names.append(await _register(server, servicer, runtime, shedder, generic))
    health = _add_health_and_reflection(server, names, generic)
    try:
        port = _bind(server, settings)
    except RuntimeError:
        if spec.shutdown is not None:  # its startup ran: release what it opened
            await spec.shutdown()
        raise
    await server.start()
    acceptors = Acceptors(server, generic, shedder) if shedder is not None else None
    await _go_live(health, names)
    metrics = MetricsServer(settings.host, settings.metrics_port) if serve_metrics else None
    running = RunningServer(
        server=server,
        health=health,
        services=names,
        spec=spec,
        metrics=metrics,
        port=port,
        metrics_port=metrics.port if metrics else 0,
        address=f"127.0.0.1:{port}",
        acceptors=acceptors,
    )
    log.info(
        "serving %s",
        spec.name,
        extra={"grpc_port": port, "metrics_port": running.metrics_port, "services": names},
    )
    return running


def _grpc_server(settings: Settings, longest_call_seconds: float = 0.0) -> grpc.aio.Server:
    """The grpc.aio server: connections recycled after an age (clients re-resolve and
    rebalance), their calls given the grace or the longest call, whichever is longer, to
    finish; the port shared only when MARQUE_REUSEPORT asks."""
    grace_ms = max(settings.max_connection_age_grace_ms, round(longest_call_seconds * 1000))
    return grpc.aio.server(
        options=[
            ("grpc.max_connection_age_ms", settings.max_connection_age_ms),
            ("grpc.max_connection_age_grace_ms", min(grace_ms, _GRPC_INT_MAX)),
            ("grpc.so_reuseport", int(settings.reuseport)),
        ]
    )


# grpc's integer options are C ints.
_GRPC_INT_MAX = 2**31 - 1


def _runtime(
    service: str, settings: Settings, tracing: mesh_tracing.Tracing, keys: KeySet | None
) -> Runtime:
    """What every method chain of the server shares, made after the spec's startup (the
    authenticator reads the keys then)."""
    return Runtime(
        service=service,
        tracing=tracing,
        auth=Authenticator(keys),
        max_concurrency=settings.max_concurrency,
        access_log=settings.access_log,
        slow_call_seconds=settings.slow_call_seconds,
        in_flight=[0],
    )


def _add_health_and_reflection(
    server: grpc.aio.Server, names: list[str], generic: list[Any]
) -> Any:
    """grpc.health.v1 and reflection, not chained; returns the health servicer (NOT_SERVING
    until `_go_live`). Their generic handlers join `generic`, for the acceptors."""
    health = health_aio.HealthServicer()
    extras = _Capture()
    health_pb2_grpc.add_HealthServicer_to_server(health, extras)
    # The asyncio servicer, as enable_server_reflection picks for an aio server (given the
    # capture it would pick the sync one, run on executor threads).
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(  # type: ignore[attr-defined]
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ]
        ),
        extras,
    )
    # Not chained, but decoded through the door too: an undecodable probe is no traceback.
    extras.generic[:] = [guarded_generic(g) for g in extras.generic]
    server.add_generic_rpc_handlers(extras.generic)
    generic.extend(extras.generic)
    return health


async def _go_live(health: Any, names: list[str]) -> None:
    """Freeze what start-up loaded out of the collector's way, then report SERVING."""
    # Everything loaded so far (modules, descriptors, the chain) lives for the whole process:
    # keep it out of the cyclic collector so full collections stay cheap under load.
    gc.freeze()
    _tune_gc()
    for name in [*names, ""]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    """The bound gRPC port; a clear RuntimeError when another socket holds it."""
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc raises "Failed to bind" for an address in use
        port = 0
    if port == 0:
        hint = "" if settings.reuseport else " (MARQUE_REUSEPORT=1 shares a port on purpose)"
        raise RuntimeError(f"cannot bind {address}: is another process serving it?{hint}")
    return port


# Allocations (net of frees) between young-generation collections; CPython's default is 700.
# Under load a call's objects are still alive when a 700-allocation collection runs, so
# they are promoted and soon force full collections that stop the process for tens of ms
# (measured in the lead service at 64 calls in flight: five full collections of up to
# 50 ms in 10 s, the p99 of every call in flight). At 10 000 most of them die young first:
# no full collection in the same run, young collections of ~3 ms at most.
GC_GEN0_THRESHOLD = 10_000


def _tune_gc() -> None:
    """Young collections every `MARQUE_GC_GEN0_THRESHOLD` allocations (0 or less: Python's)."""
    threshold = int(os.environ.get("MARQUE_GC_GEN0_THRESHOLD", GC_GEN0_THRESHOLD))
    if threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(threshold, gen1, gen2)


async def _register(
    server: grpc.aio.Server,
    servicer: Servicer,
    runtime: Runtime,
    shedder: Shedder | None,
    generic: list[Any],
) -> str:
    """Wrap every method of one servicer with the chain and add it to `server`."""
    descriptor = servicer.descriptor
    service = descriptor.full_name
    policies = {m.name: Policy.of(m) for m in descriptor.methods}  # refuses to start if missing
    capture = _Capture()
    servicer.add_to_server(servicer.instance(), capture)
    wrapped: dict[str, grpc.RpcMethodHandler] = {}
    for name, generated in capture.handlers(service).items():
        handler = generated
        if not generated.response_streaming and generated.response_serializer is not None:
            handler = generated._replace(  # type: ignore[attr-defined]
                response_serializer=_as_is(generated.response_serializer)
            )
        chain = MethodChain(
            f"/{service}/{name}",
            handler,
            policies[name],
            runtime,
            validate_stream=validates_stream(descriptor.methods_by_name[name]),
        )
        wrapped[name] = chain.build()
        if shedder is not None:
            shedder.register(chain.full_method, chain.stats)
    handlers = _ChainHandlers(service, wrapped, shedder)
    server.add_generic_rpc_handlers((handlers,))
    generic.append(handlers)
    return service


def _as_is(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A unary reply's serializer that sends a reply given as `bytes` unchanged."""

    def encode(reply: Any) -> bytes:
        return reply if type(reply) is bytes else serialize(reply)

    return encode


class _ChainHandlers(grpc.GenericRpcHandler):
    """A service's chained handlers, found by grpc's generic look-up rather than as
    registered methods: grpc builds the call's metadata for that look-up either way, and
    here the chain gets that tuple instead of asking grpc to build it a second time (the
    generic look-up costs less than the second build)."""

    def __init__(
        self,
        service: str,
        handlers: dict[str, grpc.RpcMethodHandler],
        shedder: Shedder | None = None,
    ) -> None:
        self._by_path = {f"/{service}/{name}": h for name, h in handlers.items()}
        self._shedder = shedder  # admission at look-up, the first Python code of a call

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = self._by_path.get(handler_call_details.method)
        if handler is not None:
            if self._shedder is not None:
                handler = self._shedder.gate(handler_call_details.method, handler)
            note_metadata(tuple(handler_call_details.invocation_metadata or ()))
        return handler


async def serve(spec: ServiceSpec, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully."""
    running = await start(spec, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down %s", spec.name, extra={"grace_seconds": settings.shutdown_grace})
    await running.stop(settings.shutdown_grace)
    log.info("stopped %s", spec.name)


def run(spec: ServiceSpec, settings: Settings | None = None) -> None:
    """Process entry: logging, tracing, serve until a signal, graceful shutdown."""
    settings = settings or Settings.from_env(spec.name)
    mesh_logging.configure(spec.name, settings.log_level)
    tracing = mesh_tracing.default(spec.name)
    try:
        asyncio.run(serve(spec, settings))
    finally:
        tracing.shutdown()
