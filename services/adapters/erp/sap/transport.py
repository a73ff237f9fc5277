"""The HTTP transport under the SAP client: kept-alive connections in small pools.

httpcore's connection pool (under httpx) scans all its connections, and for each of them
all of them again, every time a request comes or goes (`_assign_requests_to_connections`;
httpcore 1.0): with 64 connections in one pool that is 4,096 checks per request, and the
pool, not HTTP, became the adapter's cost (5.4 ms CPU per create, ~40 orders/s at 64 in
flight). `ShardedTransport` keeps the same connections in `shards` pools of a few each and
gives each request to the pool with the fewest requests in flight: ~1.2 ms CPU per create.

It is a transport, under ONE `httpx.AsyncClient`: the client's cookie jar (SAP's session
cookie), auth, timeouts and CSRF token stay one for all calls; connections are still kept
alive and reused, never a TCP or TLS set-up per call. The pools share one TLS context (a
context loads the CA bundle: ~60 ms of CPU each).

httpcore also asks `import sniffio` on every request (`current_async_library`); sniffio is
not one of our dependencies, and a failed import walks `sys.path` each time (~0.2 ms, a
fifth of a request's cost). `spare_failed_import` records the absence once, as
`sys.modules[name] = None` (the import system's own "known missing" mark), so the ask
fails at once; where sniffio is installed it is left alone.
"""

from __future__ import annotations

import importlib.util
import math
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

PER_SHARD = 4  # connections per pool: a scan of 4 x 4, not 64 x 64


def spare_failed_import(name: str = "sniffio") -> None:
    """Mark `name` missing in `sys.modules` when it cannot be imported (module docstring)."""
    if name not in sys.modules and importlib.util.find_spec(name) is None:
        sys.modules[name] = None  # type: ignore[assignment]


class _Counted(httpx.AsyncByteStream):
    """A response body that tells its pool when it is closed (the request is done)."""

    def __init__(self, stream: httpx.AsyncByteStream, done: Callable[[], None]) -> None:
        self._stream = stream
        self._done = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._done()


class ShardedTransport(httpx.AsyncBaseTransport):
    """`max_connections` kept-alive connections in pools of `per_shard` (module docstring);
    `verify` (a TLS context, or False) and other keywords go to each pool's
    `httpx.AsyncHTTPTransport`."""

    def __init__(
        self,
        max_connections: int,
        *,
        per_shard: int = PER_SHARD,
        verify: ssl.SSLContext | bool = True,
        **options: Any,
    ) -> None:
        spare_failed_import()
        count = max(1, math.ceil(max_connections / max(1, per_shard)))
        size = math.ceil(max_connections / count)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        if verify is True:
            verify = httpx.create_ssl_context()  # once, for every pool (SSL_CERT_FILE honoured)
        self._shards = [
            httpx.AsyncHTTPTransport(limits=limits, verify=verify, **options) for _ in range(count)
        ]
        self._busy = [0] * count

    @property
    def shards(self) -> int:
        """How many pools."""
        return len(self._shards)

    def in_flight(self) -> int:
        """Requests sent and not yet closed, over all pools."""
        return sum(self._busy)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        i = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[i] += 1
        released = False

        def done() -> None:
            nonlocal released
            if not released:
                released = True
                self._busy[i] -= 1

        try:
            resp = await self._shards[i].handle_async_request(request)
        except BaseException:
            done()
            raise
        assert isinstance(resp.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=resp.status_code,
            headers=resp.headers,
            stream=_Counted(resp.stream, done),
            extensions=resp.extensions,
        )

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
