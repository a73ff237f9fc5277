"""What a service's event handlers need from its lifespan (an adapter's engine with its HTTP
client). The consumers start before the lifespan has built it, so a handler waits for it a
while, then raises the service's "not ready" error (Unavailable: the event is retried, never
a dead letter)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LateBound(Generic[T]):
    """One value, bound by the lifespan, awaited by the handlers."""

    def __init__(
        self, not_ready: Callable[[], Exception], *, wait_seconds: float = 5.0, step: float = 0.05
    ) -> None:
        self._not_ready = not_ready
        self._wait_seconds = wait_seconds
        self._step = step
        self._value: T | None = None

    def bind(self, value: T | None) -> None:
        """The value the handlers use (None: none, while the service stops)."""
        self._value = value

    @property
    def current(self) -> T | None:
        """The bound value, if any, without waiting."""
        return self._value

    async def get(self) -> T:
        """The bound value, waiting up to `wait_seconds` for the lifespan to bind it."""
        for _ in range(max(1, int(self._wait_seconds / self._step))):
            if self._value is not None:
                return self._value
            await asyncio.sleep(self._step)
        if self._value is not None:
            return self._value
        raise self._not_ready()
