"""The member engine driven directly, below the servicer (no gRPC): each call at a time of the
test's choosing, as a platform service (`service:test`) unless told otherwise."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mesh.db import Database
from mesh.idempotency import Request
from mesh.identity import Caller, Kind
from services.member import store
from services.member.domain.config import MemberConfig
from services.member.domain.identities import IdentityKey
from services.member.domain.model import MemberRecord, TierChangeRecord, TransactionRecord
from services.member.engine import MemberEngine
from services.member.store import MIGRATIONS

SERVICE = Caller(Kind.SERVICE, "test", service="test")
OEM = Caller(Kind.OEM, "test")
DIGEST_KEY = b"test-contact-digest-key-of-32-bytes!"


@dataclass(frozen=True)
class W:
    """One write: its request (id and fingerprint, in the test service's scope) and when."""

    req: Request
    now: dt.datetime


def w(request_id: str, now: dt.datetime) -> W:
    return W(Request(SERVICE.ref, request_id, f"fp-{request_id}"), now)


class Direct:
    """The engine's RPC methods with the time of each call as an argument."""

    def __init__(self, db: Database, config: MemberConfig | None = None) -> None:
        self.db = db
        self.now = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        self.engine = MemberEngine(
            db, config or MemberConfig(), lambda: self.now, secret=DIGEST_KEY
        )
        self.config = self.engine.config

    async def close(self) -> None:
        """Drain and stop the engine's points writer (started by the first points write)."""
        await self.engine.stop()

    def at(self, now: dt.datetime) -> MemberEngine:
        self.now = now
        return self.engine

    async def register(
        self, w: W, key: IdentityKey, display_name: str, city: str
    ) -> tuple[MemberRecord, bool]:
        return await self.at(w.now).register(key, display_name, city, req=w.req, caller=SERVICE)

    async def earn(
        self, w: W, member_id: str, points: int, reason: str, source_ref: str
    ) -> tuple[TransactionRecord, MemberRecord]:
        return await self.at(w.now).earn(
            member_id, points, reason, source_ref, req=w.req, caller=SERVICE
        )

    async def redeem(
        self, w: W, member_id: str, points: int, reason: str, source_ref: str
    ) -> tuple[TransactionRecord, MemberRecord]:
        return await self.at(w.now).redeem(
            member_id, points, reason, source_ref, req=w.req, caller=SERVICE
        )

    async def merge(
        self, w: W, winner_id: str, loser_id: str, reason: str
    ) -> tuple[MemberRecord, MemberRecord]:
        return await self.at(w.now).merge(winner_id, loser_id, reason, req=w.req, caller=OEM)

    async def get_member(self, member_id: str, now: dt.datetime) -> MemberRecord:
        return await self.at(now).get_member(member_id, caller=OEM)

    async def list_tier_changes(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[TierChangeRecord]:
        async with self.db.engine.connect() as conn:
            return await store.points.list_tier_changes(conn, member_id, before_seq, limit)

    async def ledger_sum(self, member_id: str) -> int:
        async with self.db.engine.connect() as conn:
            return await store.points.ledger_sum(conn, member_id)


@asynccontextmanager
async def direct(database_url: str, config: MemberConfig | None = None) -> AsyncIterator[Direct]:
    db = Database(database_url)
    await db.migrate(MIGRATIONS)
    d = Direct(db, config)
    try:
        yield d
    finally:
        await d.close()
        await db.dispose()
