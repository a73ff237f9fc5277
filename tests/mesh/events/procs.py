"""Processes the crash tests kill -9 (`python -m tests.mesh.events.procs ...`).

publish --db URL --nats URL --service S --n N --stage committed|claimed|published
    emits N events (one unit of work each), then stops at `stage` and waits to be
    killed: `committed` before any relay ran, `claimed` with the rows leased and not
    published, `published` with every event acknowledged by JetStream and not marked
    sent. It prints the stage's name when it gets there.
consume --db URL --nats URL --producer S --block-on K
    consumes S's ThingHappened with the harness's handler, which prints "blocked" and
    hangs, uncommitted, on event number K.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from mesh.db import Database
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.events.relay import Relay
from tests.mesh.events import harness as h

LEASE_SECONDS = 1.0


class _StoppingRelay(Relay):
    """A relay that halts, forever, at a stage of its first cycle."""

    def __init__(self, *args: Any, stage: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stage = stage

    async def _publish(self, rows: Sequence[Any]) -> tuple[list[int], list[int]]:
        if self._stage == "claimed":
            print("claimed", flush=True)
            await asyncio.sleep(3600)
        result = await super()._publish(rows)
        print("published", flush=True)
        await asyncio.sleep(3600)
        return result


async def publish(args: argparse.Namespace) -> None:
    db = Database(args.db)
    outbox = Outbox(h.OUTBOX_TABLE, service=args.service)
    await h.emit_things(db, outbox, range(args.n))
    if args.stage == "committed":
        print("committed", flush=True)
        await asyncio.sleep(3600)
    link = Link(args.nats, name="doomed-publisher")
    link.start()
    await link.wait_connected(10)
    relay = _StoppingRelay(db, outbox, link, lease=LEASE_SECONDS, stage=args.stage)
    await relay.cycle()


async def consume(args: argparse.Namespace) -> None:
    db = Database(args.db)
    link = Link(args.nats, name="doomed-consumer")
    link.start()
    await link.wait_connected(10)
    consumer = h.consumer(db, link, args.producer, handler=h.make_handler(block_on=args.block_on))
    consumer.start()
    await asyncio.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--db", required=True)
    p.add_argument("--nats", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--stage", choices=["committed", "claimed", "published"], required=True)
    c = sub.add_parser("consume")
    c.add_argument("--db", required=True)
    c.add_argument("--nats", required=True)
    c.add_argument("--producer", required=True)
    c.add_argument("--block-on", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(publish(args) if args.command == "publish" else consume(args))


if __name__ == "__main__":
    main()
