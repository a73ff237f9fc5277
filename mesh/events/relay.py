"""The relay: publishes a service's pending outbox rows to its JetStream stream, in order.

One relay task runs per process. A cycle:
1. claims up to `batch` pending rows, oldest first, in one short transaction: it leases
   them (`lease_owner` = this relay, `lease_until` = now + `lease`) so no other relay
   publishes them meanwhile. On PostgreSQL the claim takes a transaction-scoped advisory lock
   on the outbox (claims are serialised, a few ms each: publishing is not) and reads with
   `FOR UPDATE SKIP LOCKED`; on SQLite it is a `BEGIN IMMEDIATE` transaction (SQLite is one
   process by design). A row is skipped while an earlier pending row of the same aggregate
   is leased by another relay, so the events of one aggregate are never published by two
   relays at once, and each relay publishes in `seq` order: per-aggregate order holds with
   several replicas. A lease that runs out (its relay died) frees the rows for the others.
2. publishes them with JetStream async publishes (`Nats-Msg-Id` = the event id: a row
   published twice, after a crash between publish and mark, is dropped by JetStream as a
   duplicate within its window) and awaits every ack;
3. marks the acknowledged rows sent, and gives back the lease of the others. The running
   relay marks them in its next claim's transaction (one a cycle; at once when a commit
   woke it, else after `MARK_LINGER_SECONDS`): a relay dying in between only publishes
   them again, dropped by JetStream's duplicate window and the inboxes. For the same
   reason PostgreSQL commits the relay's transactions with `synchronous_commit = off`
   (sqlite_claims.py and pg_claims.py: one hand-over, or two statements, a claim).

While NATS is away the relay does not claim at all: it waits, with a capped backoff, and
the outbox grows; when NATS is back it drains it, `batch` rows a cycle. A publish that fails
while others of the batch succeed is retried in a later cycle, possibly after events of its
aggregate that came behind it (JetStream keeps no order across a failed publish); the
consumer's inbox keeps the effect exactly once either way.

The relay is woken by `Outbox.notify()` (the unit of work calls it after a commit that
emitted), and polls every `poll` seconds for rows committed by other processes. Rows a
group-committing writer of this process hands over (mesh/events/handover.py: born leased
to the relay, about aggregates the writer's transaction created) are published from memory
without a claim; a claim then runs only when one is due (a notify, the poll, acknowledged
rows waiting `MARK_LINGER_SECONDS` to be marked). It makes
sure its stream exists (subjects `marque.<service>.>`, file storage, the duplicate window)
before the first publish, and sets `marque_outbox_pending` and
`marque_outbox_oldest_pending_seconds` about once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from nats.js import api
from nats.js.errors import BadRequestError
from opentelemetry import trace

from mesh.db import Database
from mesh.events import metrics
from mesh.events.claims import OutboxStatements
from mesh.events.envelope import (
    stream_name,
    stream_subjects,
)
from mesh.events.gauges import OutboxGauges
from mesh.events.handover import Handover
from mesh.events.link import Link
from mesh.events.outbox import Outbox, utc_now
from mesh.events.outgoing import Outgoing
from mesh.events.pg_claims import PgClaims
from mesh.events.publisher import Publisher
from mesh.events.settings import EventSettings
from mesh.events.sqlite_claims import SqliteClaims
from mesh.unit_of_work import UnitOfWork, lock_hash, transaction

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_POLL_SECONDS = 0.5
DEFAULT_ACK_TIMEOUT_SECONDS = 10.0
# A row JetStream refuses this many claims in a row (an error ack, not a timeout) is set
# aside rather than failing every cycle after it.
MAX_REFUSALS = 5
MAX_BACKOFF_SECONDS = 5.0
# How long acknowledged rows wait for the next claim to mark them before a transaction of
# their own does (a commit that wakes the relay sooner carries them at once).
MARK_LINGER_SECONDS = 0.25
_STREAM_EXISTS = 10058  # "stream name already in use with a different configuration"


def relay_owner() -> str:
    """A lease owner name unique to this relay (host, pid, a random tag)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class PublishFailed(RuntimeError):
    """Some events of a batch were not acknowledged by JetStream."""


class Relay:
    """Publishes one outbox's pending events (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        link: Link,
        *,
        settings: EventSettings | None = None,
        batch: int = DEFAULT_BATCH,
        lease: float = DEFAULT_LEASE_SECONDS,
        poll: float = DEFAULT_POLL_SECONDS,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT_SECONDS,
        tracer: trace.Tracer | None = None,
        owner: str | None = None,
    ) -> None:
        if batch < 1 or lease <= 0 or poll <= 0:
            raise ValueError("batch, lease and poll must be positive")
        self._db = db
        self.outbox = outbox
        self._link = link
        self._settings = settings or EventSettings()
        self._batch = batch
        self._lease = dt.timedelta(seconds=lease)
        self._poll = poll
        self._ack_timeout = ack_timeout
        self._tracer = tracer or trace.get_tracer("mesh.events")
        self.owner = owner or relay_owner()
        self.stream = stream_name(outbox.service)
        self._stream_ready_generation = -1
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._outgoing = Outgoing(self._tracer, outbox.source, self.stream)
        self._refused_now: list[int] = []  # seqs JetStream refused in the last publish
        self.published = 0  # events acknowledged by JetStream, for tests and benchmarks
        self._sql = OutboxStatements(outbox.table)
        self.gauges = OutboxGauges(db, outbox, self._sql)
        # SQLite: each statement with its transaction in one hand-over (sqlite_claims.py).
        self._sqlite = SqliteClaims(outbox.table, self._sql) if db.is_sqlite else None
        # PostgreSQL: two statements on a held connection (pg_claims.py).
        key = lock_hash(f"outbox-claim:{outbox.table.name}")
        self._pg = None if db.is_sqlite else PgClaims(db, outbox.table, self._sql, key)
        self._publisher = Publisher(link)
        # Acknowledged rows the next claim marks sent (seqs, and when they were acked).
        self._unmarked: list[int] = []
        self._acked_at = utc_now()
        self._acked_mono = 0.0
        # Rows this process's writers commit born leased to us (handover.py).
        self.handover = Handover(self.owner, self._lease, self._wake)
        self._claimed_at = 0.0  # monotonic time of the last claim

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Relay in the background on the running loop until `stop`."""
        if self._task is None:
            self._wakeup = self.outbox.wakeup()
            self.outbox.attach(self.handover)
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"relay-{self.outbox.service}"
            )

    async def stop(self) -> None:
        """Stop relaying (a batch in flight is given back by its lease running out, or
        published and marked by the next relay: JetStream drops the duplicates)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.handover.open = False
        if self.outbox.handover is self.handover:
            self.outbox.attach(None)
        with contextlib.suppress(Exception):  # what was handed over: out, else given back
            while self._link.connected and len(self.handover):
                await self._publish_handed()
        with contextlib.suppress(Exception):
            await self._give_back_handed()
        if self._wakeup is not None:
            self.outbox.forget(self._wakeup)
            self._wakeup = None
        with contextlib.suppress(Exception):  # else their lease runs out: sent again
            await self.flush_marks()
        if self._pg is not None:
            await self._pg.close()
        await self._publisher.close()

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                if not self._link.connected:
                    self.handover.open = False
                    await self._give_back_handed()
                    await self.flush_marks()
                    await self._link.wait_connected(min(delay, self._poll))
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                    await self._gauges()
                    continue
                assert self._wakeup is not None
                self._wakeup.clear()  # before the claim: a commit during the cycle wakes it
                sent = 0
                if self._claim_due():
                    self.outbox.claim_wanted = False
                    sent = await self.cycle(carry_marks=True)
                    self._claimed_at = time.monotonic()
                self.handover.open = True
                await self._publish_handed()
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.handover.open = False  # writers write ordinary rows meanwhile
                self.outbox.claim_wanted = True
                with contextlib.suppress(Exception):
                    await self._give_back_handed()
                log.warning(
                    "relay of %s: %s; retrying in %.1f s",
                    self.outbox.service,
                    type(e).__name__,
                    delay,
                    exc_info=not isinstance(e, PublishFailed | TimeoutError),
                )
                with contextlib.suppress(Exception):
                    await self._gauges()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            await self._gauges()
            if sent < self._batch and not len(self.handover):  # drained: wait
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._until_claim_due())

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _claim_due(self) -> bool:
        """A claim is due when this process committed ordinary rows, the poll came round
        (rows of other processes), or acknowledged rows have waited long enough to be
        marked; rows handed over need none."""
        return self.outbox.claim_wanted or self._until_claim_due() <= 0.0

    def _until_claim_due(self) -> float:
        due = self._claimed_at + self._poll
        if self._unmarked:
            due = min(due, self._acked_mono + MARK_LINGER_SECONDS)
        return max(0.0, due - time.monotonic())

    async def _publish_handed(self) -> None:
        """Publish (up to a batch of) the rows handed over, from memory: no claim."""
        rows = self.handover.take(self._batch)
        if not rows:
            return
        try:
            await self.ensure_stream()
            acked, failed = await self._publish(rows)
        except BaseException:
            self.handover.put_back(rows)  # given back, or published by stop()
            raise
        if acked:
            self._unmarked.extend(acked)
            self._acked_at = utc_now()
            self._acked_mono = time.monotonic()
        if failed:
            await self._give_back(failed, self.handover.owner)
            raise PublishFailed(f"{len(failed)} of {len(rows)} events were not acknowledged")

    async def _give_back_handed(self) -> None:
        """Clear the lease of every row handed over and not yet published: a claim
        publishes them."""
        rows = self.handover.take(len(self.handover))
        if rows:
            await self._give_back([r.seq for r in rows], self.handover.owner)
            self.outbox.claim_wanted = True

    # ------------------------------------------------------------------------ one cycle

    async def cycle(self, *, carry_marks: bool = False) -> int:
        """Claim (marking what the last cycle published), publish and mark one batch;
        returns how many rows it claimed (PublishFailed if some were not acknowledged:
        their lease is given back). `carry_marks`: leave this batch's marks to the next
        claim (the running relay; see the module docstring)."""
        await self.ensure_stream()
        rows = await self._claim(hold=carry_marks)
        if not rows:
            return 0
        acked, failed = await self._publish(rows)
        now = utc_now()
        failed = await self._set_aside(rows, failed)
        if acked:
            self._unmarked.extend(acked)
            self._acked_at = now
            self._acked_mono = time.monotonic()
            if not carry_marks:
                await self.flush_marks()
        if failed:  # given back: published again by a later cycle
            await self._give_back(failed, self.owner)
            raise PublishFailed(f"{len(failed)} of {len(rows)} events were not acknowledged")
        return len(rows)

    async def _give_back(self, seqs: list[int], owner: str) -> None:
        """Clear `owner`'s lease of rows that were not published."""
        if self._sqlite is not None:
            await self._sqlite.release(self._db, seqs, owner)
        else:
            stmt, now = self._sql.release, utc_now()
            await transaction(self._db, lambda uow: self._set(uow, stmt, seqs, now, owner))

    async def _set_aside(self, rows: Sequence[Any], failed: list[int]) -> list[int]:
        """Of the failed rows, those JetStream refused at their MAX_REFUSALS-th claim are
        set aside for good (kept pending, counted, logged: an operator looks), so they
        no longer fail every cycle; the others are returned, to be given back."""
        refused = set(self._refused_now)
        final = [r for r in rows if r.seq in refused and r.attempts >= MAX_REFUSALS]
        if not final:
            return failed
        seqs = [r.seq for r in final]
        if self._sqlite is not None:
            await self._sqlite.refuse(self._db, seqs, self.owner)
        else:
            stmt = self._sql.refuse
            await transaction(self._db, lambda uow: self._set(uow, stmt, seqs, utc_now()))
        for r in final:
            metrics.events_refused_total.labels(r.type).inc()
            log.error("relay of %s: event %s (%s) refused by JetStream %d times; set aside",
                      self.outbox.service, r.id, r.type, r.attempts)  # fmt: skip
        return [s for s in failed if s not in set(seqs)]

    async def ensure_stream(self) -> None:
        """Create (or update) the producing service's stream, once per connection."""
        if self._stream_ready_generation == self._link.generation:
            return
        s = self._settings
        config = api.StreamConfig(
            name=self.stream,
            subjects=[stream_subjects(self.outbox.service)],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            max_age=s.stream_max_age_seconds,
            duplicate_window=s.duplicate_window_seconds,
            num_replicas=s.stream_replicas,
        )
        js = self._link.js
        try:
            await js.add_stream(config)
        except BadRequestError as e:
            if e.err_code != _STREAM_EXISTS:
                raise
            await js.update_stream(config)
        self._stream_ready_generation = self._link.generation

    async def flush_marks(self) -> None:
        """Mark the acknowledged rows no claim has marked yet (a transaction of their own)."""
        if self._unmarked:
            await self._claim(limit=0)

    async def _claim(self, limit: int | None = None, *, hold: bool = False) -> list[Any]:
        """Mark the rows published since the last claim, then lease up to `limit` (the
        batch) pending rows, in one transaction (`hold`: PostgreSQL, on the connection the
        running relay keeps)."""
        n = self._batch if limit is None else limit
        marks, acked_at = self._unmarked, self._acked_at
        if self._sqlite is not None:
            now = utc_now()
            claimed = list(
                await self._sqlite.claim(
                    self._db, self.owner, now, now + self._lease, n, marks=marks, acked_at=acked_at
                )
            )
            del marks[: len(marks)]  # committed (a new list may have grown meanwhile)
            return claimed

        assert self._pg is not None
        now = utc_now()
        rows = await self._pg.claim(
            self.owner, now, now + self._lease, n, marks=marks, acked_at=acked_at, hold=hold
        )
        del marks[: len(marks)]
        return rows

    async def _set(
        self,
        uow: UnitOfWork,
        statement: Any,
        seqs: Sequence[int],
        now: dt.datetime,
        owner: str | None = None,
    ) -> None:
        me = owner or self.owner
        await uow.conn.execute(statement, {"seqs": list(seqs), "now": now, "me": me})

    async def _publish(self, rows: Sequence[Any]) -> tuple[list[int], list[int]]:
        """Publish every row, then wait for the acks; (acked seqs, failed seqs)."""
        messages, started = self._outgoing.messages(rows)
        oks = await self._publisher.publish(messages, self._ack_timeout)
        self._refused_now = [
            row.seq for row, no in zip(rows, self._publisher.refused, strict=False) if no
        ]
        acked, failed = self._outgoing.settle(rows, oks, started)
        self.published += len(acked)
        return acked, failed

    async def _gauges(self) -> None:
        await self.gauges.update()

    async def pending(self) -> tuple[int, dt.datetime | None]:
        """How many events wait, and when the oldest of them was committed."""
        return await self.gauges.pending()
