"""The dealer registry as routing sees it, kept off the writer's path.

Routing needs every dealer for every batch, and the registry changes rarely, so it is held in
memory. A registry read on the group-commit writer's path stalls every call in flight (a
read on another connection: ~5-10 ms on the reference machine, each time it goes stale), so
only the very first batch waits for it; after that a stale registry is refreshed by a
background task while batches keep routing with the one they have, at most one refresh at a
time. A dealer created or seeded through this process invalidates it: the next batch waits
for a read that starts after the change, so the new dealer is seen at once (a refresh that
began before the change cannot overwrite it). Dealers created through another replica are
seen within `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from mesh.dberrors import loggable
from services.lead.domain.model import Dealer

log = logging.getLogger(__name__)


class DealerCache:
    """The last registry read, refreshed in the background once `ttl` seconds old."""

    def __init__(
        self,
        load: Callable[[], Awaitable[list[Dealer]]],
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._dealers: list[Dealer] | None = None
        self._read_at = 0.0
        self._generation = 0  # raised by every invalidation
        self._refresh: asyncio.Task[None] | None = None
        self.reads = 0  # registry reads done, for tests

    async def get(self) -> list[Dealer]:
        """The registry: read now only if there is none (first use, or invalidated)."""
        while self._dealers is None:
            await self._read()
        if self._clock() - self._read_at > self._ttl and self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(
                self._background(), name="lead-dealer-refresh"
            )
        return self._dealers

    def invalidate(self) -> None:
        """The registry changed here: the next `get` waits for a read that starts now."""
        self._generation += 1
        self._dealers = None

    async def close(self) -> None:
        """Stop a refresh in progress (shutdown)."""
        task, self._refresh = self._refresh, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _read(self) -> None:
        generation, started = self._generation, self._clock()
        dealers = await self._load()
        self.reads += 1
        # A read that began before an invalidation may predate the change: drop it.
        if generation == self._generation:
            self._dealers, self._read_at = dealers, started

    async def _background(self) -> None:
        try:
            await self._read()
        except Exception as e:
            # Keep routing with the registry we have; try again a `ttl` later.
            log.warning("the dealer registry could not be refreshed", exc_info=loggable(e))
            self._read_at = self._clock()
        finally:
            self._refresh = None
