"""Rows a hot path commits handed to this process's relay from memory, not read back.

The relay's claim is a write transaction of its own: on a busy service, one a committed
batch, it cost more than publishing the events did (measured with the publishes faked out:
the cost of the events stayed the same). A group-committing writer that knows the
aggregates of its events are new (a lead created by this very transaction: nobody else can
have written an event about it yet) writes those rows *born leased* to the relay
(`lease_owner` = the hand-over's owner, `lease_until` = a lease from now, `attempts` = 1, as
a claim would have left them) and, after its commit, hands the rows and their seqs over.
The relay publishes them from memory and marks them sent in its next claim (which it runs
only when one is due: a commit of an ordinary unit of work, the poll, the marks' linger).

Why it is safe:
- Order: an aggregate born in the transaction has no older event anywhere. A later event of
  it written the ordinary way waits behind the born-leased row like behind any other
  relay's lease (the claim's per-aggregate check), until that row is sent.
- Crashes: rows handed to a relay that dies stay pending, leased; when the lease runs out
  any relay claims them, as it would rows a dead relay had claimed.
- Failures: rows the relay could not publish, or holds while NATS is away, are given back
  (the lease cleared) and published by a claim; while that is so the hand-over is closed
  and writers write ordinary rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mesh.events.claims import Claimed

DIRECT_SUFFIX = "/direct"  # the hand-over's lease owner: the relay's name and this


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease a born-leased row is written with."""

    owner: str
    until: dt.datetime


class Handover:
    """The queue between a process's writers and its relay (see the module docstring)."""

    def __init__(self, relay_owner: str, lease: dt.timedelta, wake: Callable[[], None]) -> None:
        self.owner = f"{relay_owner}{DIRECT_SUFFIX}"
        self._lease = lease
        self._wake = wake
        self._rows: list[Claimed] = []
        self.open = False  # the relay takes rows from memory (connected, not failing)

    def lease(self, now: dt.datetime) -> Lease | None:
        """The lease to write born-leased rows with, or None: write ordinary rows."""
        return Lease(self.owner, now + self._lease) if self.open else None

    def give(self, rows: Sequence[Mapping[str, Any]], seqs: Sequence[int]) -> int:
        """After the commit: the committed rows and their seqs (in the same order); the
        relay takes the born-leased ones. Returns how many it took."""
        if len(rows) != len(seqs):
            raise ValueError(f"{len(rows)} rows but {len(seqs)} seqs")
        taken = [
            Claimed.of_row(row, seq)
            for row, seq in zip(rows, seqs, strict=True)
            if row.get("lease_owner") == self.owner
        ]
        if taken:
            self._rows.extend(taken)
            self._wake()
        return len(taken)

    def take(self, limit: int) -> list[Claimed]:
        """Up to `limit` of the rows handed over, oldest first."""
        rows, self._rows = self._rows[:limit], self._rows[limit:]
        return rows

    def put_back(self, rows: list[Claimed]) -> None:
        """Rows taken and not published after all (the relay was stopped meanwhile)."""
        self._rows[:0] = rows

    def __len__(self) -> int:
        return len(self._rows)
