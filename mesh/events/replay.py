"""Dead letters: list them, and hand them to their handler again once the cause is fixed.

    python -m mesh.events.replay member --list
    python -m mesh.events.replay member                      # every dead letter
    python -m mesh.events.replay member --consumer member-LeadWon --id 0b6c...

The service's event wiring is found as `<service module>.events:EVENTS` (an `EventSpec`,
mesh/events/runtime.py) unless `--spec module:attribute` names another; its database is the
one the service uses (`MARQUE_<SERVICE>_DATABASE_URL`...) unless `--database-url` is given.
Each dead letter runs in its own unit of work: the handler, and the inbox row turned to
`replayed` (so it is swept like any handled event), commit together; one that fails again
stays a dead letter, its attempts counted and its last error kept. NATS is not needed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from mesh.db import Database
from mesh.events import metrics
from mesh.events.envelope import Envelope, decode
from mesh.events.inbox import DeadLetter, error_text
from mesh.events.outbox import utc_now
from mesh.events.runtime import EventSpec
from mesh.events.subscriptions import Subscription
from mesh.unit_of_work import UnitOfWork, transaction


@dataclass
class Replayed:
    """What a replay did."""

    replayed: list[str]
    failed: list[str]


async def dead_letters(
    db: Database, spec: EventSpec, *, consumer: str | None = None, ids: Sequence[str] = ()
) -> list[DeadLetter]:
    """The service's kept dead letters, oldest first."""
    if spec.inbox is None:
        return []
    async with db.engine.connect() as conn:
        return await spec.inbox.dead_letters(conn, consumer=consumer, ids=ids)


async def replay(
    db: Database, spec: EventSpec, *, consumer: str | None = None, ids: Sequence[str] = ()
) -> Replayed:
    """Run each dead letter's handler again (see the module docstring)."""
    inbox = spec.inbox
    done = Replayed([], [])
    if inbox is None:
        return done
    by_name = {s.durable(spec.service): s for s in spec.subscriptions}
    for letter in await dead_letters(db, spec, consumer=consumer, ids=ids):
        sub = by_name.get(letter.consumer)
        if sub is None:
            done.failed.append(letter.event_id)
            continue

        async def work(
            uow: UnitOfWork, letter: DeadLetter = letter, sub: Subscription = sub
        ) -> None:
            envelope = Envelope.from_headers(letter.headers)
            event = decode(sub.event_type, letter.payload)
            await sub.handle(uow, [event], [envelope])
            await inbox.replayed(uow.conn, letter.consumer, letter.event_id, utc_now())

        try:
            await transaction(db, work, outbox=spec.outbox)
        except Exception as e:
            error = error_text(e)

            async def count(
                uow: UnitOfWork, letter: DeadLetter = letter, error: str = error
            ) -> None:
                await inbox.failed_again(uow.conn, letter.consumer, letter.event_id, error)

            await transaction(db, count)
            done.failed.append(letter.event_id)
        else:
            metrics.events_consumed_total.labels(letter.type, "replayed").inc()
            done.replayed.append(letter.event_id)
    return done


def load_spec(service: str, spec: str | None) -> EventSpec:
    """The EventSpec named `module:attribute`, else `<service module>.events:EVENTS`."""
    if spec is None:
        from mesh.catalog import entry

        spec = f"{entry(service).module}.events:EVENTS"
    module_name, _, attribute = spec.partition(":")
    found = getattr(importlib.import_module(module_name), attribute or "EVENTS")
    if not isinstance(found, EventSpec):
        raise TypeError(f"{spec} is not an EventSpec")
    return found


async def _main(args: argparse.Namespace, out: IO[str]) -> int:
    spec = load_spec(args.service, args.spec)
    if args.database_url:
        url = args.database_url
    else:
        from mesh.config import database_url

        url = database_url(args.service)
    db = Database(url)
    try:
        if args.list:
            letters = await dead_letters(db, spec, consumer=args.consumer, ids=args.id)
            for d in letters:
                print(
                    f"{d.consumer}  {d.event_id}  {d.type}  subject={d.aggregate}  "
                    f"attempts={d.attempts}  since={d.received_time:%Y-%m-%dT%H:%M:%SZ}  {d.error}",
                    file=out,
                )
            print(f"{len(letters)} dead letter(s)", file=out)
            return 0
        result = await replay(db, spec, consumer=args.consumer, ids=args.id)
        for event_id in result.failed:
            print(f"failed again: {event_id}", file=out)
        print(f"replayed {len(result.replayed)}, failed {len(result.failed)}", file=out)
        return 1 if result.failed else 0
    finally:
        await db.dispose()


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout) -> int:
    """Command-line entry; returns the exit status (1 if a dead letter failed again)."""
    parser = argparse.ArgumentParser(prog="python -m mesh.events.replay", description=__doc__)
    parser.add_argument("service", help="the consuming service, e.g. member")
    parser.add_argument("--list", action="store_true", help="list the dead letters only")
    parser.add_argument("--consumer", help="only this consumer's, e.g. member-LeadWon")
    parser.add_argument("--id", action="append", default=[], help="only this event id")
    parser.add_argument("--spec", help="module:attribute of the EventSpec")
    parser.add_argument("--database-url", help="the service's database (default: its own)")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args, out))


if __name__ == "__main__":
    sys.exit(main())
