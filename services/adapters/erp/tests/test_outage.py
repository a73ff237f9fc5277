"""A 60 s SAP outage under load, across a real nats-server: sales confirms orders all through
the outage, their OrderConfirmed events wait (retried past MARQUE_EVENTS_MAX_DELIVER, never
dead letters), and once SAP is back every order reaches SAP exactly once, unclear timeouts
during the recovery included, with one SalesOrderCreated each. Both back ends for the
adapter's database. MARQUE_TEST_OUTAGE_SECONDS shortens the outage while iterating."""

from __future__ import annotations

import asyncio
import os
import random as _random
from decimal import Decimal
from pathlib import Path

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
from services.adapters.erp.app import NAME, build_spec
from services.adapters.erp.store.tables import inbox, outbox, sap_orders
from services.adapters.erp.tests.harness import confirmed
from services.adapters.erp.tests.helpers import Clock, Sap
from tests.natsfixture import private_nats

__all__ = ["private_nats"]
ORDERS = 120
OUTAGE_SECONDS = float(os.environ.get("MARQUE_TEST_OUTAGE_SECONDS", "60"))


async def _count(db: Database, query: sa.Select[int]) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _until(probe: object, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await probe():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.1)


async def test_an_outage_under_load_delays_orders_and_doubles_none(
    database_url: str, sap: Sap, private_nats: NatsServer, tmp_path: Path
) -> None:
    # Sales' side: an outbox and its relay publishing OrderConfirmed to MARQUE_SALES.
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
        config=sap.config,
        # The breaker's own randomness (seeded): a trickle gets through while it throttles.
        backend=sap.backend(clock=clock, random=_random.Random(15).random),
        event_settings=EventSettings.from_env(env),
    )
    settings = Settings(service=NAME, grpc_port=0, metrics_port=0, database_url=database_url)
    running = await start(spec, settings)
    db = Database(database_url)
    try:
        sap.sim.knobs.outage = True
        down = asyncio.get_running_loop().time()
        for n in range(ORDERS):  # confirmed all through the outage's first 90%
            event = confirmed(f"ord_{n}", price=str(Decimal(200000 + n)))

            async def work(uow: UnitOfWork, event: object = event, n: int = n) -> None:
                uow.emit(event, subject=f"ord_{n}")  # type: ignore[arg-type]

            await transaction(sales_db, work, outbox=sales_outbox)
            await asyncio.sleep(0.9 * OUTAGE_SECONDS / ORDERS)
        # The first orders' deliveries were refused past max_deliver by now.
        await asyncio.sleep(max(0.0, down + OUTAGE_SECONDS - asyncio.get_running_loop().time()))
        assert sap.sim.creates == 0
        assert await _count(db, sa.select(sa.func.count()).select_from(sap_orders)) == 0
        sap.sim.knobs.outage = False
        sap.sim.knobs.hang_after_create = 2  # two unclear creates during the recovery
        sap.sim.knobs.hang_seconds = 3.0
        clock.now += 121  # the outage leaves the breaker's window

        async def all_there() -> bool:
            return await _count(db, sa.select(sa.func.count()).select_from(sap_orders)) == ORDERS

        await _until(all_there, 90 + OUTAGE_SECONDS)  # the nak delays grow to 60 s
    finally:
        await running.stop(1.0)
        await relay.stop()
        await link.close()
        await sales_db.dispose()
    refs = [o["PurchaseOrderByCustomer"] for o in sap.sim.orders.values()]
    assert sorted(refs) == sorted(f"ord_{n}" for n in range(ORDERS))  # each exactly once
    assert sap.sim.creates == ORDERS
    created = sa.select(sa.func.count()).select_from(outbox)
    dead = sa.select(sa.func.count()).select_from(inbox).where(inbox.c.outcome == DEAD_LETTER)
    found = sa.select(sa.func.count()).select_from(sap_orders).where(sap_orders.c.state == "FOUND")
    try:
        assert await _count(db, created) == ORDERS and await _count(db, dead) == 0
        # At least the two unclear creates were found by look-up (and the orders of a batch
        # that failed part-way, rolled back and run again event by event).
        assert await _count(db, found) >= 2
        amounts = {o["TotalNetAmount"] for o in sap.sim.orders.values()}
        assert "200000.000" in amounts and len(amounts) == ORDERS
    finally:
        await db.dispose()
