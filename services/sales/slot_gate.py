"""One booking at a time per quarter hour, inside this process, before any transaction;
the bookings that waited learn what the one before them found, and need no database.

Of many bookings contending for one slot only one can win; without a gate every loser
opens a write transaction (SQLite: queued behind the single writer) only to be refused
inside it, or on PostgreSQL fails on the slot's key, rolls back and runs again. Here a
booking first waits for the in-flight bookings of this process that hold any of its
quarter hours. The one that goes first reads the database; when it ends it hands its
successors the drives it now knows hold those quarter hours (the drive it booked, or the
holders it was refused for), so a booking that waited is refused from that, with neither a
write nor a read: 64 bookings of 10 slots cost 10 bookings' reads and writes. Nothing is
kept once the wave of waiting bookings has passed (no cache to go stale when another replica
cancels), and the database's keys (store/testdrives.py) stay the guarantee across
processes; the gate only spares the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from services.sales.domain.testdrive import TestDrive


@dataclass(frozen=True, slots=True)
class Known:
    """A drive known to hold some quarter hours, and the request that booked it (a twin of
    that request must get the drive, not a refusal)."""

    drive: TestDrive
    keys: frozenset[str]
    request: Hashable | None = None


@dataclass(slots=True)
class Hold:
    """A booking's turn at its quarter hours: what its predecessors handed on (`known`),
    and `hand_on` for what it learnt itself."""

    keys: frozenset[str]
    known: list[Known] = field(default_factory=list)
    learnt: list[Known] = field(default_factory=list)

    def holders(self) -> list[Known]:
        """The known drives holding any of this booking's quarter hours."""
        return [k for k in self.known if k.keys & self.keys]

    def hand_on(self, *known: Known) -> None:
        """Tell the bookings waiting behind this one that these drives hold their keys."""
        self.learnt.extend(known)


class SlotGate:
    """The quarter hours being booked in this process, with what finishes each."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Future[list[Known]]] = {}

    @asynccontextmanager
    async def hold(self, keys: Sequence[str]) -> AsyncIterator[Hold]:
        """Hold `keys` while the body checks and books them: first wait until no in-flight
        booking of this process holds any of them (then take them with no await between,
        so two holders never overlap), gathering what the finished ones handed on."""
        turn = Hold(frozenset(keys))
        while busy := {self._held[k] for k in keys if k in self._held}:
            await asyncio.wait(busy)
            for f in busy:
                if f.done() and not f.cancelled():
                    turn.known.extend(f.result())
        done: asyncio.Future[list[Known]] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._held[k] = done
        try:
            yield turn
        finally:
            for k in keys:
                if self._held.get(k) is done:
                    del self._held[k]
            # What this booking learnt, and what it was told (a chain of refusals passes on
            # the winner), for the next in line.
            done.set_result(turn.learnt + turn.holders())
