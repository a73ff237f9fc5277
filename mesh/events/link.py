"""One process's connection to NATS, shared by its relay and its consumers.

The service starts whether NATS is up or not (requests keep succeeding; events wait in the
outbox): `Link.start()` connects in the background, retrying with a capped backoff, and
nats-py reconnects by itself after that. `connected` says whether publishes and fetches can
work right now; `generation` grows at every (re)connection, so a consumer knows its pull
requests died with the old connection and sends new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

log = logging.getLogger(__name__)

RECONNECT_WAIT_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 5.0
# JetStream publishes a relay may have in flight (nats-py's cap on publish_async).
MAX_PENDING_PUBLISHES = 20_000


class Link:
    """A NATS connection that (re)connects by itself (see the module docstring)."""

    def __init__(self, url: str, *, name: str, creds: str = "") -> None:
        self.servers = [s.strip() for s in url.split(",") if s.strip()]
        if not self.servers:
            raise ValueError("no NATS server given")
        self.name = name
        self._creds = creds
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self.generation = 0
        self._last_error_log = 0.0
        self._closing = False

    @property
    def connected(self) -> bool:
        """True while the connection is up (not connecting, reconnecting or closed)."""
        return self._nc is not None and self._nc.is_connected

    @property
    def nc(self) -> Client:
        """The NATS client (RuntimeError before the first connection)."""
        if self._nc is None:
            raise RuntimeError("NATS is not connected yet")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the connection."""
        if self._js is None:
            raise RuntimeError("NATS is not connected yet")
        return self._js

    def start(self) -> None:
        """Connect in the background (returns at once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._connect(), name=f"nats-connect-{self.name}"
            )

    async def wait_connected(self, seconds: float | None = None) -> bool:
        """Wait until connected; False if `seconds` pass first."""
        if self.connected:
            return True
        try:
            await asyncio.wait_for(self._up.wait(), seconds)
        except TimeoutError:
            return False
        return self.connected

    async def close(self) -> None:
        """Stop connecting; flush and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        nc, self._nc, self._js = self._nc, None, None
        self._up.clear()
        self._closing = True
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5.0)

    async def _connect(self) -> None:
        delay = 0.1
        while True:
            try:
                nc = await nats.connect(
                    servers=self.servers,
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=RECONNECT_WAIT_SECONDS,
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    user_credentials=self._creds or None,
                    # Our subjects are made by mesh.events.envelope (checked there).
                    skip_subject_validation=True,
                )
            except Exception as e:
                self._log_error("cannot connect to NATS (%s); retrying", type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            self._nc = nc
            self._js = nc.jetstream(publish_async_max_pending=MAX_PENDING_PUBLISHES)
            self.generation += 1
            self._up.set()
            log.info(
                "connected to NATS at %s", nc.connected_url.netloc if nc.connected_url else "?"
            )
            return

    def _log_error(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 10.0:  # not a line per retry during an outage
            self._last_error_log = now
            log.warning(message, *args)

    async def _on_error(self, e: Exception) -> None:
        self._log_error("NATS connection error: %s", type(e).__name__)

    async def _on_disconnected(self) -> None:
        self._up.clear()
        if not self._closing:
            self._log_error("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        self.generation += 1
        self._up.set()
        log.info("reconnected to NATS")
