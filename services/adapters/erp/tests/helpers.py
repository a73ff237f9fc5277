"""The SAP simulator on a free port, a configuration pointing at it, a Marque order."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from mesh.breaker import AdaptiveBreaker
from services.adapters.erp.domain.config import SERVICE_PATH, ErpConfig
from services.adapters.erp.domain.model import OrderRequest
from services.adapters.erp.domain.orders import order_request
from services.adapters.erp.sap.backend import SapBackend
from services.adapters.erp.sap.client import ODataClient
from services.adapters.erp.simulator import SapSimulator, bound_port, serve


class Clock:
    """A clock the breaker's window follows."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Moment:
    """The engine's clock (claims' leases, record times), moved by a test, not slept on."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Sap:
    """A running simulator and the configuration of a client of it."""

    sim: SapSimulator
    config: ErpConfig
    root: str

    def backend(
        self,
        *,
        clock: Clock | None = None,
        random: Callable[[], float] = lambda: 0.0,
        **config: Any,
    ) -> SapBackend:
        """A real SAP backend (client and breaker) against the simulator; the breaker's
        `random` 0.0 rejects every call while its reject probability is above 0."""
        cfg = replace(self.config, **config)
        breaker = AdaptiveBreaker(
            "sap-test", clock=clock or Clock(), random=random, export_metrics=False
        )
        return SapBackend(
            ODataClient(cfg), breaker, attempts=cfg.create_attempts, backoff_seconds=0.01
        )


@asynccontextmanager
async def running_sap() -> AsyncIterator[Sap]:
    sim = SapSimulator()
    runner = await serve(sim, "127.0.0.1", 0)
    root = f"http://127.0.0.1:{bound_port(runner)}"
    config = ErpConfig(sap_url=root + SERVICE_PATH, timeout_seconds=2.0, start_simulator=False)
    try:
        yield Sap(sim, config, root)
    finally:
        await runner.cleanup()


def an_order(order_id: str = "ord_1", options: tuple[str, ...] = ("PANO",)) -> OrderRequest:
    """A car at 259,900.00 CNY with its options."""
    return order_request(
        ErpConfig(),
        order_id=order_id,
        dealer_id="D1",
        model_code="MZ-SEDAN",
        trim_code="LUX",
        option_codes=options,
        price=Decimal("259900.00"),
        currency="CNY",
    )
