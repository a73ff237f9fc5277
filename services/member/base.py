"""The member engine's state and the steps its RPCs share (see engine.py): the member as
the caller is shown it, and the unit of work that changes one member, idempotent by the
caller's request."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from mesh.db import Database
from mesh.idempotency import Asked
from mesh.unit_of_work import UnitOfWork, transaction
from services.member import accounts
from services.member.domain.config import MemberConfig
from services.member.domain.model import MemberRecord
from services.member.points_writer import PointsWriter
from services.member.store.tables import OUTBOX

Clock = Callable[[], dt.datetime]
Change = Callable[[UnitOfWork], Awaitable[str]]


def utc_now() -> dt.datetime:
    """The production clock."""
    return dt.datetime.now(dt.UTC)


class EngineBase:
    """What every part of the member engine stands on: the database, the programme, the
    clock, the digest key of its events, the points writer, and the one unit of work a
    change of a member runs in."""

    def __init__(
        self, db: Database, config: MemberConfig, clock: Clock = utc_now, *, secret: bytes
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.secret = secret  # the contact-digest key of the events (mesh/contact.py)
        self.points = PointsWriter(db, config.tiers)
        self.writer = self.points.committer()

    async def start(self) -> None:
        """Start the points writer (on the serving loop)."""
        self.writer.start()

    async def stop(self) -> None:
        """Finish the points writes already queued, stop the writer, release its
        connection."""
        await self.writer.stop()
        await self.points.connection.close()

    # -------------------------------------------------------------------------- access

    async def _member_at(self, member_id: str, now: dt.datetime) -> MemberRecord:
        return await accounts.member_at(self.db, member_id, now, self.config.tiers)

    async def _change_member(
        self, method: str, member_id: str, req: Asked, now: dt.datetime, change: Change
    ) -> str:
        """Run `change` on the locked, active member in one unit of work, idempotent by the
        caller's request: its result, or the first call's for a retried request id."""

        async def work(uow: UnitOfWork) -> str:
            prior = await accounts.prior(uow.conn, method, req, member_id)
            if prior is not None:
                return prior
            await accounts.lock_active(uow, member_id)
            result = await change(uow)
            await accounts.remember(uow.conn, method, req, result, member_id=member_id, now=now)
            return result

        return await transaction(self.db, work, outbox=OUTBOX)
