"""Consumers: a durable JetStream pull consumer per (service, subscription), whose handler
commits together with the event's id in the service's inbox, so an effect happens once.

A service declares its handlers with `@subscribe(EventType)`:

    @subscribe(lead_events_pb2.LeadWon)
    async def on_lead_won(uow: UnitOfWork, event: LeadWon, envelope: Envelope) -> None:
        ...  # reads and writes on uow.conn; may uow.emit(...) events of its own

The consumer of a subscription is named `<service>-<EventName>` (the durable name) and
filters its producer's stream on `marque.<producer>.<EventName>`. It keeps pull requests
outstanding, so deliveries arrive as they are published; it takes whatever has arrived (up
to `batch`) and handles it in ONE unit of work: the inbox is read for the batch's ids, each
new event's handler runs, the ids are recorded, one commit, then every delivery is acked
(a per-event handler too: its events share the batch's transaction and commit).
A handler that raises makes the batch roll back and run again in ONE unit of work with each
event's handler in a savepoint of its own (`UnitOfWork.savepoint`): a handler that raises
again rolls back to its savepoint only (its writes and emitted events undone, its id not
recorded), the others commit together, so only the failing event fails (should that unit
of work fail as a whole, each event gets a transaction of its own): it is nak'd with a
growing delay, and once it has been
delivered `max_deliver` times it is recorded as a dead letter (payload, headers, error)
and terminated, so the events behind it flow. A handler that raises
`mesh.errors.Unavailable` (a backend it must reach is down, or its breaker refuses) is
waiting, not failing: the event is nak'd with the same growing delay (at most a minute)
however often, and never becomes a dead letter, so an outage delays events but loses none.
An event that is not one (bad headers, undecodable payload) is a dead letter at once.
A subscription's `prepare` (a slow call outside the database, subscriptions.py) runs before
the batch's unit of work and outside it; if it raises, the batch fails as a handler would.

A consumer killed mid-handler commits nothing and acks nothing: JetStream redelivers after
`ack_wait`, and the inbox makes the second delivery the only effect. The events of one
aggregate are handled in order while nothing fails and one replica consumes; a retried
event is handled after those behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js import api
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mesh.db import Database
from mesh.errors import Unavailable
from mesh.events import metrics, spans
from mesh.events.envelope import Envelope, EnvelopeError, decode, stream_name, type_of
from mesh.events.inbox import Inbox, error_text
from mesh.events.link import Link
from mesh.events.outbox import Outbox, utc_now
from mesh.events.pull import Puller
from mesh.events.settings import EventSettings
from mesh.events.subscriptions import Subscription
from mesh.unit_of_work import UnitOfWork, transaction

log = logging.getLogger(__name__)

DEFAULT_BATCH = 256


@dataclass(slots=True)
class _Item:
    msg: Msg | None
    envelope: Envelope
    event: Message
    delivered: int
    headers: dict[str, str] = field(default_factory=dict)
    payload: bytes = b""


class Consumer:
    """Runs one subscription of one service (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        inbox: Inbox,
        link: Link,
        subscription: Subscription,
        *,
        service: str,
        outbox: Outbox | None = None,
        settings: EventSettings | None = None,
        batch: int = DEFAULT_BATCH,
        retry_base: float = 1.0,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._db = db
        self._inbox = inbox
        self._link = link
        self.subscription = subscription
        self.service = service
        self._outbox = outbox
        self._settings = settings or EventSettings()
        self._batch = batch
        self._retry_base = retry_base
        self._tracer = tracer or trace.get_tracer("mesh.events")
        self.durable = subscription.durable(service)
        self.stream = stream_name(subscription.producer)
        self._type = type_of(subscription.event_type)
        self._puller = Puller(link, self.stream, self.consumer_config(), batch)
        self._tasks: list[asyncio.Task[None]] = []
        self._counters = {
            o: metrics.events_consumed_total.labels(self._type, o) for o in metrics.OUTCOMES
        }
        self._lag = metrics.consumer_pending.labels(self.durable)
        self._latency = metrics.delivery_seconds.labels(self._type)
        self.handled = 0  # effects committed, for tests and benchmarks

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Consume in the background until `stop`."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._puller.run(), name=f"pull-{self.durable}"),
                loop.create_task(self._work(), name=f"handle-{self.durable}"),
            ]

    async def stop(self) -> None:
        """Stop pulling; a batch being handled is rolled back and redelivered later."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def consumer_config(self) -> api.ConsumerConfig:
        """The durable consumer's configuration."""
        return api.ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            filter_subject=self.subscription.subject,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._settings.ack_wait_seconds,
            max_deliver=-1,  # dead letters are ours: kept in the inbox, not dropped
            max_ack_pending=max(1000, 4 * self._batch),
            replay_policy=api.ReplayPolicy.INSTANT,
        )

    # ------------------------------------------------------------------------ handling

    async def _work(self) -> None:
        while True:
            queue = self._puller.queue
            batch = [await queue.get()]
            while len(batch) < self._batch and not queue.empty():
                batch.append(queue.get_nowait())
            self._puller.room.set()
            try:
                await self.handle_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # the deliveries stay unacked: redelivered after ack_wait
                log.exception("consumer %s: a batch of %d failed", self.durable, len(batch))
                await asyncio.sleep(0.5)

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Handle deliveries in one unit of work (one by one if a handler fails)."""
        items: list[_Item] = []
        for msg in msgs:
            item = self._item(msg)
            if item is not None:
                items.append(item)
        if msgs:
            with contextlib.suppress(Exception):
                self._lag.set(msgs[-1].metadata.num_pending)
        if not items:
            return
        try:
            await self._prepare(items)
        except Exception as e:
            for item in items:
                await self._failed(item, e)
            return
        try:
            outcomes = await self._transaction(items)
        except Exception as e:
            if len(items) == 1:
                await self._failed(items[0], e)
                return
            try:  # again, each handler in a savepoint: the failing ones fail alone
                outcomes = await self._transaction(items, isolate=True)
            except Exception:  # the unit of work itself failed: a transaction per event
                outcomes = []
                for item in items:
                    try:
                        outcomes += await self._transaction([item])
                    except Exception as error:
                        outcomes.append(error)
        await self._outcomes(items, outcomes)

    async def _outcomes(self, items: Sequence[_Item], outcomes: Sequence[str | Exception]) -> None:
        """Ack the committed and duplicate deliveries; nak (or dead-letter) the failed."""
        ok = [(i, o) for i, o in zip(items, outcomes, strict=True) if isinstance(o, str)]
        if ok:
            await self._done([i for i, _ in ok], [o for _, o in ok])
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, Exception):
                await self._failed(item, outcome)

    def _item(self, msg: Msg) -> _Item | None:
        headers = dict(msg.headers or {})
        delivered = _delivered(msg)
        try:
            envelope = Envelope.from_headers(headers)
            if envelope.type != self._type:
                raise EnvelopeError(f"ce-type {envelope.type!r} is not {self._type}")
            event = decode(self.subscription.event_type, msg.data)
        except Exception as e:  # not an event of ours: retrying cannot help
            asyncio.get_running_loop().create_task(self._undecodable(msg, headers, e))
            return None
        return _Item(msg, envelope, event, delivered, headers, msg.data)

    async def _prepare(self, items: Sequence[_Item]) -> None:
        """The subscription's `prepare`, if any, outside any transaction (subscriptions.py
        says why); it sets each event's trace itself where it calls out."""
        if self.subscription.prepare is not None:
            await self.subscription.prepare([i.event for i in items], [i.envelope for i in items])

    async def _transaction(
        self, items: Sequence[_Item], *, isolate: bool = False
    ) -> list[str | Exception]:
        """One unit of work for `items`: "duplicate" or "handled" per item, or (`isolate`:
        each handler in its own savepoint) the error of a handler that raised."""

        async def work(uow: UnitOfWork) -> list[str | Exception]:
            seen = await self._inbox.seen(uow.conn, self.durable, [i.envelope.id for i in items])
            outcomes: list[str | Exception] = []
            fresh: list[_Item] = []
            for item in items:
                if item.envelope.id in seen:
                    outcomes.append("duplicate")
                    continue
                seen.add(item.envelope.id)
                fresh.append(item)
                outcomes.append("handled")
            failed: dict[int, Exception] = {}
            if isolate:
                for item in fresh:
                    try:
                        async with uow.savepoint():
                            await self._call(uow, [item])
                    except Exception as e:
                        failed[id(item)] = e
            elif self.subscription.batch:
                if fresh:
                    await self._call(uow, fresh)
            else:
                for item in fresh:
                    await self._call(uow, [item])
            now = utc_now()
            rows = [
                Inbox.handled_row(self.durable, i.envelope, now=now, attempts=i.delivered)
                for i in fresh
                if id(i) not in failed
            ]
            await self._inbox.record(uow.conn, rows)
            pairs = zip(items, outcomes, strict=True)
            return [failed.get(id(i), o) if o == "handled" else o for i, o in pairs]

        return await transaction(self._db, work, outbox=self._outbox)

    async def _call(self, uow: UnitOfWork, items: Sequence[_Item]) -> None:
        """The handler on one event (a batch handler: on the batch), with the (first)
        event's trace current (a CONSUMER span if sampled)."""
        env = items[0].envelope
        parent = spans.remote_context(env.traceparent, env.tracestate)
        span = spans.start(
            self._tracer,
            f"process {self.subscription.subject}",
            SpanKind.CONSUMER,
            parent,
            spans.messaging_attributes(self.subscription.subject, env.id, "process"),
        )
        token = None
        if span is not None:
            token = otel_context.attach(trace.set_span_in_context(span))
        elif parent is not None:
            token = otel_context.attach(spans.parent_of(parent))
        try:
            await self.subscription.handle(
                uow, [i.event for i in items], [i.envelope for i in items]
            )
        except BaseException as e:
            if span is not None:
                span.record_exception(e)
                span.set_status(Status(StatusCode.ERROR, type(e).__name__))
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
            if span is not None:
                span.end()

    async def _done(self, items: Sequence[_Item], outcomes: Sequence[str]) -> None:
        now = utc_now()
        for item, outcome in zip(items, outcomes, strict=True):
            self._counters[outcome].inc()
            if outcome == "handled":
                self.handled += 1
                self._latency.observe(max(0.0, (now - item.envelope.time).total_seconds()))
            if item.msg is not None:
                with contextlib.suppress(Exception):  # lost ack: redelivered, a duplicate
                    await item.msg.ack()

    async def _failed(self, item: _Item, error: Exception) -> None:
        # A backend that is down: retried until it is back, never a dead letter.
        waits = isinstance(error, Unavailable)
        if waits or item.delivered < self._settings.max_deliver:
            self._counters["retried"].inc()
            delay = min(self._retry_base * 2 ** (item.delivered - 1), 60.0)
            log.warning(
                "consumer %s: handling event %s failed (delivery %d of %d): %s",
                self.durable,
                item.envelope.id,
                item.delivered,
                self._settings.max_deliver,
                type(error).__name__,
            )
            if item.msg is not None:
                with contextlib.suppress(Exception):
                    await item.msg.nak(delay=delay)
            return
        await self._dead_letter(item.msg, item.envelope, item.headers, item.payload, error)

    async def _undecodable(self, msg: Msg, headers: dict[str, str], error: Exception) -> None:
        envelope = Envelope(
            id=headers.get("ce-id") or headers.get("Nats-Msg-Id") or f"seq-{_seq(msg)}",
            source=headers.get("ce-source", ""),
            type=headers.get("ce-type", self._type),
            subject=headers.get("ce-subject", ""),
            time=utc_now(),
        )
        try:
            await self._dead_letter(msg, envelope, headers, msg.data, error)
        except Exception:
            log.exception("consumer %s: a dead letter could not be kept", self.durable)

    async def _dead_letter(
        self,
        msg: Msg | None,
        envelope: Envelope,
        headers: dict[str, str],
        payload: bytes,
        error: Exception,
    ) -> None:
        row = Inbox.dead_letter_row(
            self.durable,
            envelope,
            now=utc_now(),
            attempts=_delivered(msg) if msg is not None else 1,
            error=error_text(error),
            payload=payload,
            headers=headers,
        )

        async def keep(uow: UnitOfWork) -> None:
            if not await self._inbox.seen(uow.conn, self.durable, [row["event_id"]]):
                await self._inbox.record(uow.conn, [row])

        await transaction(self._db, keep)
        self._counters["dead_letter"].inc()
        log.error(
            "consumer %s: event %s is a dead letter after %d deliveries: %s "
            "(python -m mesh.events.replay %s --consumer %s replays it)",
            self.durable,
            envelope.id,
            row["attempts"],
            row["error"],
            self.service,
            self.durable,
        )
        if msg is not None:
            with contextlib.suppress(Exception):
                await msg.term()


def _delivered(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


def _seq(msg: Msg) -> int:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return 0
