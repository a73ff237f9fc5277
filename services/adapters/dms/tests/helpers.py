"""The DMS simulator on a free port, a configuration pointing at it, signed posts, the
shared STAR samples (../shared/data/dms beside the checkout)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from mesh.breaker import AdaptiveBreaker
from services.adapters.dms.domain import signature
from services.adapters.dms.domain.config import DmsConfig
from services.adapters.dms.simulator import DmsSimulator, bound_port, serve
from services.adapters.dms.star.client import StarClient

SAMPLES = Path(__file__).resolve().parents[5] / "shared" / "data" / "dms"
SECRETS = {"D1": "d1-test-secret-0123456789", "D2": "d2-test-secret-0123456789"}
# A VIN with its check digit (mesh/vin.py); the shared samples' VINs have wrong ones.
VIN = "LSVAU218XN2183294"


def sample(name: str) -> bytes:
    """A shared STAR sample's bytes (the test is skipped when the folder is absent)."""
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is not beside the checkout")
    return path.read_bytes()


class Clock:
    """A clock the breaker's window follows."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Dms:
    """A running simulator and a configuration whose dealers all point at it."""

    sim: DmsSimulator
    config: DmsConfig
    root: str

    def client(
        self,
        *,
        clock: Clock | None = None,
        random: Callable[[], float] = lambda: 0.0,
        **config: Any,
    ) -> StarClient:
        """A real STAR client (breakers with a test clock, never exported); the breakers'
        `random` 0.0 rejects every call while their reject probability is above 0."""
        cfg = replace(self.config, **config)
        at = clock or Clock()
        return StarClient(
            cfg,
            breaker=lambda d: AdaptiveBreaker(
                f"dms-test/{d}", clock=at, random=random, export_metrics=False
            ),
        )


@asynccontextmanager
async def running_dms() -> AsyncIterator[Dms]:
    sim = DmsSimulator(secrets=dict(SECRETS))
    runner = await serve(sim, "127.0.0.1", 0)
    root = f"http://127.0.0.1:{bound_port(runner)}"
    config = DmsConfig(
        http_port=0,
        dealer_secrets=dict(SECRETS),
        default_url=root + "/star/v1",
        timeout_seconds=2.0,
        start_simulator=False,
    )
    try:
        yield Dms(sim, config, root)
    finally:
        await runner.cleanup()


def signed(dealer: str, body: bytes, *, at: float | None = None) -> dict[str, str]:
    """The headers of `body` signed by the dealer now (or at `at`)."""
    ts = int(time.time() if at is None else at)
    return {
        "Content-Type": "application/json",
        **signature.headers(SECRETS[dealer].encode(), ts, body),
    }


def body_of(doc: dict[str, Any]) -> bytes:
    """A document's JSON bytes."""
    return json.dumps(doc).encode()


async def post(
    http: httpx.AsyncClient,
    base: str,
    dealer: str,
    collection: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a document to the adapter's inbound endpoint, signed unless `headers` say."""
    url = f"{base}/star/v1/dealers/{dealer}/{collection}"
    return await http.post(url, content=body, headers=headers or signed(dealer, body))


def status_event(ro: str = "RO-1", n: int = 1, stage: str = "VEHICLE_RECEIVED") -> dict[str, Any]:
    """A repair status event."""
    return {
        "repair_order_id": ro,
        "repair_status_event_id": f"{ro}-E{n}",
        "repair_stage_type": stage,
        "repair_status_type": "ACTIVE",
        "occurrence_date_time": f"2026-12-03T09:{n:02d}:00Z",
    }


def rdr(rdr_id: str = "RDR-1", vin: str = VIN, order_id: str = "") -> dict[str, Any]:
    """A retail delivery report."""
    doc: dict[str, Any] = {
        "retail_delivery_report_id": rdr_id,
        "oem_rdr_status_type": "TRANSMITTED",
        "purchase_type": "RETAIL",
        "occurrence_date_time": "2026-12-03T10:30:00+08:00",
        "vehicle": {"vin": vin},
    }
    if order_id:
        doc["sales_transaction_number"] = order_id
    return doc
