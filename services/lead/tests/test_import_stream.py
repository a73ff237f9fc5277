"""An ImportLeads stream outlives the server's connection recycling (issue 17).

A server closes connections after `max_connection_age_ms` so clients rebalance; the calls
on a closing connection get the grace, then are cut. A customer importing a million rows
in one stream (3-6 minutes) must not be cut: the lead service declares its longest call
(`MARQUE_LEAD_IMPORT_MAX_SECONDS`, an hour by default) and the grace is at least that.
Here the age and grace are a fraction of a second and the stream lasts seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from marque.lead.v1 import lead_service_pb2

from services.lead.app import IMPORT_MAX_SECONDS, import_max_seconds
from services.lead.tests.harness import SERVICE, lead_input, md, serve

# The server's connection age and grace in these tests, in ms: ~0.5 s before a cut.
AGE_MS, GRACE_MS = 300, 200
# A stream of ROWS rows, one every GAP seconds: ~2.4 s, several ages + graces long.
ROWS, GAP = 24, 0.1


class _SlowRows:
    """ROWS rows, one every GAP seconds; `sent` counts those handed to grpc."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self) -> AsyncIterator[lead_service_pb2.ImportLeadsRequest]:
        for n in range(ROWS):
            await asyncio.sleep(GAP)
            self.sent += 1
            yield lead_service_pb2.ImportLeadsRequest(lead=lead_input(f"1391234{n:04d}"))


async def _import(stub: Any) -> lead_service_pb2.ImportLeadsResponse:
    """One import stream. A call that starts as the server sends its GOAWAY may be refused
    (UNAVAILABLE before any row was sent: gRPC's clients retry those); with a connection
    age this short that happens, so such a refusal is retried. A cut stream is not."""
    for _ in range(3):
        rows = _SlowRows()
        try:
            return await stub.ImportLeads(rows(), metadata=md(SERVICE), timeout=30)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or rows.sent > 1:
                raise
    raise AssertionError("refused three times")


async def test_import_stream_outlives_the_connection_age(database_url: str) -> None:
    async with serve(
        database_url, max_connection_age_ms=AGE_MS, max_connection_age_grace_ms=GRACE_MS
    ) as lead:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        summary = await _import(lead.stub)
        assert loop.time() - t0 > 2 * (AGE_MS + GRACE_MS) / 1000
        assert (summary.created, summary.rejected) == (ROWS, 0)
        # And the connection was recycled meanwhile: a new call still works.
        again = await _import(lead.stub)
        assert again.merged == ROWS


async def test_without_a_longest_call_the_stream_is_cut(database_url: str) -> None:
    """The same stream on a server that declares no long call: cut after age + grace
    (what every import longer than 5 min 30 s met before)."""
    async with serve(
        database_url,
        import_seconds=0,
        max_connection_age_ms=AGE_MS,
        max_connection_age_grace_ms=GRACE_MS,
    ) as lead:
        rows = _SlowRows()
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await lead.stub.ImportLeads(rows(), metadata=md(SERVICE), timeout=30)
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
        # Cut mid-stream (after age + grace), not refused at its start.
        assert 1 < rows.sent < ROWS


def test_import_max_seconds_from_the_environment() -> None:
    assert import_max_seconds({}) == IMPORT_MAX_SECONDS
    assert import_max_seconds({"MARQUE_LEAD_IMPORT_MAX_SECONDS": " 7200 "}) == 7200.0
    assert import_max_seconds({"MARQUE_LEAD_IMPORT_MAX_SECONDS": "0"}) == 0.0
    for bad in ("-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match="MARQUE_LEAD_IMPORT_MAX_SECONDS"):
            import_max_seconds({"MARQUE_LEAD_IMPORT_MAX_SECONDS": bad})
