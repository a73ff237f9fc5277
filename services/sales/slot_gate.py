"""One booking at a time per quarter hour, inside this process, before any transaction.

Of many bookings contending for one slot only one can win; without a gate every loser
opens a write transaction (SQLite: queued behind the single writer) only to be refused
inside it, or on PostgreSQL fails on the slot's key, rolls back and runs again. Here a
booking first waits for the in-flight bookings of this process that hold any of its
quarter hours, then checks on a read connection whether they are free, and is refused
there if not: the losers never write. The database's keys (store/testdrives.py) stay the
guarantee across processes; the gate only spares the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager


class SlotGate:
    """The quarter hours being booked in this process, with what finishes each."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Future[None]] = {}

    @asynccontextmanager
    async def hold(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """Hold `keys` while the body checks and books them: first wait until no in-flight
        booking of this process holds any of them (then take them with no await between,
        so two holders never overlap)."""
        while busy := {self._held[k] for k in keys if k in self._held}:
            await asyncio.wait(busy)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._held[k] = done
        try:
            yield
        finally:
            for k in keys:
                if self._held.get(k) is done:
                    del self._held[k]
            done.set_result(None)
