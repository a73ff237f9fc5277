"""How the mesh runs the member service: `build_spec()` for `mesh.server.run` / `start`.

Start-up opens the database from `settings.database_url`, upgrades its schema with the
hand-written Alembic migrations, starts the engine's points writer and the sweeper that
forgets request ids after their retention (mesh/retention.py); shutdown stops the sweeper,
drains the writer (everything queued is committed and answered) and disposes the engine.
The clock and the programme configuration (expiry, tiers; else from the environment) can
be injected, so tests can move time.
"""

from __future__ import annotations

import os

from marque.member.v1 import member_service_pb2, member_service_pb2_grpc

from mesh.config import Settings
from mesh.db import Database
from mesh.retention import Sweeper, request_id_sweeper
from mesh.server import Servicer, ServiceSpec
from services.member.domain.config import MemberConfig
from services.member.engine import Clock, MemberEngine, utc_now
from services.member.servicer import MemberServicer
from services.member.store import MIGRATIONS, request_ids


def build_spec(*, config: MemberConfig | None = None, clock: Clock = utc_now) -> ServiceSpec:
    """The member service as the mesh serves it."""
    state: dict[str, MemberEngine] = {}
    sweepers: list[Sweeper] = []

    async def startup(settings: Settings) -> None:
        db = Database(settings.database_url)
        await db.migrate(MIGRATIONS)
        engine = MemberEngine(db, config or MemberConfig.from_env(os.environ), clock)
        await engine.start()
        state["engine"] = engine
        sweeper = request_id_sweeper(db, request_ids.c.create_time, settings, clock)
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
        name="member",
        servicers=[
            Servicer(
                descriptor=member_service_pb2.DESCRIPTOR.services_by_name["MemberService"],
                add_to_server=member_service_pb2_grpc.add_MemberServiceServicer_to_server,
                impl=None,
                factory=lambda: MemberServicer(state["engine"]),
            )
        ],
        startup=startup,
        shutdown=shutdown,
    )
