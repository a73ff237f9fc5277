"""The DMS adapter as the mesh serves it (mesh/service.py).

The lifespan reads the configuration once, builds the one outbound STAR client (kept-alive
connections, a breaker per dealer) and the engine, binds the engine to the event handlers,
starts the inbound writer and the inbound HTTP endpoint (`HTTP_HOST:HTTP_PORT`); on stop
it closes the endpoint first (no new documents), finishes the pending writes, unbinds the
handlers and closes the connections. Tests inject a `config` pointing at their simulator
and port 0, and read `running.http_port`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mesh.events.settings import EventSettings
from mesh.server import ServiceSpec
from mesh.service import Context, Service
from services.adapters.dms import engine, inbound, store
from services.adapters.dms.domain.config import DmsConfig
from services.adapters.dms.events import EVENTS, bind
from services.adapters.dms.intake import Intake
from services.adapters.dms.servicer import DmsServicer
from services.adapters.dms.star.client import StarClient

NAME = "dms-adapter"


class Endpoint:
    """Where the running inbound endpoint listens (for tests and the bench)."""

    port: int = 0


def service(
    *,
    config: DmsConfig | None = None,
    client: StarClient | None = None,
    clock: engine.Clock = engine.utc_now,
    events: bool = True,
    event_settings: EventSettings | None = None,
    endpoint: Endpoint | None = None,
) -> Service:
    """The DMS adapter; `events=False` runs no relay and no consumers."""

    @asynccontextmanager
    async def lifespan(ctx: Context) -> AsyncIterator[DmsServicer]:
        configured = config or DmsConfig.from_env(os.environ)
        star = client or StarClient(configured)
        eng = engine.DmsEngine(ctx.db, configured, star, clock)
        intake = Intake(ctx.db, configured, clock)
        bind(eng)
        await intake.start()
        runner = await inbound.serve(intake, configured.http_host, configured.http_port)
        if endpoint is not None:
            endpoint.port = inbound.bound_port(runner)
        try:
            yield DmsServicer(eng)
        finally:
            await runner.cleanup()
            await intake.stop()
            bind(None)
            await star.aclose()

    return Service(
        name=NAME,
        servicer=DmsServicer,
        lifespan=lifespan,
        migrations=store.MIGRATIONS,
        request_ids=store.request_ids,
        clock=clock,
        events=EVENTS if events else None,
        event_settings=event_settings,
    )


def build_spec(
    *,
    config: DmsConfig | None = None,
    client: StarClient | None = None,
    clock: engine.Clock = engine.utc_now,
    events: bool = True,
    event_settings: EventSettings | None = None,
    endpoint: Endpoint | None = None,
) -> ServiceSpec:
    """What `mesh.server.run` and `start` serve."""
    return service(
        config=config,
        client=client,
        clock=clock,
        events=events,
        event_settings=event_settings,
        endpoint=endpoint,
    ).spec()
