"""Request ids (AIP-155), written once for every service.

A request id belongs to its caller: it is remembered under the caller's scope, so the same
string from two callers is two requests. It stands for one request: what was asked is kept
as a fingerprint beside it, so a retry (same id, same request) gets the first result and a
reused id with another request is INVALID_ARGUMENT `REQUEST_ID_REUSED`, with nothing done.

Every service that takes request ids has one `request_ids` table of the shape
`request_ids_table` makes (scope, method, request id, fingerprint, result reference, create
time, plus columns of its own), and uses `RequestIds` on it inside the transaction that
makes the change, so the memory of a request commits or rolls back with its effect. The
runtime's retention sweeper (mesh/retention.py) forgets the rows after a few days.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.errors import FieldViolation, InvalidArgument
from mesh.identity import Caller
from mesh.schema import UtcDateTime

REQUEST_ID_REUSED = "REQUEST_ID_REUSED"


def scope_of(caller: Caller) -> str:
    """Whose request ids these are: the caller's stable reference (`dealer:D001`...)."""
    return caller.ref


def fingerprint(*parts: object) -> str:
    """A short, stable hash of what a request asks (its method and decoded arguments, or
    its serialized message). The parts are hashed, never stored."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


class RequestIdReused(InvalidArgument):
    """The request id was sent before with a different request."""

    def __init__(self) -> None:
        super().__init__(
            "request_id: was already used for a different request",
            reason=REQUEST_ID_REUSED,
            field_violations=[
                FieldViolation("request_id", "was already used for a different request")
            ],
        )


class Asked(Protocol):
    """A request as idempotency sees it: whose, which id, what it asks."""

    @property
    def scope(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One call's request id in its caller's scope, with the request's fingerprint."""

    scope: str
    request_id: str
    fingerprint: str

    @classmethod
    def of(cls, caller: Caller, request_id: str, *asked: object) -> Request:
        """The request `caller` sent with `request_id`, asking `asked` (hashed)."""
        return cls(scope_of(caller), request_id, fingerprint(*asked))

    def replayed_in(self, claimed: Mapping[tuple[str, str], tuple[str, str]]) -> str | None:
        """The first call's result when this request id is in `claimed` ((scope, request id)
        -> (fingerprint, result): a batch's claims, read or made earlier in the batch);
        RequestIdReused when it came with other arguments; None for a new request."""
        if not self.request_id or (self.scope, self.request_id) not in claimed:
            return None
        first, result = claimed[(self.scope, self.request_id)]
        if first != self.fingerprint:
            raise RequestIdReused()
        return result


def request_ids_table(
    metadata: sa.MetaData, *extra: sa.Column[Any] | sa.Index | sa.Constraint
) -> sa.Table:
    """The `request_ids` table of a service: the shared columns and the service's own
    (`extra`: columns, e.g. the member a request concerns for erasure, and the indexes that
    serve them), so the model says everything its migration creates."""
    return sa.Table(
        "request_ids",
        metadata,
        sa.Column("scope", sa.String(160), primary_key=True),
        sa.Column("method", sa.String(48), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        *(e for e in extra if isinstance(e, sa.Column)),
        sa.Column("result", sa.String(80), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        *(e for e in extra if not isinstance(e, sa.Column)),
        sa.Index("ix_request_ids_create_time", "create_time"),  # the retention sweep
    )


class RequestIds:
    """Claim, look up and remember request ids in one service's table, on the caller's
    connection and transaction."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        c = table.c
        self._lookup = sa.select(c.fingerprint, c.result).where(
            c.scope == sa.bindparam("p_scope"),
            c.method == sa.bindparam("p_method"),
            c.request_id == sa.bindparam("p_request_id"),
        )
        self._claim = {
            name: insert(table).on_conflict_do_nothing().returning(c.request_id)
            for name, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert))
        }

    async def prior(
        self, conn: AsyncConnection, method: str, req: Asked, *, also: str | None = None
    ) -> str | None:
        """The result of this caller's earlier call with this request id, if any.

        RequestIdReused when that call asked something else; `also` is a second fingerprint
        accepted as the same request (member erasure keeps only a non-personal one)."""
        if not req.request_id:
            return None
        row = (
            await conn.execute(
                self._lookup,
                {"p_scope": req.scope, "p_method": method, "p_request_id": req.request_id},
            )
        ).first()
        if row is None:
            return None
        if row.fingerprint != req.fingerprint and (also is None or row.fingerprint != also):
            raise RequestIdReused()
        return str(row.result)

    async def remember(
        self,
        conn: AsyncConnection,
        method: str,
        req: Asked,
        result: str,
        now: dt.datetime,
        **extra: Any,
    ) -> None:
        """Record that this request id did `result` (in the change's transaction)."""
        if req.request_id:
            await conn.execute(
                self.table.insert().values(self._row(method, req, result, now, extra))
            )

    async def claim(
        self,
        conn: AsyncConnection,
        method: str,
        req: Asked,
        result: str,
        now: dt.datetime,
        *,
        also: str | None = None,
        **extra: Any,
    ) -> str | None:
        """Record the request id first (one statement on a hot path) and return None; if
        it was there already, return the earlier result instead (RequestIdReused if it
        asked something else; `also` as in `prior`). A concurrent twin waits on the key
        until the first commits, then sees its row."""
        statement = self._claim[conn.dialect.name]
        claimed = await conn.execute(statement, self._row(method, req, result, now, extra))
        if claimed.first() is not None:
            return None
        prior = await self.prior(conn, method, req, also=also)
        assert prior is not None
        return prior

    @staticmethod
    def _row(
        method: str, req: Asked, result: str, now: dt.datetime, extra: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "scope": req.scope,
            "method": method,
            "request_id": req.request_id,
            "fingerprint": req.fingerprint,
            "result": result,
            "create_time": now,
            **extra,
        }
