"""The inbound application layer: a dealer's signed STAR document -> an accepted document
and its event, once.

`Intake.receive` decides in this order, each refusal with its HTTP status and reason:
the dealer must be known (401), the signature fresh and right (401, domain/signature.py),
the body JSON (400 MALFORMED_JSON, with the parser's line and column) and a valid
document of the endpoint's kind (400 INVALID_DOCUMENT, every field path,
domain/star.py). Then the group-committed writer (mesh/groupcommit.py) takes many
requests in ONE transaction: a signature accepted before is a replay (409); a natural key
(dealer, kind, DMS id, revision) accepted before is a resend, answered with the first
document and `duplicate` (a different content under the same key is 409
DOCUMENT_CONFLICT); a new one is inserted with its event through the unit of work's
`emit`, in the same transaction, carrying the trace of the HTTP request that brought it.
Only then is each request answered: accepted means committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from mesh.db import Database
from mesh.dberrors import loggable
from mesh.events.envelope import type_of
from mesh.groupcommit import GroupCommitter
from mesh.tracing import current_span_context
from mesh.unit_of_work import UnitOfWork, transaction
from services.adapters.dms import events
from services.adapters.dms.domain import errors, signature, star
from services.adapters.dms.domain.config import DmsConfig
from services.adapters.dms.domain.model import InboundDocument, Kind, Parsed
from services.adapters.dms.store import documents
from services.adapters.dms.store.tables import OUTBOX

log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]
SWEEP_SECONDS = 60.0
# While the writer is busy, it waits this long for more documents before its next batch: a
# commit (one fsync) is the fixed cost a bigger batch shares (mesh/groupcommit.py).
WRITER_LINGER_SECONDS = 0.002
# Kinds whose revision is a status time: the same key with another content is a conflict.
_TIMED = frozenset({Kind.REPAIR_STATUS_EVENT, Kind.RETAIL_DELIVERY_REPORT})


def utc_now() -> dt.datetime:
    """The production clock."""
    return dt.datetime.now(dt.UTC)


def new_document_id(now: dt.datetime) -> str:
    """ "doc_" + 11 hex digits of epoch ms + 13 random: sorts by time, unique without
    coordination."""
    return f"doc_{int(now.timestamp() * 1000):011x}{os.urandom(7).hex()[:13]}"


def natural_key(dealer_id: str, parsed: Parsed) -> str:
    """The digest of (dealer, kind, DMS id, revision): what makes a resend a resend."""
    text = "\x1f".join((dealer_id, parsed.kind.value, parsed.source_id, parsed.revision))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Pending:
    """A verified, valid document waiting for the writer."""

    dealer_id: str
    parsed: Parsed
    content_sha256: str
    signature: str
    natural_key: str
    context: SpanContext


@dataclass(frozen=True, slots=True)
class Outcome:
    """The accepted document (the first one, for a resend) and whether this was a resend."""

    document: InboundDocument
    duplicate: bool


class Intake:
    """Verifies, validates and group-commits inbound documents."""

    def __init__(
        self,
        db: Database,
        config: DmsConfig,
        clock: Clock = utc_now,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.wall = wall
        self.writer: GroupCommitter[Pending, Outcome] = GroupCommitter(
            self._write,
            max_batch=config.max_batch,
            name="dms-intake",
            linger=WRITER_LINGER_SECONDS,
        )
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the writer and the sweep of old signatures (on the serving loop)."""
        self.writer.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="dms-sweep")

    async def stop(self) -> None:
        """Finish the pending writes; stop."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.writer.stop()

    # -- checks, in the caller's task ---------------------------------------------------------

    def verify(self, dealer_id: str, timestamp: str, sig: str, body: bytes) -> None:
        """The dealer is known and signed this body just now; Refused otherwise."""
        secret = self.config.secret_of(dealer_id)
        if secret is None:
            raise errors.Refused(401, errors.UNKNOWN_DEALER, "no such dealer on this endpoint")
        refusal = signature.check(
            secret, timestamp, sig, body, now=self.wall(), max_skew=self.config.max_skew_seconds
        )
        if refusal is not None:
            raise errors.Refused(401, refusal.reason, refusal.message)

    @staticmethod
    def read(kind: Kind, body: bytes) -> tuple[Parsed, str]:
        """The body as a valid document of `kind`, and its content digest; Refused 400."""
        try:
            document = json.loads(body)
        except UnicodeDecodeError:
            raise errors.Refused(400, errors.MALFORMED_JSON, "the body is not UTF-8") from None
        except json.JSONDecodeError as e:
            where = f"line {e.lineno} column {e.colno}"
            raise errors.Refused(
                400, errors.MALFORMED_JSON, f"the body is not JSON: {e.msg} at {where}"
            ) from None
        try:
            parsed = star.parse(kind, document)
        except star.Invalid as e:
            raise errors.Refused(
                400, errors.INVALID_DOCUMENT, "the document does not fit STAR", e.violations
            ) from None
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return parsed, hashlib.sha256(canonical.encode()).hexdigest()

    async def receive(
        self, dealer_id: str, kind: Kind, timestamp: str, sig: str, body: bytes
    ) -> Outcome:
        """One signed document, accepted once (see the module docstring)."""
        self.verify(dealer_id, timestamp, sig, body)
        parsed, content = self.read(kind, body)
        pending = Pending(
            dealer_id=dealer_id,
            parsed=parsed,
            content_sha256=content,
            signature=sig.strip().lower(),
            natural_key=natural_key(dealer_id, parsed),
            context=current_span_context(),
        )
        return await self.writer.submit(pending)

    # -- the writer ---------------------------------------------------------------------------

    async def _write(self, batch: Sequence[Pending]) -> list[Outcome | BaseException]:
        now = self.clock()

        async def work(uow: UnitOfWork) -> list[Outcome | BaseException]:
            return await self._decide(uow, batch, now)

        return await transaction(self.db, work, outbox=OUTBOX)

    async def _decide(
        self, uow: UnitOfWork, batch: Sequence[Pending], now: dt.datetime
    ) -> list[Outcome | BaseException]:
        found, replayed = await documents.lookup(
            uow.conn, [p.natural_key for p in batch], [p.signature for p in batch]
        )
        results: list[Outcome | BaseException] = []
        new: list[tuple[InboundDocument, str]] = []
        signatures: list[str] = []
        for p in batch:
            if p.signature in replayed:
                results.append(
                    errors.Refused(409, errors.REPLAYED, "this signature was accepted before")
                )
                continue
            replayed.add(p.signature)
            signatures.append(p.signature)
            prior = found.get(p.natural_key)
            if prior is not None:
                doc, content = prior
                if content != p.content_sha256 and p.parsed.kind in _TIMED:
                    results.append(errors.Refused(409, errors.DOCUMENT_CONFLICT, _CONFLICT))
                else:
                    results.append(Outcome(doc, duplicate=True))
                continue
            doc = self._emit(uow, p, now)
            found[p.natural_key] = (doc, p.content_sha256)
            new.append((doc, p.natural_key))
            results.append(Outcome(doc, duplicate=False))
        await documents.insert(uow.conn, new, signatures, now)
        return results

    @staticmethod
    def _emit(uow: UnitOfWork, p: Pending, now: dt.datetime) -> InboundDocument:
        """The document's event in the outbox, in the trace of the request that brought it."""
        doc = InboundDocument(
            document_id=new_document_id(now),
            dealer_id=p.dealer_id,
            kind=p.parsed.kind,
            source_id=p.parsed.source_id,
            revision=p.parsed.revision,
            event_type="",
            event_id="",
            body_sha256=p.content_sha256,
            receive_time=now,
        )
        event = events.inbound_event(doc, p.parsed)
        with trace.use_span(NonRecordingSpan(p.context)):
            event_id = uow.emit(event, subject=f"{p.dealer_id}/{p.parsed.source_id}")
        return replace(doc, event_type=type_of(event), event_id=event_id)

    async def _sweep(self) -> None:
        """Forget signatures older than twice the skew: their timestamps are stale anyway."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            before = self.clock() - dt.timedelta(seconds=2 * self.config.max_skew_seconds)

            async def work(uow: UnitOfWork, before: dt.datetime = before) -> int:
                return await documents.forget_signatures(uow.conn, before)

            try:
                await transaction(self.db, work)
            except Exception as e:
                log.warning("the signature sweep failed", exc_info=loggable(e))


_CONFLICT = "a document with this id and status time was accepted with another content"
