"""The lead service as the mesh serves it (mesh/service.py).

The mesh opens and migrates the database and sweeps request ids; the lifespan here builds
the engine from configuration read once, seeds the demo dealer network into an empty
registry (so the first lead of a fresh `make run` routes somewhere), and starts the
group-commit writer; on the way out it drains the writer (everything enqueued is committed
and answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace

from mesh import contact
from mesh.server import ServiceSpec
from mesh.service import Context, Service
from services.lead import store
from services.lead.domain.config import LeadConfig
from services.lead.domain.demo_dealers import demo_dealers
from services.lead.engine import LeadEngine
from services.lead.events import EVENTS
from services.lead.servicer import LeadServicer

log = logging.getLogger(__name__)

# How long one ImportLeads stream may run: the server's connection recycling leaves calls
# this long to finish (mesh.server.ServiceSpec.longest_call_seconds). A million rows take
# 3-6 minutes at 2.8-5.5k rows/s; an hour leaves room for ten times that or a slow client.
IMPORT_MAX_SECONDS = 3600.0


def import_max_seconds(env: Mapping[str, str]) -> float:
    """`MARQUE_LEAD_IMPORT_MAX_SECONDS`, IMPORT_MAX_SECONDS unless set; >= 0."""
    raw = env.get("MARQUE_LEAD_IMPORT_MAX_SECONDS", "").strip()
    try:
        value = float(raw) if raw else IMPORT_MAX_SECONDS
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError("MARQUE_LEAD_IMPORT_MAX_SECONDS must be a number of seconds >= 0")
    return value


async def _backfill(engine: LeadEngine) -> None:
    """Older leads' digests, in the background; a failure is logged, the next start retries."""
    try:
        done = await engine.backfill_digests()
    except Exception:
        log.exception("giving older leads their contact digest failed; retried at next start")
        return
    if done:
        log.info("gave %d older leads their contact digest", done)


def service(*, seed: bool = True, config: LeadConfig | None = None, events: bool = True) -> Service:
    """The lead service. `seed=False` leaves an empty database empty (tests that register
    their own dealers); `config` replaces the one read from the environment; `events=False`
    runs no relay and no consumers (the outbox is still written)."""

    @asynccontextmanager
    async def lifespan(ctx: Context) -> AsyncIterator[LeadServicer]:
        # Configuration is read once, here; the domain never reads the environment.
        engine = LeadEngine(
            ctx.db, config or LeadConfig.from_env(os.environ), secret=contact.load_key()
        )
        if seed:
            added = await engine.seed_dealers(demo_dealers())
            if added:
                log.info("seeded %d demo dealers into an empty registry", added)
        await engine.start()
        backfill = asyncio.create_task(_backfill(engine), name="lead-digests")
        try:
            yield LeadServicer(engine)
        finally:
            backfill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await backfill
            await engine.stop()

    return Service(
        name="lead",
        servicer=LeadServicer,
        lifespan=lifespan,
        migrations=store.MIGRATIONS,
        request_ids=store.request_ids,
        events=EVENTS if events else None,
    )


def build_spec(
    *,
    seed: bool = True,
    config: LeadConfig | None = None,
    events: bool = True,
    import_seconds: float | None = None,
) -> ServiceSpec:
    """What `mesh.server.run` and `start` serve; an import stream may last `import_seconds`
    (default: `import_max_seconds` of the environment) without its connection being cut."""
    spec = service(seed=seed, config=config, events=events).spec()
    longest = import_max_seconds(os.environ) if import_seconds is None else import_seconds
    return replace(spec, longest_call_seconds=longest)
