"""Continuous pulling from a durable JetStream consumer into a queue.

nats-py's `fetch(batch, timeout)` waits for a whole batch or the timeout, which at a low
event rate turns into latency. Here a pull request for up to `batch` deliveries is kept
outstanding (`expires` 5 s, idle heartbeats every second): deliveries go into the queue as
they arrive, and the next request is sent as soon as the previous one has delivered all of
its batch or ended (404/408/409). The queue holds at most about two batches (the next
request waits while it is full), so a slow handler bounds the memory it takes. A request
that falls silent (no delivery nor heartbeat for 3 s: NATS restarted, or the connection
dropped) is replaced; a new connection re-creates the consumer and its inbox subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import api
from nats.js.errors import NotFoundError

from mesh.events.link import Link

log = logging.getLogger(__name__)

PULL_EXPIRES_SECONDS = 5.0
HEARTBEAT_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 5.0


class StreamMissing(RuntimeError):
    """The producer's stream does not exist yet (its relay creates it when it starts)."""

    def __init__(self, stream: str) -> None:
        super().__init__(f"stream {stream} does not exist yet")


class Puller:
    """Keeps deliveries of one durable consumer flowing into `queue`."""

    def __init__(self, link: Link, stream: str, config: api.ConsumerConfig, batch: int) -> None:
        assert config.durable_name
        self._link = link
        self.stream = stream
        self.durable: str = config.durable_name
        self._config = config
        self._batch = batch
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self.room = asyncio.Event()  # the worker sets it when it took deliveries off
        self._sub: NatsSubscription | None = None
        self._prefix = ""
        self._request = 0  # the pull request whose deliveries count
        self._remaining = 0  # deliveries still due on it
        self._request_done = asyncio.Event()
        self._last_heard = 0.0

    async def run(self) -> None:
        """Pull until cancelled, re-creating the consumer on every new connection."""
        generation = -1
        delay = 0.1
        try:
            while True:
                try:
                    if not self._link.connected:
                        await self._link.wait_connected(MAX_BACKOFF_SECONDS)
                        continue
                    if generation != self._link.generation:
                        generation = self._link.generation
                        await self._setup()
                        delay = 0.1
                    while self.queue.qsize() >= self._batch:  # bounded memory: let it drain
                        self.room.clear()
                        await self.room.wait()
                    await self._next_request()
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    generation = -1
                    level = logging.INFO if isinstance(e, StreamMissing) else logging.WARNING
                    log.log(level, "consumer %s: %s; retrying in %.1f s", self.durable, e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        finally:
            sub, self._sub = self._sub, None
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _setup(self) -> None:
        js, nc = self._link.js, self._link.nc
        try:
            await js.add_consumer(self.stream, self._config)
        except NotFoundError:
            raise StreamMissing(self.stream) from None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._prefix = nc.new_inbox()
        self._sub = await nc.subscribe(f"{self._prefix}.*", cb=self._on_message)

    async def _next_request(self) -> None:
        """One pull request for up to `batch` deliveries; returns once they have all come,
        the request ended, or the connection went quiet."""
        self._request += 1
        self._remaining = self._batch
        self._request_done.clear()
        request = {
            "batch": self._batch,
            "expires": int(PULL_EXPIRES_SECONDS * 1e9),
            "idle_heartbeat": int(HEARTBEAT_SECONDS * 1e9),
        }
        self._last_heard = time.monotonic()
        await self._link.nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}",
            json.dumps(request).encode(),
            reply=f"{self._prefix}.{self._request}",
        )
        while not self._request_done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._request_done.wait(), HEARTBEAT_SECONDS)
            if time.monotonic() - self._last_heard > 3 * HEARTBEAT_SECONDS:
                return  # no heartbeat: the request died with its connection or server

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get(api.Header.STATUS) if msg.headers else None
        if status:
            # Status messages come on the request's own reply subject.
            if msg.subject.rpartition(".")[2] == str(self._request):
                self._last_heard = time.monotonic()
                if status != "100":  # 404/408/409: this request is over
                    self._request_done.set()
            return
        # Deliveries keep their stream subject: they count against the open request.
        self._last_heard = time.monotonic()
        self.queue.put_nowait(msg)
        self._remaining -= 1
        if self._remaining <= 0:
            self._request_done.set()
