"""The lead service's application layer: domain rules + store, in transactions.

The servicer hands decoded domain objects to `LeadEngine` and gets domain objects back;
the rules live in `domain/` (pure functions) and the SQL in `store/`. What is here is
the part that is neither: which caller may touch which row, which transaction does what,
and the group-commit writer that lets SubmitLead and ImportLeads go faster than one
commit per call (see `mesh/groupcommit.py` for the why).

One SubmitLead, in the writer's batch transaction:
1. lock and look up, in ONE call (store.sqlite_batch_lookup: one hand-over to the SQLite
   connection's thread; store.postgres_batch_lookup: one pipelined round trip): SQLite
   `BEGIN IMMEDIATE`, PostgreSQL advisory locks on the batch's contact, channel-lead and
   request-id keys (so two processes never decide on the same person at once); then,
   with one indexed query each, request ids seen (each caller's own: request ids are
   scoped by caller, and a reused one with another body is refused), channel lead ids
   seen (a dealer's walk-in ids in that dealer's own namespace), the current lead
   of each (contact, brand), those leads with their touchpoints (row-locked on
   PostgreSQL), and today's routed counts of the dealers (row-locked);
2. decide each submission in arrival order with `domain.intake.intake`, against the
   batch's in-memory state, so a duplicate or a merge inside the same batch sees the lead
   the previous item created;
3. write, again in ONE call: new leads, changed leads, touchpoints, keys, request ids,
   dealer counts, one statement per table, and commit; answer every caller.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.errors import AlreadyExists, DomainError, NotFound, PermissionDenied
from mesh.groupcommit import GroupCommitter, HeldConnection, WriterFailed
from mesh.idempotency import Request, RequestIdReused, fingerprint, scope_of
from mesh.identity import Caller, Kind
from mesh.unit_of_work import UnitOfWork, transaction
from services.lead import metrics, store
from services.lead.dealercache import DealerCache
from services.lead.domain import followup, routing
from services.lead.domain.adf import parse_adf
from services.lead.domain.cleansing import cleanse
from services.lead.domain.config import LeadConfig
from services.lead.domain.intake import intake, reassign
from services.lead.domain.model import (
    Channel,
    CleanLead,
    Dealer,
    Lead,
    LeadInput,
    LeadStatus,
    Rejection,
    SubmitOutcome,
    payload_ref,
    rejections_of,
)
from services.lead.domain.visibility import View, can_read, reply_view

log = logging.getLogger(__name__)

SUBMIT = "SubmitLead"
UPDATE_STATUS = "UpdateLeadStatus"
ASSIGN = "AssignLead"
CREATE_DEALER = "CreateDealer"

# Rows of an import cleansed and committed together; two chunks are in flight at once
# (one committing while the next is cleansed), so memory stays bounded by ~2 chunks.
IMPORT_CHUNK = 500
# How long a process routes with its copy of the dealer registry before refreshing it in
# the background (see dealercache.py).
DEALER_CACHE_SECONDS = 5.0
# The writer keeps its connection between batches while they follow each other this
# closely; after a longer pause it takes a fresh (pinged) one from the pool.
WRITER_IDLE_SECONDS = 5.0
# While SubmitLeads keep the writer busy, it waits this long for more of them before each
# batch (see mesh/groupcommit.py): ~10% less CPU per call at 64 in flight, for 1 ms.
WRITER_LINGER_SECONDS = 0.001
MAX_LISTED_REJECTIONS = 1000


def new_lead_id(now: dt.datetime | None = None) -> str:
    """ "L" + 11 hex digits of epoch milliseconds + 16 random hex digits: ids sort like
    their creation times (pages and logs read naturally) and are unique across processes
    without coordination (64 random bits per millisecond)."""
    ms = int((now or dt.datetime.now(dt.UTC)).timestamp() * 1000)
    return f"L{ms:011x}{os.urandom(8).hex()}"


def _selling(cache: dict[str, list[Dealer]], dealers: list[Dealer], brand_key: str) -> list[Dealer]:
    """The dealers selling a brand (what routing needs), computed once per brand per batch:
    routing compares places for every dealer it is given, so fewer is faster."""
    found = cache.get(brand_key)
    if found is None:
        found = cache[brand_key] = [d for d in dealers if d.sells(brand_key)]
    return found


def _channel_of(payload: Payload) -> str:
    channel: Channel | None = payload.channel
    return channel.value if channel else Channel.ADF.value


def utcnow() -> dt.datetime:
    """The clock; tests replace it on the engine."""
    return dt.datetime.now(dt.UTC)


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
class ImportSummary:
    """ImportLeads' answer."""

    received: int = 0
    created: int = 0
    merged: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)
    rejections_truncated: bool = False

    def reject(self, row: int, rejections: Sequence[Rejection]) -> None:
        """Count one rejected row, listing its reasons while the list has room."""
        self.rejected += 1
        for r in rejections:
            if len(self.rejections) >= MAX_LISTED_REJECTIONS:
                self.rejections_truncated = True
                return
            self.rejections.append((row, r))


@dataclass(frozen=True, slots=True)
class ListQuery:
    """ListLeads after the caller's scope was applied."""

    flt: store.LeadFilter
    after: tuple[dt.datetime, str] | None
    limit: int


@dataclass(frozen=True, slots=True)
class RawAdf:
    """An ADF/XML document as received, with the request's own fields beside it."""

    document: str
    channel: Channel | None = None
    channel_lead_id: str = ""
    request_id: str = ""
    field: str = "raw_adf"


# What a submission carries: structured fields, or an ADF document to parse first.
Payload = LeadInput | RawAdf
# An import row as the servicer decoded it: (1-based row number, the payload or the error
# that made the row unusable before cleansing, the raw bytes the payload reference hashes).
ImportRow = tuple[int, Payload | DomainError, bytes]


class LeadEngine:
    """Everything the servicer can ask of the lead service."""

    def __init__(self, db: Database, config: LeadConfig, *, max_batch: int = 512) -> None:
        self.db = db
        self.config = config
        self.clock: Callable[[], dt.datetime] = utcnow
        self.is_postgres = not db.is_sqlite
        self.dealers = DealerCache(self._read_dealers, DEALER_CACHE_SECONDS)
        self._load_rows: set[tuple[str, dt.date]] = set()
        self.writer: GroupCommitter[Submission, Submitted] = GroupCommitter(
            self._write_batch,
            max_batch=max_batch,
            name="lead-writer",
            linger=WRITER_LINGER_SECONDS,
        )
        self._writer_conn = HeldConnection(db, WRITER_IDLE_SECONDS)

    async def start(self) -> None:
        """Start the writer task (on the serving loop)."""
        self.writer.start()

    async def stop(self) -> None:
        """Finish pending writes, stop the writer."""
        await self.writer.stop()
        await self.dealers.close()
        await self._writer_conn.close()

    # -------------------------------------------------------------------------- intake

    def prepare(self, payload: Payload) -> CleanLead:
        """Parse (ADF) and cleanse: InvalidArgument with the fields, before anything is
        queued, so a bad submission never reaches a transaction."""
        if isinstance(payload, RawAdf):
            parsed = parse_adf(payload.document, now=self.clock(), field=payload.field)
            payload = replace(
                parsed,
                channel=payload.channel or parsed.channel,
                channel_lead_id=payload.channel_lead_id or parsed.channel_lead_id,
                request_id=payload.request_id,
            )
        return cleanse(payload, self.config)

    async def submit(self, payload: Payload, caller: Caller, payload_ref: str) -> Submitted:
        """SubmitLead: cleanse, scope checks, then the group-committed write."""
        try:
            sub = self._submission(self.prepare(payload), caller, payload_ref)
        except DomainError:
            metrics.record_submitted(_channel_of(payload), "rejected")
            raise
        result = await self.writer.submit(sub)
        self._count(sub, result)
        view = reply_view(caller, result.lead)
        if view is View.NONE:
            # A dealer learns only that another dealer follows this customer.
            return Submitted(SubmitOutcome.OTHER_DEALER, result.lead, View.NONE)
        return replace(result, view=view)

    def _submission(self, clean: CleanLead, caller: Caller, payload_ref: str) -> Submission:
        walk_in = None
        if (
            caller.kind is Kind.CHANNEL
            and caller.channel
            and caller.channel.upper().removeprefix("CHANNEL_") != clean.channel.value
        ):
            raise PermissionDenied(
                f"the token of channel {caller.channel} may only submit that channel's leads",
                reason="CHANNEL_MISMATCH",
            )
        if caller.kind is Kind.DEALER:
            if clean.channel is not Channel.DEALER_WALK_IN:
                raise PermissionDenied(
                    "a dealer may only submit DEALER_WALK_IN leads", reason="DEALER_CHANNEL"
                )
            walk_in = caller.dealer_id
        # What the request asks, as decoded and cleansed (a retry sends the same payload).
        asked = fingerprint(SUBMIT, clean.channel.value, clean.channel_lead_id, payload_ref)
        return Submission(clean, caller.ref, payload_ref, walk_in, scope_of(caller), asked)

    def _count(self, sub: Submission, result: Submitted) -> None:
        metrics.record_submitted(sub.clean.channel.value, result.outcome.value.lower())
        if result.outcome in (SubmitOutcome.CREATED, SubmitOutcome.MERGED):
            metrics.record_graded(result.lead.grade.value)

    async def import_rows(self, rows: AsyncIterator[ImportRow], caller: Caller) -> ImportSummary:
        """ImportLeads: rows are cleansed and written in chunks through the same writer as
        SubmitLead; every rejection keeps its 1-based row number; nothing of a bad row
        stops the others. At most two chunks are held at once."""
        summary = ImportSummary()
        pending: asyncio.Task[None] | None = None
        chunk: list[tuple[int, Submission]] = []

        async def flush(items: list[tuple[int, Submission]]) -> None:
            results = await self.writer.submit_many([s for _, s in items])
            for (row, sub), res in zip(items, results, strict=True):
                if isinstance(res, Submitted):
                    self._count(sub, res)
                    if res.outcome is SubmitOutcome.CREATED:
                        summary.created += 1
                    elif res.outcome in (SubmitOutcome.MERGED, SubmitOutcome.OTHER_DEALER):
                        summary.merged += 1
                    else:
                        summary.duplicates += 1
                elif isinstance(res, DomainError):
                    metrics.record_submitted(sub.clean.channel.value, "rejected")
                    summary.reject(row, rejections_of(res))
                elif isinstance(res, WriterFailed | Exception):
                    metrics.record_submitted(sub.clean.channel.value, "rejected")
                    summary.reject(row, [Rejection("", "could not be stored")])
                else:
                    raise res

        try:
            async for row, source, payload in rows:
                summary.received += 1
                try:
                    if isinstance(source, DomainError):
                        raise source
                    sub = self._submission(self.prepare(source), caller, payload_ref(payload))
                except DomainError as e:
                    channel = "unknown" if isinstance(source, DomainError) else _channel_of(source)
                    metrics.record_submitted(channel, "rejected")
                    summary.reject(row, rejections_of(e))
                    continue
                chunk.append((row, sub))
                if len(chunk) >= IMPORT_CHUNK:
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(flush(chunk))
                    chunk = []
            if pending is not None:
                await pending
                pending = None
            if chunk:
                await flush(chunk)
        finally:
            if pending is not None and not pending.done():
                await pending
        summary.rejections.sort(key=lambda r: r[0])
        return summary

    async def _write_batch(self, batch: Sequence[Submission]) -> list[Submitted | BaseException]:
        """One transaction for the whole batch (see the module docstring), on the writer's
        held connection."""
        dealers = await self.dealers.get()
        conn = await self._writer_conn.get()
        try:
            results = await self._write_batch_on(conn, batch, dealers)
        except BaseException:
            await self._writer_conn.drop()
            raise
        self._writer_conn.done()
        return results

    async def _write_batch_on(
        self, conn: AsyncConnection, batch: Sequence[Submission], dealers: list[Dealer]
    ) -> list[Submitted | BaseException]:
        now = self.clock()
        today = now.date()
        rkeys = [s.request_key for s in batch if s.clean.request_id]
        ckeys = [s.channel_key for s in batch if s.clean.channel_lead_id]
        keys = [(s.clean.contact_key, s.clean.brand_key) for s in batch]
        lock_keys = (
            [f"k|{c}|{b}" for c, b in keys]
            + [f"c|{c}|{d}|{i}" for c, d, i in ckeys]
            + [f"r|{s}|{r}" for s, r in rkeys]
        )
        results: list[Submitted | BaseException] = []
        # Every lookup in one call: one hand-over to the SQLite thread, or one
        # PostgreSQL pipeline (see store/batch_sqlite.py, store/batch_postgres.py).
        load_ids = self._load_ids(dealers, batch)
        lookup = store.postgres_batch_lookup if self.is_postgres else store.sqlite_batch_lookup
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
        by_request, by_channel, key_db = found.by_request, found.by_channel, found.key_db
        state, loads = found.leads, found.loads
        by_brand: dict[str, list[Dealer]] = {}
        added: dict[str, int] = {}
        created: dict[str, Lead] = {}
        changed: dict[str, Lead] = {}
        new_tps: list[tuple[str, store.Touchpoint]] = []
        key_now: dict[tuple[str, str], str] = dict(key_db)
        remembered: list[store.Remembered] = []

        for sub in batch:
            clean = sub.clean
            key = (clean.contact_key, clean.brand_key)
            pair = sub.channel_key
            prior = by_request.get(sub.request_key) if clean.request_id else None
            if prior is not None and prior.fingerprint != sub.fingerprint:
                results.append(RequestIdReused())
                continue
            same_request = state.get(prior.result) if prior is not None else None
            same_channel = state.get(by_channel.get(pair, "")) if clean.channel_lead_id else None
            current = state.get(key_now.get(key, ""))
            try:
                res = intake(
                    clean,
                    lead_id=new_lead_id(now),
                    now=now,
                    actor=sub.actor,
                    payload_ref=sub.payload_ref,
                    same_request=same_request,
                    same_channel_lead=same_channel,
                    candidates=[current] if current is not None else [],
                    dealers=_selling(by_brand, dealers, clean.brand_key),
                    assigned_today=loads,
                    config=self.config,
                    walk_in_dealer_id=sub.walk_in_dealer_id,
                )
            except DomainError as e:
                results.append(e)
                continue
            lead = res.lead
            if res.outcome is not SubmitOutcome.DUPLICATE:
                state[lead.id] = lead
                if res.outcome is SubmitOutcome.CREATED or lead.id in created:
                    created[lead.id] = lead
                    key_now[key] = lead.id
                else:
                    changed[lead.id] = lead
                new_tps.append((lead.id, lead.touchpoints[-1]))
                if clean.channel_lead_id:
                    by_channel[pair] = lead.id
                if res.routed is not None and res.routed.dealer_id is not None:
                    d = res.routed.dealer_id
                    loads[d] = loads.get(d, 0) + 1
                    added[d] = added.get(d, 0) + 1
            if clean.request_id and prior is None:
                done = store.Remembered(sub.scope, clean.request_id, sub.fingerprint, lead.id)
                by_request[sub.request_key] = store.Prior(lead.id, done.fingerprint)
                remembered.append(done)
            results.append(Submitted(res.outcome, lead))

        key_inserts = [(c, b, i) for (c, b), i in key_now.items() if (c, b) not in key_db]
        key_updates = [
            (c, b, i) for (c, b), i in key_now.items() if (c, b) in key_db and key_db[(c, b)] != i
        ]
        write = store.postgres_batch_write if self.is_postgres else store.sqlite_batch_write
        await write(
            conn,
            store.BatchWrites(
                created=list(created.values()),
                changed=list(changed.values()),
                touchpoints=new_tps,
                key_inserts=key_inserts,
                key_updates=key_updates,
                requests=remembered,
                method=SUBMIT,
                now=now,
                day=today,
                added=added,
            ),
        )
        self._load_rows.update((d, today) for d in load_ids)
        return results

    async def _read_dealers(self) -> list[Dealer]:
        async with self.db.engine.connect() as conn:
            return await store.all_dealers(conn)

    @staticmethod
    def _load_ids(dealers: list[Dealer], batch: Sequence[Submission]) -> list[str]:
        """The dealers whose counts of today a batch may read or raise: every routable
        one, and the walk-ins' own."""
        routable = [d.id for d in dealers if d.active and d.daily_capacity > 0]
        return [*routable, *(s.walk_in_dealer_id for s in batch if s.walk_in_dealer_id)]

    # -------------------------------------------------------------------------- reads

    async def get_lead(self, lead_id: str, caller: Caller) -> Lead:
        """One lead the caller may see; another dealer's lead is NOT_FOUND."""
        async with self.db.engine.connect() as conn:
            lead = await store.get_lead(conn, lead_id)
        return self._visible(lead, lead_id, caller)

    @staticmethod
    def _visible(lead: Lead | None, lead_id: str, caller: Caller) -> Lead:
        if lead is None or not can_read(caller, lead):
            raise NotFound(f"lead {lead_id} not found", reason="LEAD_NOT_FOUND")
        return lead

    @staticmethod
    def scoped_filter(flt: store.LeadFilter, caller: Caller) -> store.LeadFilter:
        """ListLeads' filters limited to what the caller may read: a dealer lists only its
        own leads, so asking for another dealer's (or the OEM pool's) finds nothing."""
        if caller.kind is not Kind.DEALER:
            return flt
        own = caller.dealer_id or ""
        asked_other = flt.dealer_id not in (None, own) or flt.unassigned_only
        return replace(flt, dealer_id=own, unassigned_only=False, nothing=asked_other or not own)

    async def list_leads(self, query: ListQuery) -> list[Lead]:
        """One page (limit + 1 rows are read to know whether another page follows)."""
        async with self.db.engine.connect() as conn:
            return await store.list_leads(conn, query.flt, after=query.after, limit=query.limit)

    async def list_dealers(
        self, *, after_id: str, limit: int, brand: str, province: str, city: str
    ) -> list[Dealer]:
        """A page of dealers by id; the brand filter is applied on the page's rows and the
        page is refilled until full, so pages never come back short in the middle."""
        out: list[Dealer] = []
        async with self.db.engine.connect() as conn:
            cursor = after_id
            while len(out) < limit:
                rows = await store.list_dealers(
                    conn, after_id=cursor, limit=limit, province=province, city=city
                )
                if not rows:
                    break
                out.extend(d for d in rows if not brand or d.sells(brand))
                cursor = rows[-1].id
                if len(rows) < limit:
                    break
        return out[:limit]

    # -------------------------------------------------------------------------- changes

    async def update_status(
        self,
        lead_id: str,
        status: LeadStatus,
        lost_reason: str,
        request_id: str,
        caller: Caller,
    ) -> Lead:
        """UpdateLeadStatus: a retried request id returns the lead without applying twice."""

        def change(lead: Lead, now: dt.datetime) -> Lead:
            return followup.transition(
                lead,
                status,
                lost_reason=lost_reason,
                now=now,
                actor=caller.ref,
                config=self.config,
            )

        req = Request.of(caller, request_id, UPDATE_STATUS, lead_id, status.value, lost_reason)
        return await self._change_lead(UPDATE_STATUS, lead_id, req, caller, change)

    async def assign(
        self, lead_id: str, dealer_id: str, reason: str, request_id: str, caller: Caller
    ) -> Lead:
        """AssignLead (OEM only, by the proto's access policy)."""
        async with self.db.engine.connect() as conn:
            dealer = await store.get_dealer(conn, dealer_id)

        def change(lead: Lead, now: dt.datetime) -> Lead:
            decision = routing.manual(dealer, dealer_id, lead.brand, reason)
            return reassign(lead, decision, now=now, actor=caller.ref, config=self.config)

        req = Request.of(caller, request_id, ASSIGN, lead_id, dealer_id, reason)
        return await self._change_lead(ASSIGN, lead_id, req, caller, change)

    async def _change_lead(
        self,
        method: str,
        lead_id: str,
        req: Request,
        caller: Caller,
        change: Callable[[Lead, dt.datetime], Lead],
    ) -> Lead:
        """Read-modify-write one lead under its lock, idempotent by the caller's request."""
        now = self.clock()

        async def work(uow: UnitOfWork) -> Lead:
            await uow.lock(f"r|{req.scope}|{method}|{req.request_id}")
            prior = await store.REQUEST_IDS.prior(uow.conn, method, req)
            if prior is not None:
                return self._visible(await store.get_lead(uow.conn, prior), lead_id, caller)
            found = await store.leads_by_ids(uow.conn, [lead_id], for_update=self.is_postgres)
            lead = self._visible(found.get(lead_id), lead_id, caller)
            updated = change(lead, now)
            if updated is not lead:
                await store.update_leads(uow.conn, [updated])
            await store.REQUEST_IDS.remember(uow.conn, method, req, lead_id, now)
            return updated

        return await transaction(self.db, work)

    async def create_dealer(self, dealer: Dealer, request_id: str, caller: Caller) -> Dealer:
        """CreateDealer: a new id is created; a retried request id returns the dealer it
        created; a taken id with another request id is ALREADY_EXISTS."""
        now = self.clock()
        req = Request.of(caller, request_id, CREATE_DEALER, replace(dealer, create_time=None))
        dealer = replace(dealer, create_time=now)

        async def work(uow: UnitOfWork) -> Dealer:
            await uow.lock(f"r|{req.scope}|{CREATE_DEALER}|{request_id}", f"d|{dealer.id}")
            prior = await store.REQUEST_IDS.prior(uow.conn, CREATE_DEALER, req)
            if prior is not None:
                existing = await store.get_dealer(uow.conn, prior)
                assert existing is not None
                return existing
            if not await store.insert_dealer(uow.conn, dealer, caller.ref):
                raise AlreadyExists(f"dealer {dealer.id} exists", reason="DEALER_EXISTS")
            await store.REQUEST_IDS.remember(uow.conn, CREATE_DEALER, req, dealer.id, now)
            uow.after_commit(self.dealers.invalidate)
            return dealer

        return await transaction(self.db, work)

    async def seed_dealers(self, demo: Sequence[Dealer]) -> int:
        """Register the demo dealer network into an empty registry (make run); returns how
        many were added (0 when any dealer exists)."""
        now = self.clock()

        async def work(uow: UnitOfWork) -> int:
            await uow.lock("seed-dealers")
            if await store.count_dealers(uow.conn):
                return 0
            for d in demo:
                await store.insert_dealer(uow.conn, replace(d, create_time=now), "service:lead")
            uow.after_commit(self.dealers.invalidate)
            return len(demo)

        return await transaction(self.db, work)
