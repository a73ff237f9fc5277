"""The member service as the mesh serves it (mesh/service.py).

The mesh opens and migrates the database and sweeps request ids (stamped by the service's
clock); the lifespan here builds the engine from configuration read once and starts its
points writer; on the way out it drains the writer (everything queued is committed and
answered). The clock and the programme configuration (expiry, tiers; else from the
environment) can be injected, so tests can move time.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mesh import contact
from mesh.server import ServiceSpec
from mesh.service import Context, Service
from services.member.base import Clock, utc_now
from services.member.domain.config import MemberConfig
from services.member.engine import MemberEngine
from services.member.events import EVENTS
from services.member.servicer import MemberServicer
from services.member.store import MIGRATIONS, request_ids


def service(
    *, config: MemberConfig | None = None, clock: Clock = utc_now, events: bool = True
) -> Service:
    """The member service; `config` replaces the one read from the environment;
    `events=False` runs no relay and no consumers (the outbox is still written)."""

    @asynccontextmanager
    async def lifespan(ctx: Context) -> AsyncIterator[MemberServicer]:
        # Configuration is read once, here; the domain never reads the environment.
        engine = MemberEngine(
            ctx.db, config or MemberConfig.from_env(os.environ), clock, secret=contact.load_key()
        )
        await engine.start()
        try:
            yield MemberServicer(engine)
        finally:
            await engine.stop()

    return Service(
        name="member",
        servicer=MemberServicer,
        lifespan=lifespan,
        migrations=MIGRATIONS,
        request_ids=request_ids,
        clock=clock,
        events=EVENTS if events else None,
    )


def build_spec(
    *, config: MemberConfig | None = None, clock: Clock = utc_now, events: bool = True
) -> ServiceSpec:
    """What `mesh.server.run` and `start` serve."""
    return service(config=config, clock=clock, events=events).spec()
