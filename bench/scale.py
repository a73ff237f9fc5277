"""Costs as data grows (issue 17): the lead service's calls on an empty database and on one
holding N leads, on SQLite and on PostgreSQL, each figure with its ratio to the empty one.

For each back end, two servers, each the real lead service (its events written to the
outbox, no relay) in its own subprocess pinned to core 0 (the client runs on the others),
each on a fresh database loaded through its own ImportLeads, in streams of 100k rows (the
bench.lead_submit rows: 1% bad, 5% repeated mobiles; on PostgreSQL the service analyses the
tables as the streams grow them, as after any import):

- "empty": `--base` leads (1,000: a full page for every filter that matches);
- N leads (`--leads`).

Then each call is measured on one and then the other, `--rounds` times (each figure is the
best round's: on a shared machine the least disturbed); SubmitLead last, since it adds
leads (about 10k per round, to both).

The ListLeads calls are interactive ones, a page of 50 as an OEM: `status=WON` (no lead
is won: the filter matches nothing), `channel=DEALER_WALK_IN` (nothing either: imports
come from other channels) and `channel=AUTOHOME` (a fifth of the leads). Each is driven at
`--list-concurrency` in flight, SubmitLead at `--concurrency`, for `--seconds` after a
warm-up. SubmitLead twice: of new mobiles (a lead created each call), and the merge path,
of mobiles that already have a lead (dedup finds it, the lead gains a touchpoint and is
re-rated): on N, leads drawn at random from the whole load (a returning customer's lead
is anywhere in the tables), on the empty database from its own (the 1,000 and those its
SubmitLeads created); each lead merged into once, in random order (a repeat only once
all are used, counted and printed with the calls' outcomes). Printed: QPS, p50, p99, the
server's CPU per call (what a shared machine's noise disturbs least), and N's QPS and CPU
per call as ratios of the empty database's (CPU as empty / N, so both read "N keeps this
share of the empty database's rate"; the target: >= 0.9, and p99 under 50 ms for the
interactive calls). Loading 1M leads takes about
three minutes per back end on a quiet machine
(six on a busy one).

PostgreSQL runs when `MARQUE_BENCH_POSTGRES_URL` or `MARQUE_TEST_POSTGRES_URL` is set: a
throwaway database is created beside the one named there and dropped afterwards.
Everything listens on loopback, every loop is bounded, the run stops by itself.

    python -m bench.scale [--leads 100000] [--seconds 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import grpc

from bench.harness import bearer_metadata, bench_postgres_url, server_env
from bench.lead_submit import (
    Mobiles,
    Result,
    ServerProcess,
    _pin_client,
    drive,
    import_phase,
    lead_request,
    throwaway_postgres,
)

# The real service, its events written (outbox rows) but not relayed: no NATS needed.
SERVER_KIND = "lead-outbox-only"
# (label, ListLeadsRequest fields): interactive calls, a page each.
LISTS: tuple[tuple[str, dict[str, int]], ...] = (
    ("ListLeads status=WON (none)", {"status": 4}),
    ("ListLeads channel=WALK_IN (none)", {"channel": 5}),
    ("ListLeads channel=AUTOHOME", {"channel": 2}),
)
SUBMIT = "SubmitLead (new mobiles)"
MERGE = "SubmitLead (merge)"
# Loaded leads drawn for the merge path on N (more than rounds x a phase's calls).
MERGE_SAMPLE = 60_000
TARGET_RATIO = 0.9
# Rows per ImportLeads stream: up to ten streams (mobiles 180... to 189...) load N.
STREAM_ROWS = 100_000
MAX_LEADS = 10 * STREAM_ROWS
TARGET_P99_MS = 50.0


async def list_phase(
    label: str, server: ServerProcess, token: str, args: argparse.Namespace, fields: dict[str, int]
) -> Result:
    from marque.lead.v1 import lead_service_pb2, lead_service_pb2_grpc

    md = bearer_metadata(token)
    request = lead_service_pb2.ListLeadsRequest(page_size=50, **cast(Any, fields))
    async with grpc.aio.insecure_channel(server.target) as ch:
        stub = lead_service_pb2_grpc.LeadServiceStub(ch)

        async def call(_n: int) -> Any:
            return await stub.ListLeads(request, metadata=md, timeout=30)

        return await drive(
            label,
            call,
            concurrency=args.list_concurrency,
            warmup=args.warmup,
            seconds=args.seconds,
            server_pid=server.proc.pid,
        )


class Returning:
    """Mobiles that have a lead, each handed out once in random order; once all are used,
    again (the repeats counted: a lead merged twice has one touchpoint more to read)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._todo: list[str] = []
        self._used: list[str] = []
        self._seen: set[str] = set()
        self.handed = 0
        self.repeats = 0
        self.outcomes: Counter[int] = Counter()

    def add(self, mobiles: Iterable[str]) -> None:
        self._todo.extend(mobiles)
        self._rng.shuffle(self._todo)

    def next(self) -> str:
        if not self._todo:
            self._todo, self._used = self._used, []
            self._rng.shuffle(self._todo)
        mobile = self._todo.pop()
        self._used.append(mobile)
        self.handed += 1
        self.repeats += mobile in self._seen
        self._seen.add(mobile)
        return mobile


def imported_mobile(prefix: str, n: int) -> str | None:
    """The mobile of import row `n` (bench.lead_submit.import_rows) when that row created a
    lead: every 20th row repeats an earlier mobile, the 50th of each 100 has no name."""
    if n % 20 == 0 or n % 100 == 50:
        return None
    return f"{prefix}{n - n // 20:08d}"


def loaded_mobiles(rows: int, first_prefix: int, sample: int, rng: random.Random) -> list[str]:
    """Up to `sample` mobiles with a lead among `rows` imported by `load` (streams of
    STREAM_ROWS, prefixes from `first_prefix`), drawn at random from the whole load."""
    picked = rng.sample(range(rows), min(sample, rows))
    found = (
        imported_mobile(str(first_prefix + i // STREAM_ROWS), i % STREAM_ROWS + 1) for i in picked
    )
    return [m for m in found if m is not None]


async def submit_phase(
    label: str,
    server: ServerProcess,
    token: str,
    args: argparse.Namespace,
    mobile: Callable[[], str],
    rid: str,
    outcomes: Counter[int] | None = None,
) -> Result:
    """SubmitLead at `--concurrency` in flight, each call's mobile from `mobile()`, its
    request id `rid-n`; the replies' outcomes counted in `outcomes`."""
    from marque.lead.v1 import lead_service_pb2_grpc

    md = bearer_metadata(token)
    async with grpc.aio.insecure_channel(server.target) as ch:
        stub = lead_service_pb2_grpc.LeadServiceStub(ch)

        async def call(n: int) -> Any:
            req = lead_request(mobile(), n, request_id=f"{rid}-{n}")
            reply = await stub.SubmitLead(req, metadata=md, timeout=10)
            if outcomes is not None:
                outcomes[reply.outcome] += 1
            return reply

        return await drive(
            label,
            call,
            concurrency=args.concurrency,
            warmup=args.warmup,
            seconds=args.seconds,
            server_pid=server.proc.pid,
        )


async def submit_round(
    n: int,
    servers: Sequence[ServerProcess],
    pools: Sequence[Returning],
    token: str,
    args: argparse.Namespace,
    best: list[dict[str, Result]],
) -> None:
    """Round `n`'s SubmitLeads: new mobiles on each server (distinct in every round:
    150-152 and 155-157; the empty database's join its pool), then the merge path."""
    for side, server in enumerate(servers):
        prefix = str(150 + 5 * side + n)
        mobiles = Mobiles(prefix)
        _best(best[side], await submit_phase(SUBMIT, server, token, args, mobiles.next, prefix))
        if side == 0:
            pools[0].add(f"{prefix}{k:08d}" for k in range(1, mobiles.n + 1))
    for side, server in enumerate(servers):
        pool = pools[side]
        r = await submit_phase(MERGE, server, token, args, pool.next, f"m{n}{side}", pool.outcomes)
        _best(best[side], r)


def _print_merges(pools: Sequence[Returning]) -> None:
    from marque.lead.v1 import lead_service_pb2

    for side, pool in zip(("empty", "N"), pools, strict=True):
        total = sum(pool.outcomes.values()) or 1
        shares = ", ".join(
            f"{lead_service_pb2.SubmitOutcome.Name(o).removeprefix('SUBMIT_OUTCOME_').lower()}"
            f" {c / total:.1%}"
            for o, c in sorted(pool.outcomes.items())
        )
        print(f"  merge path on {side}: {pool.handed} calls ({shares}), {pool.repeats} repeats")


def _best(results: dict[str, Result], r: Result) -> None:
    """Keep the round with the highest QPS of each call (the least disturbed)."""
    if r.name not in results or r.qps > results[r.name].qps:
        results[r.name] = r


def _cpu(r: Result) -> str:
    cpu = r.cpu_us_per_call
    return f"{cpu:6.0f}" if cpu is not None else "     -"


def _print_row(label: str, empty: Result, full: Result) -> None:
    ratio = full.qps / empty.qps if empty.qps else float("nan")
    e_cpu, f_cpu = empty.cpu_us_per_call, full.cpu_us_per_call
    cpu_ratio = e_cpu / f_cpu if e_cpu and f_cpu else float("nan")
    p99_ok = label in (SUBMIT, MERGE) or full.pct(0.99) < TARGET_P99_MS
    print(
        f"  {label:<32} {empty.qps:6.0f} QPS p50 {empty.pct(0.5):5.1f} p99 {empty.pct(0.99):5.1f}"
        f" cpu {_cpu(empty)} | {full.qps:6.0f} QPS p50 {full.pct(0.5):5.1f}"
        f" p99 {full.pct(0.99):5.1f} cpu {_cpu(full)} | QPS {ratio:4.2f}x cpu {cpu_ratio:4.2f}x"
        f" {'ok' if min(ratio, cpu_ratio) >= TARGET_RATIO and p99_ok else 'MISSED'}"
        f"  errors {empty.errors}/{full.errors}",
        flush=True,
    )


async def load(
    backend: str, server: ServerProcess, rows: int, token: str, prefixes: Sequence[str]
) -> None:
    """Import `rows` leads through `server`, as a customer would: ImportLeads streams of
    at most STREAM_ROWS, one per prefix of mobiles."""
    t0 = time.perf_counter()
    created = merged = rejected = 0
    for start, prefix in zip(range(0, rows, STREAM_ROWS), prefixes, strict=False):
        n = min(STREAM_ROWS, rows - start)
        summary, _ = await import_phase(server.target, token, n, prefix)
        created, merged = created + summary.created, merged + summary.merged
        rejected += summary.rejected
    secs = time.perf_counter() - t0
    print(
        f"  {backend}: {rows} rows imported in {secs:.1f} s ({rows / secs:.0f} rows/s):"
        f" created {created} merged {merged} rejected {rejected}",
        flush=True,
    )


async def run_backend(
    backend: str,
    base_url: str | None,
    args: argparse.Namespace,
    env: dict[str, str],
    token: str,
    core: int | None,
    tmp: Path,
) -> None:
    """Both servers up (the idle one costs nothing), loaded, then each call measured on
    one and the other in turn, `--rounds` times: the machine's drift hits both alike."""
    with throwaway_postgres(base_url, "scale0") as pg0, throwaway_postgres(base_url, "scale") as pg:
        empty_url = pg0 or f"sqlite+aiosqlite:///{tmp / 'scale0.db'}"
        full_url = pg or f"sqlite+aiosqlite:///{tmp / 'scale.db'}"
        servers: list[ServerProcess] = []
        best: list[dict[str, Result]] = [{}, {}]
        rng = random.Random(17)
        pools = (Returning(1), Returning(2))
        pools[0].add(m for i in range(1, args.base + 1) if (m := imported_mobile("131", i)))
        pools[1].add(loaded_mobiles(args.leads, 180, MERGE_SAMPLE, rng))
        try:
            for url in (empty_url, full_url):
                servers.append(ServerProcess(SERVER_KIND, url, core, env))
            await load(backend, servers[0], args.base, token, ["131"])
            await load(backend, servers[1], args.leads, token, [str(p) for p in range(180, 190)])
            for n in range(args.rounds):
                for label, fields in LISTS:
                    for side, server in enumerate(servers):
                        _best(best[side], await list_phase(label, server, token, args, fields))
                await submit_round(n, servers, pools, token, args, best)
        finally:
            for server in servers:
                server.stop()
    print(
        f"  {'(' + backend + ')':<32} {f'{args.base} leads':^46} | {f'{args.leads} leads':^46}"
        f" | N / empty",
        flush=True,
    )
    for label in best[1]:
        _print_row(label, best[0][label], best[1][label])
    _print_merges(pools)


async def run(args: argparse.Namespace, env: dict[str, str], pg_url: str | None) -> None:
    from mesh.identity import Caller, Kind
    from mesh.keys import load_keys, mint_token

    token = mint_token(Caller(Kind.SERVICE, "bench", service="bench"), keys=load_keys(env))
    multi = (os.cpu_count() or 1) > 1
    core = 0 if multi else None
    if multi:
        _pin_client(core)
    print(
        f"Costs as data grows: lead service pinned to core {core}; ListLeads at"
        f" {args.list_concurrency} in flight, SubmitLead at {args.concurrency},"
        f" {args.seconds:.0f} s after {args.warmup:.1f} s warm-up; latencies in ms,"
        " server CPU in µs per call",
        flush=True,
    )
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if pg_url:
        backends.append(("postgres", pg_url))
    for backend, base_url in backends:
        await run_backend(backend, base_url, args, env, token, core, Path(env["MARQUE_VAR_DIR"]))


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000, help="rows imported (N)")
    parser.add_argument("--base", type=int, default=1_000, help="rows of the 'empty' database")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per call")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per call")
    parser.add_argument("--concurrency", type=int, default=64, help="SubmitLeads in flight")
    parser.add_argument("--list-concurrency", type=int, default=1, help="ListLeads in flight")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (1-3), best")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    if not 0 < args.base < args.leads <= MAX_LEADS:
        parser.error(f"need 0 < --base < --leads <= {MAX_LEADS}")
    if not 1 <= args.rounds <= 3:
        parser.error("--rounds must be 1 to 3")

    pg_url = bench_postgres_url(args.no_postgres)
    with server_env("marque-bench-scale-") as env:
        asyncio.run(run(args, env, pg_url))


if __name__ == "__main__":
    main()
