"""The sales service's application layer: one method per RPC, the caller explicit.

The servicer hands decoded values and the `Caller` to `SalesEngine` and gets domain
records back. Here, and only here: who may touch which row (decided once per call, with
`domain/visibility.py`), which unit of work does what (`mesh.unit_of_work.transaction`,
with the events it emits: `events.py`, written to the outbox in the same transaction), and
idempotency by the caller's request id (`mesh.idempotency`, AIP-155). The rules are in
`domain/` (pure, configured by `domain/config.py`), the SQL in `store/`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from mesh.db import Database
from mesh.idempotency import Request
from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork, transaction
from services.sales import events, metrics, store
from services.sales.domain import model, visibility
from services.sales.domain.config import SalesConfig
from services.sales.domain.errors import sales_not_found
from services.sales.domain.model import Sales

Clock = Callable[[], dt.datetime]
CREATE = "CreateSales"


def utc_now() -> dt.datetime:
    """The production clock."""
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    """A fresh sales id (the domain takes ids as parameters)."""
    return f"sales_{uuid.uuid4().hex[:24]}"


class SalesEngine:
    """Everything the servicer can ask of the sales service."""

    def __init__(self, db: Database, config: SalesConfig, clock: Clock = utc_now) -> None:
        self.db = db
        self.config = config
        self.clock = clock

    async def create(
        self, display_name: str, dealer_id: str, *, request_id: str, caller: Caller
    ) -> Sales:
        """CreateSales: a new sales owned by the caller's dealer (or the one staff
        name), announced by SalesCreated in the same transaction; a retried request id
        returns the first one and creates (and emits) nothing."""
        owner = visibility.owner_for(caller, dealer_id)
        now = self.clock()
        record = model.new_sales(
            new_id(),
            owner,
            display_name,
            now,
            caller.ref,
            config=self.config,
        )
        req = Request.of(caller, request_id, CREATE, owner, record.display_name)

        async def work(uow: UnitOfWork) -> str:
            # Concurrent twins of one request wait here (PostgreSQL; SQLite has one writer).
            await uow.lock(f"r|{req.scope}|{CREATE}|{req.request_id}")
            prior = await store.REQUEST_IDS.prior(uow.conn, CREATE, req)
            if prior is not None:
                return prior
            await store.insert_sales(uow.conn, record)
            uow.emit(events.created(record), subject=record.id)
            await store.REQUEST_IDS.remember(uow.conn, CREATE, req, record.id, now)
            uow.after_commit(lambda: metrics.record_created(caller.kind.value))
            return record.id

        created_id = await transaction(self.db, work, outbox=store.OUTBOX)
        if created_id == record.id:
            return record
        return await self.get(created_id, caller=caller)

    async def get(self, sales_id: str, *, caller: Caller) -> Sales:
        """GetSales: one sales; one the caller may not see is NOT_FOUND, like one
        that does not exist."""
        async with self.db.engine.connect() as conn:
            found = await store.get_sales(conn, sales_id)
        if found is None or not visibility.may_see(caller, found):
            raise sales_not_found(sales_id)
        return found
