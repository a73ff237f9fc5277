"""How the mesh runs the lead service: `build_spec()` for `mesh.server.run` / `start`.

Start-up opens the database from `settings.database_url`, upgrades its schema with the
hand-written Alembic migrations, seeds the demo dealer network into an empty registry (so
the first lead of a fresh `make run` routes somewhere), and starts the group-commit
writer and the sweeper that forgets request ids after their retention (mesh/retention.py);
shutdown stops the sweeper, drains the writer (everything enqueued is committed and
answered), then disposes the engine.
"""

from __future__ import annotations

import logging
import os

from marque.lead.v1 import lead_service_pb2, lead_service_pb2_grpc

from mesh.config import Settings
from mesh.db import Database
from mesh.retention import Sweeper, request_id_sweeper
from mesh.server import Servicer, ServiceSpec
from services.lead.domain.config import LeadConfig
from services.lead.domain.demo_dealers import demo_dealers
from services.lead.engine import LeadEngine
from services.lead.servicer import LeadServicer
from services.lead.store import MIGRATIONS, request_ids

log = logging.getLogger(__name__)


def build_spec(*, seed: bool = True, config: LeadConfig | None = None) -> ServiceSpec:
    """The lead service as the mesh serves it. `seed=False` leaves an empty database empty
    (tests that register their own dealers)."""
    state: dict[str, LeadEngine] = {}
    sweepers: list[Sweeper] = []

    async def startup(settings: Settings) -> None:
        db = Database(settings.database_url)
        await db.migrate(MIGRATIONS)
        # Configuration is read once, here; the domain never reads the environment.
        engine = LeadEngine(db, config or LeadConfig.from_env(os.environ))
        if seed:
            added = await engine.seed_dealers(demo_dealers())
            if added:
                log.info("seeded %d demo dealers into an empty registry", added)
        await engine.start()
        state["engine"] = engine
        sweeper = request_id_sweeper(db, request_ids.c.create_time, settings)
        sweeper.start()
        sweepers.append(sweeper)

    async def shutdown() -> None:
        while sweepers:
            await sweepers.pop().stop()
        engine = state.pop("engine", None)
        if engine is not None:
            await engine.stop()
            await engine.db.dispose()

    return ServiceSpec(
        name="lead",
        servicers=[
            Servicer(
                descriptor=lead_service_pb2.DESCRIPTOR.services_by_name["LeadService"],
                add_to_server=lead_service_pb2_grpc.add_LeadServiceServicer_to_server,
                impl=None,
                factory=lambda: LeadServicer(state["engine"]),
            )
        ],
        startup=startup,
        shutdown=shutdown,
    )
