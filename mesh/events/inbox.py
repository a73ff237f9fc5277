"""The inbox: the events a service's consumers have taken, so an effect happens once.

A consumer runs a handler in a unit of work that also records the event's id here, under
the consumer's name; the delivery is acknowledged only after that commit. A redelivered or
duplicated event finds its id and changes nothing. An event whose handler kept failing is a
dead letter: a row with `outcome = 'dead_letter'`, its payload, headers and last error, no
`handled_time`, kept (the retention sweep goes by `handled_time`) until
`python -m mesh.events.replay` handles it (`outcome = 'replayed'`).

    inbox = Inbox(inbox_table(metadata))
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.events.envelope import Envelope
from mesh.schema import UtcDateTime

HANDLED = "handled"
DEAD_LETTER = "dead_letter"
REPLAYED = "replayed"
ERROR_CHARS = 500


def inbox_table(metadata: sa.MetaData, name: str = "inbox") -> sa.Table:
    """The inbox table of a service (see the module docstring)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("consumer", sa.String(120), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("aggregate", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("received_time", UtcDateTime(), nullable=False),
        # When the effect committed; NULL while a dead letter (never swept).
        sa.Column("handled_time", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("error", sa.String(ERROR_CHARS), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Index(f"ix_{name}_handled_time", "handled_time"),  # the retention sweep
        sa.Index(
            f"ix_{name}_dead_letters",
            "consumer",
            "received_time",
            postgresql_where=sa.text("outcome = 'dead_letter'"),
            sqlite_where=sa.text("outcome = 'dead_letter'"),
        ),
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A kept event whose handler kept failing."""

    consumer: str
    event_id: str
    type: str
    aggregate: str
    received_time: dt.datetime
    attempts: int
    error: str
    payload: bytes
    headers: dict[str, str]


def error_text(error: BaseException) -> str:
    """What a dead letter keeps of its last error: the type and message, cut short."""
    text = f"{type(error).__name__}: {error}"
    return text[:ERROR_CHARS]


class Inbox:
    """Look up and record event ids in one service's inbox, on the caller's connection."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        c = table.c
        ids: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
        self._seen = sa.select(c.event_id).where(
            c.consumer == sa.bindparam("consumer"), c.event_id.in_(ids)
        )
        # PostgreSQL: one primary-key search per id. `event_id IN (...)` was planned as the
        # consumer's whole key range with the list as a filter (a bitmap or a sequential
        # scan: every row of the consumer compared with every id), so a batch's lookup grew
        # with the inbox (73 ms for 256 ids at ~60k rows, unanalysed or analysed alike).
        quoted = f'"{table.name}"' if table.schema is None else f'"{table.schema}"."{table.name}"'
        self._seen_pg = sa.text(
            "SELECT k.id FROM unnest(CAST(:ids AS varchar[])) AS k(id) CROSS JOIN LATERAL "
            f"(SELECT 1 FROM {quoted} i WHERE i.consumer = :consumer AND i.event_id = k.id "
            "LIMIT 1) AS hit"  # LIMIT: a search per id, never a join over the key range
        )
        self._insert = table.insert()
        dead = c.outcome == DEAD_LETTER
        self._dead = sa.select(table).where(dead).order_by(c.received_time, c.event_id)
        key = (c.consumer == sa.bindparam("p_consumer"), c.event_id == sa.bindparam("p_id"))
        self._replayed = (
            table.update()
            .where(*key, dead)
            .values(
                outcome=REPLAYED,
                handled_time=sa.bindparam("p_now"),
                attempts=c.attempts + 1,
                payload=None,
                headers=None,
            )
        )
        self._failed_again = (
            table.update()
            .where(*key, dead)
            .values(attempts=c.attempts + 1, error=sa.bindparam("p_error"))
        )

    def seen_query(self, dialect: str) -> sa.Executable:
        """The batch lookup `seen` runs on this dialect (tests check its plan)."""
        return self._seen_pg if dialect == "postgresql" else self._seen

    async def seen(self, conn: AsyncConnection, consumer: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` this consumer has taken already (handled or dead-lettered)."""
        if not ids:
            return set()
        query = self.seen_query(conn.dialect.name)
        rows = await conn.execute(query, {"consumer": consumer, "ids": list(ids)})
        return {r[0] for r in rows}

    async def record(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows made by `handled_row` / `dead_letter_row`."""
        if rows:
            await conn.execute(self._insert, list(rows))

    @staticmethod
    def handled_row(
        consumer: str, envelope: Envelope, *, now: dt.datetime, attempts: int
    ) -> dict[str, Any]:
        """The row of an event whose effect commits with it."""
        return {
            "consumer": consumer,
            "event_id": envelope.id,
            "type": envelope.type,
            "aggregate": envelope.subject,
            "outcome": HANDLED,
            "received_time": now,
            "handled_time": now,
            "attempts": attempts,
            "error": None,
            "payload": None,
            "headers": None,
        }

    @staticmethod
    def dead_letter_row(
        consumer: str,
        envelope: Envelope,
        *,
        now: dt.datetime,
        attempts: int,
        error: str,
        payload: bytes,
        headers: Mapping[str, str],
    ) -> dict[str, Any]:
        """The row of an event kept as a dead letter."""
        return {
            "consumer": consumer,
            "event_id": envelope.id[:36],
            "type": envelope.type[:200],
            "aggregate": envelope.subject[:200],
            "outcome": DEAD_LETTER,
            "received_time": now,
            "handled_time": None,
            "attempts": attempts,
            "error": error[:ERROR_CHARS],
            "payload": payload,
            "headers": json.dumps(dict(headers), sort_keys=True),
        }

    async def dead_letters(
        self,
        conn: AsyncConnection,
        *,
        consumer: str | None = None,
        ids: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """The kept dead letters, oldest first (of one consumer, or these ids)."""
        query = self._dead
        if consumer:
            query = query.where(self.table.c.consumer == consumer)
        if ids:
            query = query.where(self.table.c.event_id.in_(list(ids)))
        if limit:
            query = query.limit(limit)
        return [
            DeadLetter(
                consumer=r.consumer,
                event_id=r.event_id,
                type=r.type,
                aggregate=r.aggregate,
                received_time=r.received_time,
                attempts=r.attempts,
                error=r.error or "",
                payload=r.payload or b"",
                headers=json.loads(r.headers) if r.headers else {},
            )
            for r in await conn.execute(query)
        ]

    async def replayed(
        self, conn: AsyncConnection, consumer: str, event_id: str, now: dt.datetime
    ) -> bool:
        """Mark a dead letter handled (in the transaction of its effect)."""
        done = await conn.execute(
            self._replayed, {"p_consumer": consumer, "p_id": event_id, "p_now": now}
        )
        return bool(done.rowcount)

    async def failed_again(
        self, conn: AsyncConnection, consumer: str, event_id: str, error: str
    ) -> None:
        """Count another failed attempt of a dead letter, keeping its last error."""
        await conn.execute(
            self._failed_again,
            {"p_consumer": consumer, "p_id": event_id, "p_error": error[:ERROR_CHARS]},
        )
