"""The group-committed intake write: many SubmitLeads (and import rows), one transaction.

`IntakeWriter.write` is the batch function of the lead writer (mesh/groupcommit.py). One
batch, on the writer's held connection:
1. lock and look up, in ONE call (store.sqlite_batch_lookup: one hand-over to the SQLite
   connection's thread; store.postgres_batch_lookup: one pipelined round trip): SQLite
   `BEGIN IMMEDIATE`, PostgreSQL advisory locks on the batch's contact, channel-lead and
   request-id keys (so two processes never decide on the same person at once); then,
   with one indexed query each, request ids seen (each caller's own: request ids are
   scoped by caller, and a reused one with another body is refused), channel lead ids
   seen (a dealer's walk-in ids in that dealer's own namespace), the current lead of each
   (contact, brand), those leads with their touchpoints (row-locked on PostgreSQL), and
   today's routed counts of the dealers (row-locked);
2. decide each submission in arrival order with `domain.intake.intake`, against the
   batch's in-memory state, so a duplicate or a merge inside the same batch sees the lead
   the previous item created;
3. write, again in ONE call: new leads, changed leads, touchpoints, keys, request ids,
   dealer counts, one statement per table, and commit; answer every caller.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.trace import SpanContext
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.errors import DomainError
from mesh.events.handover import Lease
from mesh.groupcommit import HeldConnection
from mesh.idempotency import RequestIdReused
from services.lead import events, store
from services.lead.domain.config import LeadConfig
from services.lead.domain.intake import IntakeResult, intake
from services.lead.domain.model import CleanLead, Dealer, Lead, SubmitOutcome
from services.lead.domain.visibility import View
from services.lead.store.tables import OUTBOX

SUBMIT = "SubmitLead"


def new_lead_id(now: dt.datetime | None = None) -> str:
    """ "L" + 11 hex digits of epoch milliseconds + 16 random hex digits: ids sort like
    their creation times (pages and logs read naturally) and are unique across processes
    without coordination (64 random bits per millisecond)."""
    ms = int((now or dt.datetime.now(dt.UTC)).timestamp() * 1000)
    return f"L{ms:011x}{os.urandom(8).hex()}"


@dataclass(frozen=True, slots=True)
class Submission:
    """One cleansed submission waiting for the writer: what it asks (`fingerprint`) and
    whose request id it carries (`scope`)."""

    clean: CleanLead
    actor: str
    payload_ref: str
    walk_in_dealer_id: str | None = None
    scope: str = ""
    fingerprint: str = ""
    # The person as events name it (mesh/contact.py), and the trace of the call, taken in
    # the caller's task: the batch's events carry it, not the writer's.
    contact_digest: str | None = None
    context: SpanContext | None = None

    @property
    def request_key(self) -> store.RequestKey:
        """The request id in its caller's namespace."""
        return (self.scope, self.clean.request_id)

    @property
    def channel_key(self) -> store.ChannelKey:
        """The channel lead id in its namespace (a dealer's walk-ins are that dealer's)."""
        clean = self.clean
        return (clean.channel.value, self.walk_in_dealer_id or "", clean.channel_lead_id)


@dataclass(frozen=True, slots=True)
class Submitted:
    """What became of a submission, and how much of the lead its caller may be shown
    (`view`, decided once the caller is known; see domain/visibility.py)."""

    outcome: SubmitOutcome
    lead: Lead
    view: View = View.FULL


@dataclass(slots=True)
class _Batch:
    """A batch's in-memory state while its submissions are decided one by one."""

    found: store.BatchFound
    dealers: list[Dealer]
    key_now: dict[tuple[str, str], str]
    by_brand: dict[str, list[Dealer]] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)
    created: dict[str, Lead] = field(default_factory=dict)
    changed: dict[str, Lead] = field(default_factory=dict)
    touchpoints: list[tuple[str, store.Touchpoint]] = field(default_factory=list)
    remembered: list[store.Remembered] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # The lease rows about leads this batch creates are born with (handover.py), or None.
    lease: Lease | None = None

    def selling(self, brand_key: str) -> list[Dealer]:
        """The dealers selling a brand (what routing needs), once per brand per batch:
        routing compares places for every dealer it is given, so fewer is faster."""
        found = self.by_brand.get(brand_key)
        if found is None:
            found = self.by_brand[brand_key] = [d for d in self.dealers if d.sells(brand_key)]
        return found

    def apply(self, sub: Submission, res: IntakeResult) -> Lead:
        """Take one decision into the batch's state and what it will write (the lead as
        written: a lead taken in before digests existed gets its own now)."""
        lead, clean = res.lead, sub.clean
        state = self.found.leads
        if res.outcome is not SubmitOutcome.DUPLICATE:
            if lead.contact_digest is None and sub.contact_digest is not None:
                lead = replace(lead, contact_digest=sub.contact_digest)
            self._emit(sub, state.get(lead.id), lead)
            state[lead.id] = lead
            if res.outcome is SubmitOutcome.CREATED or lead.id in self.created:
                self.created[lead.id] = lead
                self.key_now[(clean.contact_key, clean.brand_key)] = lead.id
            else:
                self.changed[lead.id] = lead
            self.touchpoints.append((lead.id, lead.touchpoints[-1]))
            if clean.channel_lead_id:
                self.found.by_channel[sub.channel_key] = lead.id
            if res.routed is not None and res.routed.dealer_id is not None:
                d = res.routed.dealer_id
                self.found.loads[d] = self.found.loads.get(d, 0) + 1
                self.added[d] = self.added.get(d, 0) + 1
        if clean.request_id and sub.request_key not in self.found.by_request:
            done = store.Remembered(sub.scope, clean.request_id, sub.fingerprint, lead.id)
            self.found.by_request[sub.request_key] = store.Prior(lead.id, done.fingerprint)
            self.remembered.append(done)
        return lead

    def _emit(self, sub: Submission, before: Lead | None, after: Lead) -> None:
        """The events of one decision, as outbox rows of the batch's transaction."""
        # A new lead's LeadCreated names the dealer it was routed to: no LeadAssigned beside it.
        found: list[Any] = (
            [events.created(after)] if before is None else events.changes(before, after)
        )
        # A lead this transaction creates has no older event anywhere: its events may go to
        # the relay from memory.
        lease = self.lease if before is None or after.id in self.created else None
        self.events += [
            OUTBOX.row(e, subject=after.id, now=after.update_time, context=sub.context, lease=lease)
            for e in found
            if e is not None
        ]

    def writes(self, now: dt.datetime) -> store.BatchWrites:
        """Everything the batch writes, in one transaction."""
        key_db = self.found.key_db
        return store.BatchWrites(
            created=list(self.created.values()),
            changed=list(self.changed.values()),
            touchpoints=self.touchpoints,
            key_inserts=[(c, b, i) for (c, b), i in self.key_now.items() if (c, b) not in key_db],
            key_updates=[
                (c, b, i)
                for (c, b), i in self.key_now.items()
                if (c, b) in key_db and key_db[(c, b)] != i
            ],
            requests=self.remembered,
            events=self.events,
            method=SUBMIT,
            now=now,
            day=now.date(),
            added=self.added,
        )


class IntakeWriter:
    """The batch function of the lead writer, on its held connection."""

    def __init__(
        self,
        db: Database,
        config: LeadConfig,
        clock: Callable[[], dt.datetime],
        dealers: Callable[[], Awaitable[list[Dealer]]],
        idle_seconds: float,
    ) -> None:
        self.config = config
        self.clock = clock
        self._dealers = dealers
        self._is_postgres = not db.is_sqlite
        self.connection = HeldConnection(db, idle_seconds)
        # (dealer, day) rows of dealer_load this process made sure exist.
        self._load_rows: set[tuple[str, dt.date]] = set()

    async def write(self, batch: Sequence[Submission]) -> list[Submitted | BaseException]:
        """One transaction for the whole batch (see the module docstring)."""
        dealers = await self._dealers()
        conn = await self.connection.get()
        try:
            results = await self._write_on(conn, batch, dealers)
        except BaseException:
            await self.connection.drop()
            raise
        self.connection.done()
        return results

    async def _write_on(
        self, conn: AsyncConnection, batch: Sequence[Submission], dealers: list[Dealer]
    ) -> list[Submitted | BaseException]:
        now = self.clock()
        found, load_ids = await self._look_up(conn, batch, dealers, now.date())
        state = _Batch(found, dealers, dict(found.key_db), lease=OUTBOX.direct_lease(now))
        results: list[Submitted | BaseException] = [self._decide(state, sub, now) for sub in batch]
        write = store.postgres_batch_write if self._is_postgres else store.sqlite_batch_write
        seqs = await write(conn, state.writes(now))
        if state.events:
            OUTBOX.hand_over(state.events, seqs)  # committed: to the relay
        self._load_rows.update((d, now.date()) for d in load_ids)
        return results

    async def _look_up(
        self,
        conn: AsyncConnection,
        batch: Sequence[Submission],
        dealers: list[Dealer],
        today: dt.date,
    ) -> tuple[store.BatchFound, list[str]]:
        rkeys = [s.request_key for s in batch if s.clean.request_id]
        ckeys = [s.channel_key for s in batch if s.clean.channel_lead_id]
        keys = [(s.clean.contact_key, s.clean.brand_key) for s in batch]
        lock_keys = (
            [f"k|{c}|{b}" for c, b in keys]
            + [f"c|{c}|{d}|{i}" for c, d, i in ckeys]
            + [f"r|{s}|{r}" for s, r in rkeys]
        )
        load_ids = _load_ids(dealers, batch)
        lookup = store.postgres_batch_lookup if self._is_postgres else store.sqlite_batch_lookup
        found = await lookup(
            conn,
            lock_keys=lock_keys,
            method=SUBMIT,
            request_keys=rkeys,
            channel_keys=ckeys,
            keys=keys,
            day=today,
            load_ids=load_ids,
            missing_load_rows=[d for d in load_ids if (d, today) not in self._load_rows],
        )
        return found, load_ids

    def _decide(self, batch: _Batch, sub: Submission, now: dt.datetime) -> Submitted | DomainError:
        clean = sub.clean
        found = batch.found
        prior = found.by_request.get(sub.request_key) if clean.request_id else None
        if prior is not None and prior.fingerprint != sub.fingerprint:
            return RequestIdReused()
        same_channel = (
            found.leads.get(found.by_channel.get(sub.channel_key, ""))
            if clean.channel_lead_id
            else None
        )
        current = found.leads.get(batch.key_now.get((clean.contact_key, clean.brand_key), ""))
        try:
            res = intake(
                clean,
                lead_id=new_lead_id(now),
                now=now,
                actor=sub.actor,
                payload_ref=sub.payload_ref,
                same_request=found.leads.get(prior.result) if prior is not None else None,
                same_channel_lead=same_channel,
                candidates=[current] if current is not None else [],
                dealers=batch.selling(clean.brand_key),
                assigned_today=found.loads,
                config=self.config,
                walk_in_dealer_id=sub.walk_in_dealer_id,
            )
        except DomainError as e:
            return e
        return Submitted(res.outcome, batch.apply(sub, res))


def _load_ids(dealers: list[Dealer], batch: Sequence[Submission]) -> list[str]:
    """The dealers whose counts of today a batch may read or raise: every routable one,
    and the walk-ins' own."""
    routable = [d.id for d in dealers if d.active and d.daily_capacity > 0]
    return [*routable, *(s.walk_in_dealer_id for s in batch if s.walk_in_dealer_id)]
