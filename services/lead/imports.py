"""ImportLeads: a stream of rows through the same writer as SubmitLead, in chunks.

Every rejection keeps its 1-based row number, and nothing of a bad row stops the others.
Rows are cleansed and committed `IMPORT_CHUNK` at a time, two chunks in flight at once
(one committing while the next is cleansed), so memory stays bounded by about two chunks
whatever the size of the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from mesh.errors import DomainError
from mesh.groupcommit import GroupCommitter, WriterFailed
from services.lead import metrics
from services.lead.domain.model import Rejection, SubmitOutcome, rejections_of
from services.lead.intake_writer import Submission, Submitted

IMPORT_CHUNK = 500
MAX_LISTED_REJECTIONS = 1000

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


async def import_rows(
    rows: AsyncIterator[Row],
    writer: GroupCommitter[Submission, Submitted],
    count: Callable[[Submission, Submitted], None],
) -> ImportSummary:
    """Write `rows` through `writer`; `count` records each written row's metrics."""
    summary = ImportSummary()
    pending: asyncio.Task[None] | None = None
    chunk: list[tuple[int, Submission]] = []

    async def flush(items: list[tuple[int, Submission]]) -> None:
        results = await writer.submit_many([s for _, s in items])
        for (row, sub), res in zip(items, results, strict=True):
            if isinstance(res, Submitted):
                count(sub, res)
            summary.took(row, sub, res)

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
