"""The transactional outbox: a service's events are rows of its own database, written in
the transaction of the change they describe, so there is no change without its events and
no event without its change. The relay (mesh/events/relay.py) publishes them afterwards.

A service declares the table once, beside its own tables, and says which outbox its units
of work write to:

    outbox = Outbox(outbox_table(metadata), service="lead")
    await transaction(db, work, outbox=outbox)   # work calls uow.emit(event, subject=id)

A hot path that writes in raw SQL (a group-committed batch) builds the same rows with
`outbox.row(...)` and inserts them in its own statements: `sqlite_insert_sql` +
`sqlite_values(row)` for sqlite3's `executemany`, or `postgres_insert_sql` with
`postgres_json(rows)` as its one parameter (json_populate_recordset, like the lead's batch);
then it calls `outbox.notify()` after its commit so the relay publishes at once. Such a
writer may also write the rows of aggregates its own transaction creates *born leased* to
this process's relay (`lease=outbox.direct_lease(now)`) and hand them over after the commit
(`outbox.hand_over(rows, seqs)`: `postgres_insert_sql` returns the seqs), so the relay
publishes them from memory without claiming them (mesh/events/handover.py).

Rows: `seq` orders them (the relay publishes in that order); `id` is the event id
(CloudEvents id, `Nats-Msg-Id`); `sent_time` is NULL while the event is pending; the relay
leases the rows it is publishing (`lease_owner`, `lease_until`) and counts `attempts`.
Sent rows are swept after a retention (mesh/retention.py on `sent_time`; pending rows have
no sent time and are never swept).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import Message
from opentelemetry.trace import SpanContext
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.events.envelope import (
    Envelope,
    new_event_id,
    source_of,
    subject_of,
    traceparent_of,
    tracestate_of,
    type_of,
)
from mesh.events.handover import Handover, Lease
from mesh.schema import BigId, UtcDateTime, sqlite_time
from mesh.tracing import current_span_context

# The columns a new row is written with, in this order (seq is the database's).
COLUMNS: tuple[str, ...] = (
    "id",
    "subject",
    "aggregate",
    "type",
    "payload",
    "traceparent",
    "tracestate",
    "create_time",
    "attempts",
    "lease_owner",
    "lease_until",
)
_TIMES = ("create_time", "lease_until")


_TEXTS: dict[dt.datetime, str] = {}


def _sqlite_text(time: dt.datetime) -> str:
    """`sqlite_time`, remembered: a batch's rows share their times (the batch's clock and
    its lease), so the text is made once a batch, not twice a row."""
    text = _TEXTS.get(time)
    if text is None:
        if len(_TEXTS) >= 64:
            _TEXTS.clear()
        text = _TEXTS[time] = sqlite_time(time)
    return text


def outbox_table(metadata: sa.MetaData, name: str = "outbox") -> sa.Table:
    """The outbox table of a service (see the module docstring for the columns)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("aggregate", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("traceparent", sa.String(64), nullable=False, server_default=""),
        sa.Column("tracestate", sa.String(512), nullable=False, server_default=""),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("sent_time", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        # Pending rows in order (sent_time IS NULL, by seq), and the retention's range scan.
        sa.Index(f"ix_{name}_sent_time_seq", "sent_time", "seq"),
        # The pending rows in seq order, only them: what the relay's claim reads (schema_v2;
        # the index above also holds every sent row the retention has not swept yet).
        sa.Index(
            f"ix_{name}_pending",
            "seq",
            postgresql_where=sa.text("sent_time IS NULL"),
            sqlite_where=sa.text("sent_time IS NULL"),
        ),
        # The aggregates another relay is publishing right now: only leased pending rows,
        # a handful, so inserts never touch this index.
        sa.Index(
            f"ix_{name}_leased",
            "aggregate",
            "seq",
            postgresql_where=sa.text("sent_time IS NULL AND lease_owner IS NOT NULL"),
            sqlite_where=sa.text("sent_time IS NULL AND lease_owner IS NOT NULL"),
        ),
    )


def utc_now() -> dt.datetime:
    """The wall clock, in UTC."""
    return dt.datetime.now(dt.UTC)


class Outbox:
    """One service's outbox: builds its rows and wakes its relay."""

    def __init__(self, table: sa.Table, *, service: str) -> None:
        missing = set(COLUMNS) - set(table.c.keys())
        if missing:
            raise ValueError(f"{table.name} is not an outbox table (no {sorted(missing)})")
        self.table = table
        self.service = service
        self.source = source_of(service)
        self.insert = table.insert()
        cols = ", ".join(COLUMNS)
        self.sqlite_insert_sql = (
            f"INSERT INTO {table.name} ({cols}) VALUES ({', '.join('?' for _ in COLUMNS)})"
        )
        # WITH ORDINALITY: the rows get their seq in the order of the array.
        self.postgres_insert_sql = (
            f"INSERT INTO {table.name} ({cols}) SELECT {cols} "
            f"FROM json_populate_recordset(NULL::{table.name}, CAST(%s AS json)) "
            "WITH ORDINALITY AS r ORDER BY r.ordinality RETURNING seq"
        )
        self._wakeups: set[asyncio.Event] = set()
        self.handover: Handover | None = None
        # An ordinary row was committed in this process since the relay's last claim.
        self.claim_wanted = True
        self.handed_over = 0  # rows its relay took from memory, for tests and benchmarks
        self._names: dict[type[Message], tuple[str, str]] = {}  # (subject, type) by class

    def row(
        self,
        event: Message,
        *,
        subject: str,
        now: dt.datetime | None = None,
        event_id: str | None = None,
        context: SpanContext | None = None,
        lease: Lease | None = None,
    ) -> dict[str, Any]:
        """The outbox row of `event` about aggregate `subject`, carrying the trace context
        of the code that emits it (the call being served), or `context`: the call's, taken
        in its own task, when a batch writer builds the row for it. `lease`: born leased
        to the relay (`direct_lease`; only for an aggregate the transaction creates)."""
        if not subject:
            raise ValueError("an event needs the id of the aggregate it is about (subject)")
        ctx = current_span_context() if context is None else context
        names = self._names.get(type(event))
        if names is None:
            names = self._names[type(event)] = (subject_of(self.service, event), type_of(event))
        return {
            "id": event_id or new_event_id(),
            "subject": names[0],
            "aggregate": subject,
            "type": names[1],
            "payload": event.SerializeToString(),
            "traceparent": traceparent_of(ctx),
            "tracestate": tracestate_of(ctx),
            "create_time": now or utc_now(),
            "attempts": 0 if lease is None else 1,  # as a claim leaves it
            "lease_owner": None if lease is None else lease.owner,
            "lease_until": None if lease is None else lease.until,
        }

    def envelope(self, row: Mapping[Any, Any]) -> Envelope:
        """The CloudEvents envelope of a row."""
        return Envelope(
            id=row["id"],
            source=self.source,
            type=row["type"],
            subject=row["aggregate"],
            time=row["create_time"],
            traceparent=row["traceparent"] or "",
            tracestate=row["tracestate"] or "",
        )

    @staticmethod
    def sqlite_values(row: Mapping[str, Any]) -> tuple[Any, ...]:
        """A row's values in `COLUMNS` order, as the column types store them on SQLite."""
        until = row["lease_until"]
        return (  # COLUMNS, spelt out: this runs for every event of a busy writer
            row["id"],
            row["subject"],
            row["aggregate"],
            row["type"],
            row["payload"],
            row["traceparent"],
            row["tracestate"],
            _sqlite_text(row["create_time"]),
            row["attempts"],
            row["lease_owner"],
            None if until is None else _sqlite_text(until),
        )

    @staticmethod
    def postgres_json(rows: Iterable[Mapping[str, Any]]) -> str:
        """The one parameter of `postgres_insert_sql`: the rows as a JSON array."""
        out = []
        for row in rows:
            values = dict(row)
            values["payload"] = "\\x" + row["payload"].hex()
            for c in _TIMES:
                if row[c] is not None:
                    values[c] = row[c].astimezone(dt.UTC).isoformat()
            out.append({c: values[c] for c in COLUMNS})
        return json.dumps(out)

    async def write(self, conn: AsyncConnection, rows: Sequence[Any]) -> None:
        """Insert rows on a connection, in the caller's transaction."""
        if rows:
            await conn.execute(self.insert, list(rows))

    # ---------------------------------------------------------------- waking the relay

    def notify(self) -> None:
        """Events were committed: wake this process's relay (others poll)."""
        self.claim_wanted = True
        for event in self._wakeups:
            event.set()

    def attach(self, handover: Handover | None) -> None:
        """The relay of this process takes born-leased rows through `handover` (None: no
        longer)."""
        self.handover = handover

    def direct_lease(self, now: dt.datetime) -> Lease | None:
        """The lease to write rows of new aggregates with, born leased to this process's
        relay; None when no relay takes rows from memory (write ordinary rows)."""
        return None if self.handover is None else self.handover.lease(now)

    def hand_over(self, rows: Sequence[Mapping[str, Any]], seqs: Sequence[int]) -> None:
        """After the commit of `rows` (their seqs in the same order): the born-leased
        ones go to the relay; ordinary ones wake it to claim them."""
        handover = self.handover
        taken = handover.give(rows, seqs) if handover is not None else 0
        self.handed_over += taken
        if taken < len(rows):
            self.notify()

    def wakeup(self) -> asyncio.Event:
        """An event `notify` sets (for the relay)."""
        event = asyncio.Event()
        self._wakeups.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        """Stop waking `event`."""
        self._wakeups.discard(event)
