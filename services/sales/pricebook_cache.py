"""The price book in memory, so that CalculateQuote makes no database round trip.

Every process loads the whole book at start and again every `price_book_refresh_s`
seconds, off the request path; a PutTrim served here reloads at once (another replica's
within one refresh). Kept quotes (CreateQuote) read the entry from the database in their
own transaction, so what is kept never depends on a cache's age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mesh.db import Database
from mesh.dberrors import loggable
from services.sales.domain.pricebook import PriceBook
from services.sales.store import pricebook as store

log = logging.getLogger(__name__)


class PriceBookCache:
    """The latest price book read, and the task that keeps it fresh."""

    def __init__(self, db: Database, refresh_s: float) -> None:
        self.db = db
        self.refresh_s = refresh_s
        self.book = PriceBook(())
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Read the whole book and swap it in (readers see the old or the new one whole)."""
        async with self.db.engine.connect() as conn:
            entries = await store.all_entries(conn)
        self.book = PriceBook(entries)

    async def start(self) -> None:
        """Load it once, then keep it fresh in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="sales-price-book")

    async def stop(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception as e:  # keep serving the last book; try again next time
                log.warning("price book refresh failed", exc_info=loggable(e))
