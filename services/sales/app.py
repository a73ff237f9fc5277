"""The sales service as the mesh serves it (mesh/service.py).

The mesh opens and migrates the database, sweeps request ids (stamped by the service's
clock) and runs the service's events (`events.py`: the relay of its outbox to NATS, a
consumer per subscription, their sweeps); the lifespan here builds the engine from
configuration read once and hands the mesh the servicer; the engine's price-book cache is
loaded before serving and refreshed in the background until the service stops.
The clock and the configuration can be injected, so tests can move time; `events=False`
runs no relay and no consumers (the outbox is still written), as the tests' harness does.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mesh.events.settings import EventSettings
from mesh.server import ServiceSpec
from mesh.service import Context, Service
from services.sales import engine, store
from services.sales.domain.config import SalesConfig
from services.sales.events import EVENTS
from services.sales.servicer import SalesServicer


def service(
    *,
    config: SalesConfig | None = None,
    clock: engine.Clock = engine.utc_now,
    events: bool = True,
    event_settings: EventSettings | None = None,
) -> Service:
    """The sales service; `config` replaces the one read from the environment;
    `events=False` runs no relay and no consumers (the outbox is still written)."""

    @asynccontextmanager
    async def lifespan(ctx: Context) -> AsyncIterator[SalesServicer]:
        # Configuration is read once, here; the domain never reads the environment.
        configured = config or SalesConfig.from_env(os.environ)
        sales = engine.SalesEngine(ctx.db, configured, clock)
        await sales.start()  # the price book, loaded and kept fresh
        try:
            yield SalesServicer(sales)
        finally:
            await sales.stop()

    return Service(
        name="sales",
        servicer=SalesServicer,
        lifespan=lifespan,
        migrations=store.MIGRATIONS,
        request_ids=store.request_ids,
        clock=clock,
        events=EVENTS if events else None,
        event_settings=event_settings,
    )


def build_spec(
    *,
    config: SalesConfig | None = None,
    clock: engine.Clock = engine.utc_now,
    events: bool = True,
    event_settings: EventSettings | None = None,
) -> ServiceSpec:
    """What `mesh.server.run` and `start` serve."""
    return service(config=config, clock=clock, events=events, event_settings=event_settings).spec()
