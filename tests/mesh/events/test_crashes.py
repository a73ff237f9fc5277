"""kill -9 at the worst moments: the publisher between commit and publish (and between
publish and mark), the consumer in the middle of a handler. Nothing is lost, nothing is
done twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from mesh.config import ROOT
from mesh.db import Database
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from tests.mesh.events import harness as h
from tests.mesh.events.procs import LEASE_SECONDS

pytestmark = pytest.mark.e2e


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.mesh.events.procs",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _wait_for_line(process: asyncio.subprocess.Process, line: str) -> None:
    assert process.stdout is not None
    seen: list[bytes] = []
    async with asyncio.timeout(30):
        while True:
            raw = await process.stdout.readline()
            if not raw:
                raise AssertionError(f"the process ended before {line!r}:\n{b''.join(seen)!r}")
            seen.append(raw)
            if raw.decode().strip() == line:
                return


async def _kill9(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    await process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("stage", ["committed", "claimed", "published"])
async def test_a_publisher_killed_after_its_commit_loses_no_event_and_doubles_none(
    db: Database, link: Link, database_url: str, nats_url: str, stage: str
) -> None:
    service = h.unique_service()
    n = 20
    doomed = await _start(
        "publish", "--db", database_url, "--nats", nats_url, "--service", service,
        "--n", str(n), "--stage", stage,
    )  # fmt: skip
    await _wait_for_line(doomed, stage)
    await _kill9(doomed)
    assert await h.pending_count(db) == n  # committed, never marked sent

    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    consumer = h.consumer(db, link, service)
    relay.start()
    consumer.start()
    try:
        if stage != "committed":  # the dead relay's lease runs out first
            await asyncio.sleep(LEASE_SECONDS / 2)
            assert await h.pending_count(db) == n
        effects = await h.count_effects(db, n)
    finally:
        await consumer.stop()
        await relay.stop()
    assert sorted(e.number for e in effects) == list(range(n))
    assert len({e.event_id for e in effects}) == n
    # Published twice at the `published` stage: JetStream kept one copy of each.
    info = await link.js.stream_info(relay.stream)
    assert info.state.messages == n


async def test_a_consumer_killed_mid_handler_has_its_effect_once(
    db: Database, link: Link, database_url: str, nats_url: str
) -> None:
    service = h.unique_service()
    outbox = Outbox(h.OUTBOX_TABLE, service=service)
    relay = h.relay(db, outbox, link)
    relay.start()
    n = 6
    try:
        await h.emit_things(db, outbox, range(n))
        doomed = await _start(
            "consume", "--db", database_url, "--nats", nats_url, "--producer", service,
            "--block-on", "3",
        )  # fmt: skip
        await _wait_for_line(doomed, "blocked")  # effects written, not committed
        await _kill9(doomed)
        # Batches before the blocked one may have committed; the blocked one did not.
        assert 3 not in {e.number for e in await h.effect_rows(db)}
        # The same durable consumer, alive: JetStream redelivers after ack_wait (2 s).
        consumer = h.consumer(db, link, service)
        consumer.start()
        try:
            effects = await h.count_effects(db, n)
        finally:
            await consumer.stop()
    finally:
        await relay.stop()
    assert sorted(e.number for e in effects) == list(range(n))
    assert len({e.event_id for e in effects}) == n
