"""What a service runs for its events: one NATS link, the relay of its outbox, a consumer per
subscription, and the retention sweeps of its outbox and inbox.

    EVENTS = EventSpec(service="member", outbox=OUTBOX, inbox=INBOX,
                       subscriptions=subscriptions_in(handlers_module))

    events = Events(EVENTS, db)       # in the service's startup, after migrations
    await events.start()
    ...
    await events.stop()               # in its shutdown, before db.dispose()

`Events` starts with NATS up or down: the relay and the consumers wait for the link, the
service's calls keep committing (events wait in the outbox).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from mesh.db import Database
from mesh.events.consumer import Consumer
from mesh.events.inbox import Inbox
from mesh.events.link import Link
from mesh.events.outbox import Outbox
from mesh.events.relay import Relay
from mesh.events.settings import EventSettings
from mesh.events.subscriptions import Subscription
from mesh.retention import Sweeper


def sweep_seconds(env: dict[str, str] | None = None) -> float:
    """`MARQUE_RETENTION_SWEEP_SECONDS` (3600), as mesh.config reads it for request ids."""
    raw = (os.environ if env is None else env).get("MARQUE_RETENTION_SWEEP_SECONDS", "")
    return float(raw) if raw.strip() else 3600.0


@dataclass(frozen=True)
class EventSpec:
    """A service's event wiring: its outbox (if it emits), its inbox and subscriptions (if
    it consumes). `python -m mesh.events.replay` finds it as `<service module>.events:EVENTS`."""

    service: str
    outbox: Outbox | None = None
    inbox: Inbox | None = None
    subscriptions: Sequence[Subscription] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.subscriptions and self.inbox is None:
            raise ValueError(f"{self.service} subscribes to events but has no inbox")
        if self.outbox is not None and self.outbox.service != self.service:
            raise ValueError("the outbox belongs to another service")
        names = [s.durable(self.service) for s in self.subscriptions]
        if len(set(names)) != len(names):
            raise ValueError(f"two subscriptions of {self.service} share a name: {names}")


class Events:
    """The running events of one service process (see the module docstring)."""

    def __init__(
        self,
        spec: EventSpec,
        db: Database,
        *,
        settings: EventSettings | None = None,
        tracer: trace.Tracer | None = None,
        link: Link | None = None,
        sweep_every: float | None = None,
        relay_options: dict[str, Any] | None = None,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings or EventSettings.from_env()
        self._own_link = link is None
        self.link = link or Link(
            self.settings.nats_url, name=spec.service, creds=self.settings.nats_creds
        )
        self.relay: Relay | None = None
        if spec.outbox is not None:
            self.relay = Relay(
                db,
                spec.outbox,
                self.link,
                settings=self.settings,
                tracer=tracer,
                **(relay_options or {}),
            )
        self.consumers: list[Consumer] = []
        if spec.inbox is not None:
            self.consumers = [
                Consumer(
                    db,
                    spec.inbox,
                    self.link,
                    sub,
                    service=spec.service,
                    outbox=spec.outbox,
                    settings=self.settings,
                    tracer=tracer,
                    **(consumer_options or {}),
                )
                for sub in spec.subscriptions
            ]
        keep = dt.timedelta(seconds=self.settings.retention_seconds)
        every = sweep_every if sweep_every is not None else sweep_seconds()
        self.sweepers: list[Sweeper] = []
        if spec.outbox is not None:
            self.sweepers.append(Sweeper(db, spec.outbox.table.c.sent_time, keep=keep, every=every))
        if spec.inbox is not None:
            self.sweepers.append(
                Sweeper(db, spec.inbox.table.c.handled_time, keep=keep, every=every)
            )

    async def start(self) -> None:
        """Connect (in the background) and start relaying, consuming and sweeping."""
        self.link.start()
        if self.relay is not None:
            self.relay.start()
        for consumer in self.consumers:
            consumer.start()
        for sweeper in self.sweepers:
            sweeper.start()

    async def stop(self) -> None:
        """Stop everything; close the link if it is ours."""
        for sweeper in self.sweepers:
            await sweeper.stop()
        for consumer in self.consumers:
            await consumer.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self._own_link:
            await self.link.close()
