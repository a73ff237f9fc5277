"""The sales service's events over a real server (harness.py), on SQLite and PostgreSQL:
CreateSales writes exactly one SalesCreated to the outbox, in the transaction that
creates the sales; a retried, rejected or failed Create writes none."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from marque.sales.v1 import sales_events_pb2

from services.sales import store
from services.sales.events import EVENTS
from services.sales.store.tables import saleses
from services.sales.tests.harness import Harness, dealer, fails

CREATED = "marque.sales.v1.SalesCreated"


async def test_a_create_emits_one_created_event(sales: Harness) -> None:
    d1 = dealer("D1")
    created = await sales.create("North bay", caller=d1, request_id="r")
    again = await sales.create("North bay", caller=d1, request_id="r")
    assert again == created
    rows = await sales.outbox()
    assert [(t, s) for t, s, _ in rows] == [(CREATED, created.id)]  # the retry emitted nothing
    event = sales_events_pb2.SalesCreated.FromString(rows[0][2])
    assert event.sales_id == created.id
    assert (event.dealer_id, event.display_name) == ("D1", "North bay")
    assert event.create_time == created.create_time


async def test_a_rejected_create_emits_nothing(sales: Harness) -> None:
    await fails(sales.create("   "), grpc.StatusCode.INVALID_ARGUMENT)  # the domain's rule
    await fails(sales.create(caller=dealer("D2")), grpc.StatusCode.PERMISSION_DENIED)
    await sales.create("Same", request_id="r-1")
    await fails(sales.create("Other", request_id="r-1"), grpc.StatusCode.INVALID_ARGUMENT)
    assert len(await sales.outbox()) == await sales.count(saleses) == 1


async def test_a_failed_create_leaves_neither_the_sales_nor_its_event(
    sales: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(*args: Any) -> None:
        raise RuntimeError("the disk is gone")  # after the insert and the emit

    monkeypatch.setattr(store.REQUEST_IDS, "remember", fail)
    await fails(sales.create(), grpc.StatusCode.INTERNAL)
    assert await sales.outbox() == []
    assert await sales.count(saleses) == 0


def test_the_wiring_emits_and_subscribes_to_nothing_yet() -> None:
    assert EVENTS.service == "sales" and EVENTS.outbox is store.OUTBOX
    assert EVENTS.inbox is store.INBOX and list(EVENTS.subscriptions) == []
