"""The lead service as the mesh serves it (mesh/service.py).

The mesh opens and migrates the database and sweeps request ids; the lifespan here builds
the engine from configuration read once, seeds the demo dealer network into an empty
registry (so the first lead of a fresh `make run` routes somewhere), and starts the
group-commit writer; on the way out it drains the writer (everything enqueued is committed
and answered).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mesh.server import ServiceSpec
from mesh.service import Context, Service
from services.lead import store
from services.lead.domain.config import LeadConfig
from services.lead.domain.demo_dealers import demo_dealers
from services.lead.engine import LeadEngine
from services.lead.servicer import LeadServicer

log = logging.getLogger(__name__)


def service(*, seed: bool = True, config: LeadConfig | None = None) -> Service:
    """The lead service. `seed=False` leaves an empty database empty (tests that register
    their own dealers); `config` replaces the one read from the environment."""

    @asynccontextmanager
    async def lifespan(ctx: Context) -> AsyncIterator[LeadServicer]:
        # Configuration is read once, here; the domain never reads the environment.
        engine = LeadEngine(ctx.db, config or LeadConfig.from_env(os.environ))
        if seed:
            added = await engine.seed_dealers(demo_dealers())
            if added:
                log.info("seeded %d demo dealers into an empty registry", added)
        await engine.start()
        try:
            yield LeadServicer(engine)
        finally:
            await engine.stop()

    return Service(
        name="lead",
        servicer=LeadServicer,
        lifespan=lifespan,
        migrations=store.MIGRATIONS,
        request_ids=store.request_ids,
    )


def build_spec(*, seed: bool = True, config: LeadConfig | None = None) -> ServiceSpec:
    """What `mesh.server.run` and `start` serve."""
    return service(seed=seed, config=config).spec()
