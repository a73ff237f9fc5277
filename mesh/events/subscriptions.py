"""Subscriptions: which handler of a service takes which event type.

    @subscribe(lead_events_pb2.LeadWon)
    async def on_lead_won(uow: UnitOfWork, event: LeadWon, envelope: Envelope) -> None:
        ...

`subscribe` only marks the function; `subscriptions_in(module)` collects the marked ones
for the service's `EventSpec` (mesh/events/runtime.py), so importing a handler module never
subscribes anything by itself.

A handler whose effect is one row per event can take the consumer's whole batch instead, and
write it with one statement (`executemany`) where a statement per event would cost more than
everything else the consumer does:

    @subscribe(lead_events_pb2.LeadCreated, batch=True)
    async def on_leads(uow: UnitOfWork, events: Sequence[LeadCreated],
                       envelopes: Sequence[Envelope]) -> None: ...

It is given the batch's new events (duplicates already dropped), in delivery order; if it
raises, the consumer runs it again with one event at a time, so only the failing event
fails.

A handler whose effect needs a slow call outside the database (an adapter's HTTP request to
its backend) must not make it inside the unit of work: the transaction would hold a
connection (PostgreSQL) or the write lock (SQLite) for the call's whole latency. It declares
`prepare`, an `async def prepare(events, envelopes) -> None` the consumer awaits before the
batch's unit of work, outside any transaction, with every decodable event of the batch
(duplicates not yet dropped: the inbox is read inside the transaction). What prepare learns
it keeps for the handler, which then only records it; the handler must still be correct when
prepare did nothing for an event. If prepare raises, every event of the batch fails with
that error (nak'd, or a dead letter in time).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, cast

from google.protobuf.message import Message

from mesh.events.envelope import Envelope, event_name, producer_of, subject_of
from mesh.unit_of_work import UnitOfWork


class Handler(Protocol):
    """`async def handle(uow, event, envelope) -> None`."""

    def __call__(self, uow: UnitOfWork, event: Any, envelope: Envelope) -> Awaitable[None]: ...


class BatchHandler(Protocol):
    """`async def handle(uow, events, envelopes) -> None` (`subscribe(..., batch=True)`)."""

    def __call__(
        self, uow: UnitOfWork, events: Sequence[Any], envelopes: Sequence[Envelope]
    ) -> Awaitable[None]: ...


class Preparer(Protocol):
    """`async def prepare(events, envelopes) -> None` (`subscribe(..., prepare=...)`)."""

    def __call__(self, events: Sequence[Any], envelopes: Sequence[Envelope]) -> Awaitable[None]: ...


@dataclass(frozen=True)
class Subscription:
    """One handler of one event type, by one service."""

    event_type: type[Message]
    handler: Handler | BatchHandler
    producer: str
    name: str
    batch: bool = False  # the handler takes a batch of events (see the module docstring)
    prepare: Preparer | None = None  # run before the unit of work (see the module docstring)

    async def handle(
        self, uow: UnitOfWork, events: Sequence[Any], envelopes: Sequence[Envelope]
    ) -> None:
        """Run the handler on these events: once for a batch handler, else one by one."""
        if self.batch:
            await cast(BatchHandler, self.handler)(uow, events, envelopes)
            return
        one = cast(Handler, self.handler)
        for event, envelope in zip(events, envelopes, strict=True):
            await one(uow, event, envelope)

    @property
    def subject(self) -> str:
        """The NATS subject the producer publishes the event type on."""
        return subject_of(self.producer, self.event_type)

    def durable(self, service: str) -> str:
        """The durable consumer's name: `<service>-<name>`."""
        return f"{service}-{self.name}"


_MARK = "__marque_subscription__"


def subscribe(
    event_type: type[Message],
    *,
    producer: str | None = None,
    name: str | None = None,
    batch: bool = False,
    prepare: Preparer | None = None,
) -> Callable[[Any], Any]:
    """Declare `handler` as this service's handler of `event_type`. The producer is the
    domain of the event's proto package unless given; `name` (default the event's name)
    tells two subscriptions to one event type apart; `batch` gives the handler a batch of
    events at a time; `prepare` runs before each batch's unit of work, outside it."""

    def mark(handler: Any) -> Any:
        setattr(
            handler,
            _MARK,
            Subscription(
                event_type,
                handler,
                producer or producer_of(event_type),
                name or event_name(event_type),
                batch,
                prepare,
            ),
        )
        return handler

    return mark


def subscriptions_in(*sources: ModuleType | Callable[..., Any]) -> list[Subscription]:
    """The subscriptions declared by `@subscribe` on these functions or in these modules."""
    found: list[Subscription] = []
    for source in sources:
        candidates: Iterable[Any] = (
            vars(source).values() if isinstance(source, ModuleType) else (source,)
        )
        for obj in candidates:
            sub = getattr(obj, _MARK, None)
            if isinstance(sub, Subscription) and sub not in found:
                found.append(sub)
    return found
