"""A DMS outage under load, across a real nats-server: sales' OrderDelivered events wait
(retried past MARQUE_EVENTS_MAX_DELIVER, never dead letters) and once the DMS is back every
order's RDR reaches it exactly once as a document, unclear timeouts during the recovery
resent and not doubled, with one delivery row each. Both back ends for the adapter."""

from __future__ import annotations

import asyncio
import random as _random
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mesh.config import Settings
from mesh.db import Database
from mesh.events.inbox import DEAD_LETTER
from mesh.events.link import Link
from mesh.events.outbox import Outbox, outbox_table
from mesh.events.relay import Relay
from mesh.events.settings import EventSettings
from mesh.nats_server import NatsServer
from mesh.schema import new_metadata
from mesh.server import start
from mesh.unit_of_work import UnitOfWork, transaction
from services.adapters.dms.app import NAME, Endpoint, build_spec
from services.adapters.dms.store.tables import deliveries, inbox
from services.adapters.dms.tests.harness import delivered
from services.adapters.dms.tests.helpers import Clock, Dms
from tests.natsfixture import private_nats

__all__ = ["private_nats"]
ORDERS = 30


async def _count(db: Database, query: sa.Select[Any]) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_an_outage_under_load_delays_rdrs_and_doubles_none(
    database_url: str, dms: Dms, private_nats: NatsServer, tmp_path: Path
) -> None:
    sales_meta = new_metadata()
    sales_outbox = Outbox(outbox_table(sales_meta), service="sales")
    sales_db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sales.db'}")
    async with sales_db.begin() as conn:
        await conn.run_sync(sales_meta.create_all)
    link = Link(private_nats.url, name="test-sales")
    link.start()
    relay = Relay(sales_db, sales_outbox, link, poll=0.05)
    relay.start()
    env = {"MARQUE_NATS_URL": private_nats.url, "MARQUE_EVENTS_MAX_DELIVER": "2"}
    clock = Clock()
    spec = build_spec(
        config=dms.config,
        # The breakers' own randomness (seeded): a trickle gets through while they throttle.
        client=dms.client(clock=clock, random=_random.Random(15).random),
        event_settings=EventSettings.from_env(env),
        endpoint=Endpoint(),
    )
    settings = Settings(service=NAME, grpc_port=0, metrics_port=0, database_url=database_url)
    running = await start(spec, settings)
    db = Database(database_url)
    try:
        dms.sim.knobs.outage = True
        for n in range(ORDERS):
            dealer = "D1" if n % 2 else "D2"

            async def work(uow: UnitOfWork, n: int = n, dealer: str = dealer) -> None:
                uow.emit(delivered(f"ord_{n}", dealer=dealer), subject=f"ord_{n}")

            await transaction(sales_db, work, outbox=sales_outbox)
        await asyncio.sleep(4)  # deliveries 1..3 refused: past max_deliver
        assert dms.sim.received == {}
        dms.sim.knobs.outage = False
        dms.sim.knobs.hang_after_record = 2  # two unclear answers during the recovery
        dms.sim.knobs.hang_seconds = 2.5  # past the client's 2 s timeout
        clock.now += 121  # the outage leaves the breakers' window

        async def time_runs() -> None:  # the breakers' clock, 6x faster than the wall's
            while True:
                await asyncio.sleep(0.5)
                clock.now += 3

        runs = asyncio.get_running_loop().create_task(time_runs())
        total = sa.select(sa.func.count()).select_from(deliveries)
        deadline = asyncio.get_running_loop().time() + 90
        while await _count(db, total) < ORDERS:
            assert asyncio.get_running_loop().time() < deadline, "not in time"
            await asyncio.sleep(0.1)
        runs.cancel()
    finally:
        await running.stop(1.0)
        await relay.stop()
        await link.close()
        await sales_db.dispose()
    try:
        ids = sorted(key[2] for key in dms.sim.received)
        assert ids == sorted(f"ord_{n}" for n in range(ORDERS))  # each order's RDR once
        assert dms.sim.resends >= 2  # the two unclear ones were sent again, not doubled
        dead = sa.select(sa.func.count()).select_from(inbox).where(inbox.c.outcome == DEAD_LETTER)
        assert await _count(db, dead) == 0
        assert await _count(db, sa.select(sa.func.count()).select_from(deliveries)) == ORDERS
    finally:
        await db.dispose()
