"""The admission decision of mesh/shedding.py on plain numbers: calls admitted and not yet
answered, at most a cap, and below it an adaptive limit set every 100 ms from the process's
CPU, its loop lag and how fast calls are answered (go-zero's CPU rule and CoDel's; the
reasoning is in mesh/shedding.py's docstring).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

# The decision's interval (CoDel's 100 ms), and the loop-lag sentinel's period within it.
INTERVAL = 0.1
SENTINEL = 0.005
# Saturated: the process used this share of the CPU it may use (grpc's C core parses and
# answers on its own threads, so an idle event loop does not mean an idle core), or the
# loop never idled (every sentinel sample later than BUSY_LAG). A saturated server queues
# calls before look-up, in the core or the socket, where no count of calls sees them: so
# a saturated server with calls in flight admits fewer, keeping CPU for the rest, shed
# replies included (go-zero's CPU rule, with grpc's costly sheds in the budget).
BUSY_CPU = 0.9
BUSY_LAG = 0.001
# While saturated the limit shrinks by this factor per interval (a shed reply costs CPU
# too: admitted work must leave it some); while not saturated it grows back by an eighth.
DECREASE = 0.9
# The adaptive limit never goes below this many calls in flight.
MIN_LIMIT = 4
# A saturated CPU alone is no overload: a process answering a steady 64 calls in flight in
# 30 ms each is busy, and working. It is overloaded when it holds (or sheds) more calls than
# it answers within the target (Little's law: throughput x target), and never below this
# many; only then does the CPU rule bring the limit down.
BUSY_MIN_IN_FLIGHT = 64

# Why a call is shed.
CONCURRENCY = "concurrency"  # the hard cap, MARQUE_MAX_CONCURRENCY
QUEUE_DELAY = "queue_delay"  # the adaptive limit below it


def available_cores() -> float:
    """The CPUs this process may use: its affinity, bounded by a cgroup v2 quota."""
    cores = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1.0
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    return max(cores, 0.01)


class Admission:
    """The admission decision over plain numbers; the caller passes `now`, and `cpu` gives
    the process's CPU seconds (both injected in tests).

    `admit(now)` returns None and counts the call in flight, or the reason to shed it;
    `done(started, now)` is called once for every admitted call when its reply is sent;
    `note_lag(lag)` gets the loop-lag sentinel's samples. Every `interval` the limit is set:
    - saturated (see BUSY_CPU) with more calls than it answers within `target` (and more
      than BUSY_MIN_IN_FLIGHT) in flight or shed: x `DECREASE` (from the calls in flight),
      CPU for the shed replies and the calls waiting unseen;
    - not saturated: back up by an eighth (to `cap`; at once after a quiet second);
    - even the fastest call answered took longer than `target` in the server (CoDel): at
      most throughput x target, by Little's law a wait of about the target.
    """

    __slots__ = (
        "_count",
        "_cpu_at",
        "_min",
        "_min_lag",
        "_next_roll",
        "_rate",
        "_rolled",
        "_shed",
        "cap",
        "cores",
        "cpu",
        "floor",
        "in_flight",
        "interval",
        "limit",
        "target",
    )

    def __init__(
        self,
        cap: int,
        target: float,
        now: float,
        *,
        cpu: Callable[[], float] = time.process_time,
        cores: float = 1.0,
        floor: int = MIN_LIMIT,
        interval: float = INTERVAL,
    ) -> None:
        self.cap = cap
        self.target = target  # <= 0: the cap only
        self.cpu, self.cores = cpu, cores
        self.floor = min(floor, cap)
        self.interval = interval
        self.in_flight = 0
        self.limit = cap
        self._rate = 0.0  # calls answered per second, smoothed over intervals
        self._count = 0  # calls answered in this interval
        self._min = math.inf  # their shortest time in the server
        self._min_lag = math.inf  # the sentinel's smallest lateness in this interval
        self._shed = 0  # calls shed in this interval
        self._rolled = now
        self._cpu_at = cpu()
        self._next_roll = now + interval

    def admit(self, now: float) -> str | None:
        """None (admitted, counted in flight) or why the call is shed."""
        if now >= self._next_roll:
            self._roll(now)
        if self.in_flight >= self.limit:
            self._shed += 1
            return QUEUE_DELAY if self.limit < self.cap else CONCURRENCY
        self.in_flight += 1
        return None

    def done(self, started: float, now: float) -> None:
        """An admitted call has been answered (or cancelled)."""
        self.in_flight -= 1
        self._count += 1
        self._min = min(self._min, now - started)

    def note_lag(self, lag: float) -> None:
        """How late the loop ran the sentinel (seconds)."""
        self._min_lag = min(self._min_lag, lag)

    def _roll(self, now: float) -> None:
        elapsed = now - self._rolled
        cpu = self.cpu()
        busy = (cpu - self._cpu_at) / (elapsed * self.cores) if elapsed > 0 else 0.0
        rate = self._count / elapsed if elapsed > 0 else 0.0
        self._rate = rate if self._rate == 0.0 else (self._rate + rate) / 2
        limit = self.limit
        if self.target > 0:
            saturated = busy >= BUSY_CPU or self._min_lag > BUSY_LAG
            ample = max(BUSY_MIN_IN_FLIGHT, math.ceil(self._rate * self.target))
            if saturated and self.in_flight + self._shed > ample:
                limit = int(min(limit, self.in_flight) * DECREASE)
            elif not saturated:
                limit = self.cap if elapsed > 10 * self.interval else limit + limit // 8 + 1
            if self._count and self._min > self.target:
                # Not below `ample` either: one slow interval of a quiet server (a cold
                # cache, a checkpoint) is no standing queue of calls.
                limit = min(limit, ample)
        self.limit = max(self.floor, min(self.cap, limit))
        self._count = self._shed = 0
        self._min = self._min_lag = math.inf
        self._rolled, self._cpu_at = now, cpu
        self._next_roll = now + self.interval
