"""JetStream publishes in batches, acknowledged asynchronously.

nats-py's `publish_async` costs ~120 µs a message here (a future, a semaphore, a JSON
parse into a PubAck dataclass per ack, and ~9 regex checks and translations to encode the
headers); a relay that must publish 10,000 events a second cannot afford it. Here a batch
is published as plain NATS messages whose reply subjects are `<inbox>.<batch>_<n>`, with
their header block encoded once by mesh.events.envelope (`header_block`), and written with
the two steps nats-py's own `publish` takes after encoding (queue the HPUB command, kick the
flusher; nats-py is pinned, and the event tests run this path against the real server).
The server's acks arrive on one subscription; an ack means "stored" unless it carries an
`error` (a duplicate `Nats-Msg-Id` is an ack too: the event is in the stream). `publish`
returns which messages of the batch were acknowledged in time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.protocol.command import hpub_cmd

from mesh.events.link import Link

# A JetStream ack carries `"error"` only when the message was not stored.
_ERROR = b'"error"'


class Publisher:
    """Batched JetStream publishes on a link (one batch at a time)."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._generation = -1
        self._sub: Subscription | None = None
        self._prefix = ""
        self._batch = 0
        self._acked: list[bool] = []
        self.refused: list[bool] = []  # of the last batch: JetStream answered with an error
        self._waiting = 0
        self._done = asyncio.Event()

    async def _ready(self) -> None:
        if self._generation == self._link.generation and self._sub is not None:
            return
        nc = self._link.nc
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._prefix = nc.new_inbox()
        self._sub = await nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)
        self._generation = self._link.generation

    async def publish(
        self,
        messages: Sequence[tuple[str, bytes, bytes]],
        ack_seconds: float,
    ) -> list[bool]:
        """Publish (subject, payload, header block) messages; which were acknowledged
        within `ack_seconds` of the last publish."""
        await self._ready()
        nc = self._link.nc
        self._batch += 1
        self._acked = [False] * len(messages)
        self.refused = [False] * len(messages)
        self._waiting = len(messages)
        self._done.clear()
        stem = f"{self._prefix}.{self._batch}_"
        sent = 0
        try:
            for subject, payload, headers in messages:
                await _publish(nc, subject, f"{stem}{sent}", headers, payload)
                sent += 1
        except Exception:  # disconnected mid-batch: what was sent may still be acked
            self._waiting -= len(messages) - sent
        if self._waiting > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), ack_seconds)
        acked = self._acked
        self._acked = []
        return acked + [False] * (len(messages) - len(acked))

    async def _on_ack(self, msg: Msg) -> None:
        batch, _, index = msg.subject.rpartition(".")[2].partition("_")
        if batch != str(self._batch):
            return  # a late ack of an earlier batch (it counted as failed; republished)
        i = int(index)
        if i >= len(self._acked) or self._acked[i]:
            return
        if msg.data and _ERROR not in msg.data and not (msg.headers or {}).get("Status"):
            self._acked[i] = True
        elif msg.data and _ERROR in msg.data:
            self.refused[i] = True
        self._waiting -= 1
        if self._waiting <= 0:
            self._done.set()

    async def close(self) -> None:
        """Drop the ack subscription."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _publish(nc: Client, subject: str, reply: str, headers: bytes, payload: bytes) -> None:
    """nats-py's `publish` with the header block already encoded."""
    if nc.is_closed:
        raise ConnectionClosedError
    await nc._send_command(hpub_cmd(subject, reply, headers, payload))
    flush = nc._flush_queue
    if flush is not None and flush.empty():
        await nc._flush_pending()
