"""Sales' events against a real nats-server (tests/natsfixture.py), on SQLite and
PostgreSQL: lead's LeadCreated and LeadAssigned open the dealer's opportunity once, however
often they come (a redelivered event, and a second event of the same assignment), and move
it when the lead is reassigned; what sales emits is relayed to its stream."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
import sqlalchemy as sa
from marque.lead.v1 import lead_events_pb2
from nats.js import api
from nats.js.errors import BadRequestError

from mesh.events.envelope import Envelope, new_event_id, source_of, stream_name, type_of
from services.sales.events import EVENTS
from services.sales.store.tables import inbox, opportunities
from services.sales.tests.harness import Harness, serve
from tests.natsfixture import nats_server, nats_url

__all__ = ["nats_server", "nats_url"]
T0 = dt.datetime(2026, 3, 2, 1, tzinfo=dt.UTC)


@pytest.fixture
async def served(database_url: str, nats_url: str) -> AsyncIterator[Harness]:
    async with serve(database_url, nats_url=nats_url) as h:
        yield h


async def _publish(
    url: str, event: Any, subject_id: str, *, event_id: str = "", msg_id: str = ""
) -> str:
    """Publish `event` as lead's relay would (CloudEvents headers, Nats-Msg-Id)."""
    event_id = event_id or new_event_id()
    envelope = Envelope(event_id, source_of("lead"), type_of(event), subject_id, T0)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        with contextlib.suppress(BadRequestError):  # there already
            await js.add_stream(
                api.StreamConfig(name=stream_name("lead"), subjects=["marque.lead.>"])
            )
        headers = {**envelope.headers(), "Nats-Msg-Id": msg_id or event_id}
        name = type(event).DESCRIPTOR.name
        await js.publish(f"marque.lead.{name}", event.SerializeToString(), headers=headers)
    finally:
        await nc.close()
    return event_id


async def _rows(h: Harness, query: Any) -> list[Any]:
    async with h.db.engine.connect() as conn:
        return list(await conn.execute(query))


async def _eventually(probe: Any, seconds: float = 20) -> Any:
    for _ in range(int(seconds * 10)):
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("not in time")


async def test_a_duplicated_lead_assigned_opens_one_opportunity(
    served: Harness, nats_url: str
) -> None:
    lead_id = f"lead_{new_event_id()[:8]}"
    assigned = lead_events_pb2.LeadAssigned(lead_id=lead_id, dealer_id="D1")
    first = await _publish(nats_url, assigned, lead_id)
    await _publish(nats_url, assigned, lead_id, event_id=first, msg_id="again")  # redelivered
    await _publish(nats_url, assigned, lead_id)  # the same assignment, another event
    mine = sa.select(opportunities).where(opportunities.c.lead_id == lead_id)

    async def handled() -> bool:
        rows = await _rows(served, sa.select(inbox).where(inbox.c.outcome == "handled"))
        return len([r for r in rows if r.aggregate == lead_id]) == 2

    await _eventually(handled)
    rows = await _rows(served, mine)
    assert [(r.dealer_id, r.stage) for r in rows] == [("D1", "PROSPECT")]
    moved = lead_events_pb2.LeadAssigned(lead_id=lead_id, dealer_id="D2", previous_dealer_id="D1")
    await _publish(nats_url, moved, lead_id)

    async def in_d2() -> bool:
        return [r.dealer_id for r in await _rows(served, mine)] == ["D2"]

    await _eventually(in_d2)
    types = [t for t, s, _ in await served.outbox()]
    assert types.count("marque.sales.v1.OpportunityOpened") == 1
    relayed = await _eventually(lambda: _relayed(nats_url, lead_id, at_least=2))
    assert relayed == ["OpportunityOpened", "OpportunityStageChanged"]  # the move to D2


async def _relayed(url: str, lead_id: str, at_least: int) -> list[str]:
    """The names of sales' events about the lead's opportunity on sales' stream."""
    from marque.sales.v1 import sales_events_pb2

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            sub = await js.subscribe(
                "marque.sales.>", ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
            )
        except Exception:
            return []
        names = []
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            while True:
                msg = await sub.next_msg(timeout=0.5)
                name = msg.subject.rsplit(".", 1)[1]
                event = getattr(sales_events_pb2, name).FromString(msg.data)
                if getattr(event, "lead_id", "") == lead_id:
                    names.append(name)
        return names if len(names) >= at_least else []
    finally:
        await nc.close()


async def test_a_lead_created_for_the_oem_pool_opens_nothing(
    served: Harness, nats_url: str
) -> None:
    pooled, routed = f"lead_{new_event_id()[:8]}", f"lead_{new_event_id()[:8]}"
    await _publish(nats_url, lead_events_pb2.LeadCreated(lead_id=pooled, brand="Marque"), pooled)
    await _publish(
        nats_url,
        lead_events_pb2.LeadCreated(lead_id=routed, dealer_id="D3", brand="Marque"),
        routed,
    )
    query = sa.select(opportunities).where(opportunities.c.lead_id.in_([pooled, routed]))

    async def opened() -> list[Any]:
        return await _rows(served, query)

    rows = await _eventually(opened)
    await asyncio.sleep(0.3)
    rows = await _rows(served, query)
    assert [(r.lead_id, r.model_interest) for r in rows] == [(routed, "Marque")]


async def test_a_late_lead_created_does_not_undo_a_later_assignment(
    served: Harness, nats_url: str
) -> None:
    lead_id = f"lead_{new_event_id()[:8]}"
    moved = lead_events_pb2.LeadAssigned(lead_id=lead_id, dealer_id="D2", previous_dealer_id="D1")
    await _publish(nats_url, moved, lead_id)
    mine = sa.select(opportunities).where(opportunities.c.lead_id == lead_id)

    async def opened() -> list[Any]:
        return await _rows(served, mine)

    await _eventually(opened)
    created = lead_events_pb2.LeadCreated(lead_id=lead_id, dealer_id="D1", brand="Marque")
    await _publish(nats_url, created, lead_id)

    async def seen() -> bool:
        rows = await _rows(served, sa.select(inbox).where(inbox.c.aggregate == lead_id))
        return len(rows) == 2

    await _eventually(seen)
    assert [r.dealer_id for r in await _rows(served, mine)] == ["D2"]


def test_the_wiring() -> None:
    names = sorted(s.name for s in EVENTS.subscriptions)
    assert names == [
        "LeadAssigned",
        "LeadCreated",
        "MemberErased",
        "RetailDeliveryReported",
        "SalesOrderCreated",
    ]
