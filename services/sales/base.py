"""The sales engine's state and the steps every part of it shares: the clock, ids, the
price-book cache, write transactions with the outbox, and AIP-155 request ids."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mesh.db import Database
from mesh.idempotency import Request
from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork, transaction
from services.sales import store
from services.sales.booking_writer import BookingWriter
from services.sales.domain.config import SalesConfig
from services.sales.domain.orders import RefundPolicy
from services.sales.order_writer import OrderWriter
from services.sales.pricebook_cache import PriceBookCache
from services.sales.slot_gate import SlotGate

T = TypeVar("T")
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The production clock."""
    return dt.datetime.now(dt.UTC)


def new_id(prefix: str) -> str:
    """A fresh id (the domain takes ids as parameters): `ord_0f3a...`."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class EngineBase:
    """What every RPC of the sales service works with."""

    def __init__(self, db: Database, config: SalesConfig, clock: Clock = utc_now) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.prices = PriceBookCache(db, config.price_book_refresh_s)
        self.zone = zoneinfo.ZoneInfo(config.default_time_zone)
        self.gate = SlotGate()  # test-drive bookings of this process (slot_gate.py)
        self.refunds = RefundPolicy(allocated_forfeit=config.allocated_forfeit)
        self.order_writer = OrderWriter(db)  # CreateOrder, PayDeposit (order_writer.py)
        self.booking_writer = BookingWriter(  # BookTestDrive (booking_writer.py)
            db, config.test_drive_minutes, config.default_time_zone
        )

    async def start(self) -> None:
        """Load the price book and keep it fresh; start the writers."""
        await self.prices.start()
        self.order_writer.start()
        self.booking_writer.start()

    async def stop(self) -> None:
        """Finish the orders and bookings queued, stop the background refresh."""
        await self.order_writer.stop()
        await self.booking_writer.stop()
        await self.prices.stop()

    def today(self) -> dt.date:
        """Today in China (the invoice date and the price book's days)."""
        return self.clock().astimezone(self.zone).date()

    async def write(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """One committed write transaction whose `uow.emit` writes to the outbox."""
        return await transaction(self.db, work, outbox=store.OUTBOX)

    async def once(
        self,
        uow: UnitOfWork,
        method: str,
        req: Request,
        made_id: str,
        make: Callable[[], Awaitable[object]],
    ) -> tuple[str, bool]:
        """Run `make` (which creates the row `made_id`) once per request id: (id, created).
        The request id is claimed first, in one statement (a concurrent twin waits on its
        key until the first commits); a retry of the request gets the first id and runs
        nothing."""
        prior = await store.REQUEST_IDS.claim(uow.conn, method, req, made_id, self.clock())
        if prior is not None:
            return prior, False
        await make()
        return made_id, True

    @staticmethod
    def request(caller: Caller, request_id: str, method: str, *asked: object) -> Request:
        """The request id of a call in its caller's scope, with what it asks."""
        return Request.of(caller, request_id, method, *asked)
