"""The lead service's application layer: one method per RPC, the caller explicit.

The servicer hands decoded domain objects to `LeadEngine` and gets domain objects back;
the rules live in `domain/` (pure functions) and the SQL in `store/`. What is here is
the part that is neither: which caller may touch which row (decided here, once, with
`domain/visibility.py`), which transaction does what (mesh.unit_of_work), and the
group-commit writer that lets SubmitLead and ImportLeads go faster than one commit per
call (`intake_writer.py`, `imports.py`; see `mesh/groupcommit.py` for the why).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

from mesh import contact
from mesh.db import Database
from mesh.errors import AlreadyExists, DomainError, NotFound, PermissionDenied
from mesh.groupcommit import GroupCommitter
from mesh.idempotency import Request, fingerprint, scope_of
from mesh.identity import Caller, Kind
from mesh.tracing import current_span_context
from mesh.unit_of_work import UnitOfWork, transaction
from services.lead import events, metrics, store
from services.lead.dealercache import DealerCache
from services.lead.domain import errors, followup, routing
from services.lead.domain.adf import parse_adf
from services.lead.domain.cleansing import cleanse
from services.lead.domain.config import LeadConfig
from services.lead.domain.intake import reassign
from services.lead.domain.listing import ListQuery
from services.lead.domain.model import (
    Channel,
    CleanLead,
    Dealer,
    Lead,
    LeadStatus,
    SubmitOutcome,
    payload_ref,
)
from services.lead.domain.visibility import View, can_read, reply_view
from services.lead.imports import Analyzer, ImportSummary, Row, import_rows
from services.lead.intake_writer import SUBMIT, IntakeWriter, Submission, Submitted
from services.lead.payloads import ImportRow, Payload, RawAdf, channel_of
from services.lead.store import people, queries

log = logging.getLogger(__name__)

UPDATE_STATUS = "UpdateLeadStatus"
ASSIGN = "AssignLead"
CREATE_DEALER = "CreateDealer"

# How long a process routes with its copy of the dealer registry before refreshing it in
# the background (see dealercache.py).
DEALER_CACHE_SECONDS = 5.0
# The writer keeps its connection between batches while they follow each other this
# closely; after a longer pause it takes a fresh (pinged) one from the pool.
WRITER_IDLE_SECONDS = 5.0
# While SubmitLeads keep the writer busy, it waits this long for more of them before each
# batch (see mesh/groupcommit.py): ~10% less CPU per call at 64 in flight, for 1 ms.
WRITER_LINGER_SECONDS = 0.001


def utcnow() -> dt.datetime:
    """The clock; tests replace it on the engine."""
    return dt.datetime.now(dt.UTC)


class LeadEngine:
    """Everything the servicer can ask of the lead service."""

    def __init__(
        self, db: Database, config: LeadConfig, *, secret: bytes, max_batch: int = 512
    ) -> None:
        self.db = db
        self.config = config
        self.secret = secret  # the contact-digest key of the events (mesh/contact.py)
        self.clock: Callable[[], dt.datetime] = utcnow
        self.is_postgres = not db.is_sqlite
        self.dealers = DealerCache(self._read_dealers, DEALER_CACHE_SECONDS)
        self.intake = IntakeWriter(db, config, self._now, self.dealers.get, WRITER_IDLE_SECONDS)
        self.writer: GroupCommitter[Submission, Submitted] = GroupCommitter(
            self.intake.write,
            max_batch=max_batch,
            name="lead-writer",
            linger=WRITER_LINGER_SECONDS,
        )
        # PostgreSQL: ANALYZE after bulk loads, so the planner knows their sizes (imports.py).
        self.analyzer = Analyzer(self._analyze) if self.is_postgres else None

    def _now(self) -> dt.datetime:
        return self.clock()  # looked up per call: tests replace `clock`

    async def start(self) -> None:
        """Start the writer task (on the serving loop)."""
        self.writer.start()

    async def stop(self) -> None:
        """Finish pending writes, stop the writer."""
        await self.writer.stop()
        if self.analyzer is not None:
            await self.analyzer.close()
        await self.dealers.close()
        await self.intake.connection.close()

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
            metrics.record_submitted(channel_of(payload), "rejected")
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
                reason=errors.CHANNEL_MISMATCH,
            )
        if caller.kind is Kind.DEALER:
            if clean.channel is not Channel.DEALER_WALK_IN:
                raise PermissionDenied(
                    "a dealer may only submit DEALER_WALK_IN leads", reason=errors.DEALER_CHANNEL
                )
            walk_in = caller.dealer_id
        # What the request asks, as decoded and cleansed (a retry sends the same payload).
        asked = fingerprint(SUBMIT, clean.channel.value, clean.channel_lead_id, payload_ref)
        return Submission(
            clean,
            caller.ref,
            payload_ref,
            walk_in,
            scope_of(caller),
            asked,
            contact.digest(clean.contact_key, self.secret),
            current_span_context(),
        )

    def _count(self, sub: Submission, result: Submitted) -> None:
        metrics.record_submitted(sub.clean.channel.value, result.outcome.value.lower())
        if result.outcome in (SubmitOutcome.CREATED, SubmitOutcome.MERGED):
            metrics.record_graded(result.lead.grade.value)

    async def import_rows(self, rows: AsyncIterator[ImportRow], caller: Caller) -> ImportSummary:
        """ImportLeads: each row is handled like SubmitLead (see imports.py)."""

        async def submissions() -> AsyncIterator[Row]:
            async for row, source, payload in rows:
                try:
                    if isinstance(source, DomainError):
                        raise source
                    yield row, self._submission(self.prepare(source), caller, payload_ref(payload))
                except DomainError as e:
                    channel = "unknown" if isinstance(source, DomainError) else channel_of(source)
                    metrics.record_submitted(channel, "rejected")
                    yield row, e

        analyzer = self.analyzer
        try:
            return await import_rows(
                submissions(), self.writer, self._count, analyzer.wrote if analyzer else None
            )
        finally:
            if analyzer is not None:
                await analyzer.finish()

    async def _analyze(self) -> float:
        """ANALYZE what imports grow; the planner's new count of leads."""
        async with self.db.engine.begin() as conn:
            await queries.analyze_bulk_tables(conn)
            return await queries.planned_leads(conn)

    async def _read_dealers(self) -> list[Dealer]:
        async with self.db.engine.connect() as conn:
            return await store.all_dealers(conn)

    # -------------------------------------------------------------------------- reads

    async def get_lead(self, lead_id: str, caller: Caller) -> Lead:
        """One lead the caller may see; another dealer's lead is NOT_FOUND."""
        async with self.db.engine.connect() as conn:
            lead = await store.get_lead(conn, lead_id)
        return self._visible(lead, lead_id, caller)

    @staticmethod
    def _visible(lead: Lead | None, lead_id: str, caller: Caller) -> Lead:
        if lead is None or not can_read(caller, lead):
            raise NotFound(f"lead {lead_id} not found", reason=errors.LEAD_NOT_FOUND)
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
                for event in events.changes(lead, updated):
                    uow.emit(event, subject=lead_id)
            await store.REQUEST_IDS.remember(uow.conn, method, req, lead_id, now)
            return updated

        return await transaction(self.db, work, outbox=store.tables.OUTBOX)

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
                raise AlreadyExists(f"dealer {dealer.id} exists", reason=errors.DEALER_EXISTS)
            await store.REQUEST_IDS.remember(uow.conn, CREATE_DEALER, req, dealer.id, now)
            uow.after_commit(self.dealers.invalidate)
            return dealer

        return await transaction(self.db, work)

    async def backfill_digests(self, batch: int = 1000) -> int:
        """Give leads taken in before contact digests existed (migration 0004) theirs, a
        batch per transaction, so member's events reach them too; how many."""
        total = 0

        def digest_of(contact_key: str) -> str:
            return contact.digest(contact_key, self.secret)

        while True:

            async def work(uow: UnitOfWork) -> int:
                return await people.backfill_digests(uow.conn, digest_of, batch)

            done = await transaction(self.db, work)
            total += done
            if done < batch:
                return total

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
