"""ImportLeads: a stream of rows through the same writer as SubmitLead, in chunks.

Every rejection keeps its 1-based row number, and nothing of a bad row stops the others.
Rows are cleansed and committed `IMPORT_CHUNK` at a time, two chunks in flight at once
(one committing while the next is cleansed), so memory stays bounded by about two chunks
whatever the size of the file.

A bulk load changes the tables faster than PostgreSQL's autovacuum re-analyses them (and
some servers run without it): with the planner still counting an empty table, touchpoints
were read by sequential scans and the batch lookup became a merge over a whole index (issue
17). `Analyzer` makes sure the planner knows the new sizes: ANALYZE in the background while
a long import doubles the table, and at the end of every import stream that wrote more than
`ANALYZE_ROWS` rows or `ANALYZE_SHARE` of the table (counted once per chunk, never per row).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mesh.errors import DomainError
from mesh.groupcommit import GroupCommitter, WriterFailed
from services.lead import metrics
from services.lead.domain.model import Rejection, SubmitOutcome, rejections_of
from services.lead.intake_writer import Submission, Submitted

log = logging.getLogger(__name__)

IMPORT_CHUNK = 500
MAX_LISTED_REJECTIONS = 1000
# ANALYZE after an import that wrote this many rows, or more than ANALYZE_BASE +
# ANALYZE_SHARE of the leads the planner counted (autovacuum's own default rule).
ANALYZE_ROWS = 10_000
ANALYZE_BASE = 50
ANALYZE_SHARE = 0.1

# A row as the caller decoded it: its number and its submission, or why it is unusable.
Row = tuple[int, Submission | DomainError]


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

    def took(self, row: int, sub: Submission, res: Submitted | BaseException) -> None:
        """Count what the writer did with one row."""
        if isinstance(res, Submitted):
            if res.outcome is SubmitOutcome.CREATED:
                self.created += 1
            elif res.outcome in (SubmitOutcome.MERGED, SubmitOutcome.OTHER_DEALER):
                self.merged += 1
            else:
                self.duplicates += 1
            return
        metrics.record_submitted(sub.clean.channel.value, "rejected")
        if isinstance(res, DomainError):
            self.reject(row, rejections_of(res))
        elif isinstance(res, WriterFailed | Exception):
            self.reject(row, [Rejection("", "could not be stored")])
        else:
            raise res


def stale_after(written: int, planned_rows: float) -> bool:
    """True when `written` rows make the planner's count of `planned_rows` out of date."""
    return written >= ANALYZE_ROWS or written > ANALYZE_BASE + ANALYZE_SHARE * planned_rows


class Analyzer:
    """Keeps the planner's statistics up with imports (one per engine; PostgreSQL).

    `analyze()` runs the ANALYZE and returns the planner's new row count. `wrote()` is
    called once per committed chunk; `finish()` at the end of each import stream.
    """

    def __init__(self, analyze: Callable[[], Awaitable[float]]) -> None:
        self._analyze = analyze
        self.planned = -1.0  # unknown until the first ANALYZE: treated as empty
        self.written = 0  # rows written since the last ANALYZE began
        self.runs = 0
        self._running: asyncio.Task[None] | None = None

    def wrote(self, n: int) -> None:
        """`n` more rows; ANALYZE in the background once the table has about doubled."""
        self.written += n
        if self.written >= ANALYZE_ROWS and self.written > max(0.0, self.planned):
            self._start()

    async def finish(self) -> None:
        """At the end of a stream: ANALYZE now if what was written since makes the
        planner's count stale (waiting for one already running first)."""
        if self._running is not None:
            await asyncio.shield(self._running)
        if self.written and stale_after(self.written, max(0.0, self.planned)):
            self._start()
        if self._running is not None:
            await asyncio.shield(self._running)

    async def close(self) -> None:
        """Let a running ANALYZE finish (engine stop)."""
        if self._running is not None:
            await asyncio.shield(self._running)

    def _start(self) -> None:
        if self._running is not None and not self._running.done():
            return
        written, self.written = self.written, 0
        self._running = asyncio.ensure_future(self._run(written))

    async def _run(self, written: int) -> None:
        try:
            self.planned = await self._analyze()
            self.runs += 1
        except Exception:
            self.written += written  # tried again at the next chunk or stream end
            log.warning("ANALYZE after an import failed", exc_info=True)
        finally:
            self._running = None


async def import_rows(
    rows: AsyncIterator[Row],
    writer: GroupCommitter[Submission, Submitted],
    count: Callable[[Submission, Submitted], None],
    wrote: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Write `rows` through `writer`; `count` records each written row's metrics, `wrote`
    hears how many rows each chunk wrote (created or merged)."""
    summary = ImportSummary()
    pending: asyncio.Task[None] | None = None
    chunk: list[tuple[int, Submission]] = []

    async def flush(items: list[tuple[int, Submission]]) -> None:
        results = await writer.submit_many([s for _, s in items])
        before = summary.created + summary.merged
        for (row, sub), res in zip(items, results, strict=True):
            if isinstance(res, Submitted):
                count(sub, res)
            summary.took(row, sub, res)
        if wrote is not None:
            wrote(summary.created + summary.merged - before)

    try:
        async for row, source in rows:
            summary.received += 1
            if isinstance(source, DomainError):
                summary.reject(row, rejections_of(source))
                continue
            chunk.append((row, source))
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
