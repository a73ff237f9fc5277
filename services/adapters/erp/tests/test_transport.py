"""The SAP client's transport (sap/transport.py) over real HTTP against the simulator:
requests spread over the small pools, counted until their bodies close, failures too."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest

from services.adapters.erp.sap.transport import ShardedTransport, spare_failed_import
from services.adapters.erp.tests.helpers import Sap


async def test_calls_in_flight_spread_over_the_pools_and_are_released(sap: Sap) -> None:
    sap.sim.knobs.latency_ms = 200
    transport = ShardedTransport(32, per_shard=4)
    assert transport.shards == 8
    seen: list[int] = []
    async with httpx.AsyncClient(transport=transport, auth=("MARQUE", "marque")) as http:

        async def probe() -> None:
            await asyncio.sleep(0.1)
            seen.append(transport.in_flight())
            seen.append(max(transport._busy))

        url = sap.config.sap_url + "/"
        answers, _ = await asyncio.gather(
            asyncio.gather(*(http.get(url) for _ in range(32))), probe()
        )
        assert {a.status_code for a in answers} == {200}
        assert seen == [32, 4]  # all 32 in flight, 4 per pool: none queued behind another
        assert transport.in_flight() == 0
        with pytest.raises(httpx.ConnectError):
            await http.get("http://127.0.0.1:9/")  # nothing listens: released all the same
        assert transport.in_flight() == 0


def test_a_missing_module_is_marked_once_and_a_present_one_left_alone() -> None:
    spare_failed_import("marque_no_such_module")
    assert "marque_no_such_module" in sys.modules
    with pytest.raises(ImportError):
        import marque_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    del sys.modules["marque_no_such_module"]
    spare_failed_import("json")
    assert sys.modules["json"] is not None
