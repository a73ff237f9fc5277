"""The ERP adapter as the mesh serves it (mesh/service.py).

The lifespan reads the configuration once, builds the one SAP client (kept-alive
connections, one CSRF session), the breaker and the engine, and binds the engine to the
event handlers; on stop it unbinds them and closes the connections. Tests inject a
`backend` or a `config` pointing at their simulator.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mesh.breaker import AdaptiveBreaker
from mesh.events.settings import EventSettings
from mesh.server import ServiceSpec
from mesh.service import Context, Service
from services.adapters.erp import engine, store
from services.adapters.erp.domain.config import ErpConfig
from services.adapters.erp.events import EVENTS, bind
from services.adapters.erp.sap.backend import Backend, SapBackend
from services.adapters.erp.sap.client import BACKEND, ODataClient
from services.adapters.erp.servicer import ErpServicer

NAME = "erp-adapter"


def sap_backend(config: ErpConfig) -> SapBackend:
    """The real SAP backend of a configuration."""
    return SapBackend(
        ODataClient(config),
        AdaptiveBreaker(BACKEND, k=config.breaker_k, window_seconds=config.breaker_window_seconds),
        attempts=config.create_attempts,
        backoff_seconds=config.retry_backoff_seconds,
    )


def service(
    *,
    config: ErpConfig | None = None,
    backend: Backend | None = None,
    clock: engine.Clock = engine.utc_now,
    events: bool = True,
    event_settings: EventSettings | None = None,
) -> Service:
    """The ERP adapter; `events=False` runs no relay and no consumers."""

    @asynccontextmanager
    async def lifespan(ctx: Context) -> AsyncIterator[ErpServicer]:
        configured = config or ErpConfig.from_env(os.environ)
        sap = backend or sap_backend(configured)
        eng = engine.ErpEngine(ctx.db, configured, sap, clock)
        bind(eng)
        try:
            yield ErpServicer(eng)
        finally:
            bind(None)
            await sap.aclose()

    return Service(
        name=NAME,
        servicer=ErpServicer,
        lifespan=lifespan,
        migrations=store.MIGRATIONS,
        request_ids=store.request_ids,
        clock=clock,
        events=EVENTS if events else None,
        event_settings=event_settings,
    )


def build_spec(
    *,
    config: ErpConfig | None = None,
    backend: Backend | None = None,
    clock: engine.Clock = engine.utc_now,
    events: bool = True,
    event_settings: EventSettings | None = None,
) -> ServiceSpec:
    """What `mesh.server.run` and `start` serve."""
    built = service(
        config=config, backend=backend, clock=clock, events=events, event_settings=event_settings
    )
    return built.spec()
