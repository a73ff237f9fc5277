"""The real OData client and backend against the simulator over real HTTP: the deep
insert, CSRF (fetched once, refreshed once when expired), SAP's error envelope as mesh
errors, field limits checked before sending, OAuth2, lookup-before-retry after a timeout
and the breaker opening and closing."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from mesh.errors import InvalidArgument, Unavailable
from services.adapters.erp.domain import errors
from services.adapters.erp.domain.model import Status
from services.adapters.erp.sap.client import ODataClient
from services.adapters.erp.tests.helpers import Clock, Sap, an_order


def _requests(operation: str, code: str) -> float:
    labels = {"backend": "sap", "operation": operation, "code": code}
    return REGISTRY.get_sample_value("marque_backend_requests_total", labels) or 0.0


async def test_a_deep_insert_creates_the_order_with_its_items(sap: Sap) -> None:
    backend = sap.backend()
    created_before, fetched_before = _requests("create", "201"), _requests("csrf_fetch", "200")
    try:
        order, found = await backend.create_sales_order(an_order("ord_1"))
        second, _ = await backend.create_sales_order(an_order("ord_2", options=()))
        again = await backend.read(order.sap_sales_order)
        by_ref = await backend.find("ord_1")
    finally:
        await backend.aclose()
    assert not found and order.order_id == "ord_1" and order.status is Status.OPEN
    assert order.net_amount == Decimal("259900.000") and order.currency == "CNY"
    assert order.create_time is not None and again == order == by_ref
    assert second.sap_sales_order != order.sap_sales_order
    stored = sap.sim.orders[order.sap_sales_order]
    items = stored["to_Item"]["results"]
    assert [(i["Material"], i["NetAmount"]) for i in items] == [
        ("MZ-SEDAN", "259900.000"),
        ("PANO", "0.000"),
    ]
    assert items[1]["HigherLevelItem"] == "10" and stored["PurchaseOrderByCustomer"] == "ord_1"
    assert sap.sim.csrf_fetches == 1  # one session for every call of the process
    assert _requests("create", "201") - created_before == 2
    assert _requests("csrf_fetch", "200") - fetched_before == 1


async def test_an_expired_csrf_token_is_fetched_again_once(sap: Sap) -> None:
    backend = sap.backend()
    try:
        await backend.create_sales_order(an_order("ord_1"))
        sap.sim._sessions = {c: "expired" for c in sap.sim._sessions}
        await backend.create_sales_order(an_order("ord_2"))
    finally:
        await backend.aclose()
    assert sap.sim.csrf_fetches == 2 and sap.sim.creates == 2


async def test_sap_error_envelope_keeps_sap_message_and_details(sap: Sap) -> None:
    client = ODataClient(sap.config)
    body = {"SalesOrderType": "OR", "to_Item": {"results": [{"SalesOrderItem": "10"}]}}
    try:
        with pytest.raises(InvalidArgument) as rejected:
            await client.create(body)
        sap.sim.knobs.error_rate = 1.0
        with pytest.raises(Unavailable) as failing:
            await client.find("ord_1")
        sap.sim.knobs.error_rate = 0.0
        assert await client.read("9999999") is None
        sap.sim.knobs.outage = True
        with pytest.raises(Unavailable) as down:
            await client.find("ord_1")
    finally:
        await client.aclose()
    err = rejected.value
    assert err.reason == errors.SAP_REJECTED and err.metadata["sap_code"] == "V1/320"
    assert err.metadata["sap_message"] == "The sales order could not be created"
    details = json.loads(err.metadata["sap_errordetails"])
    assert {"SoldToParty", "to_Item[0].Material"} <= {d["target"] for d in details}
    assert failing.value.reason == errors.SAP_UNAVAILABLE
    assert failing.value.metadata["sap_code"] == "/IWBEP/CM_MGW_RT/020"
    assert (
        down.value.reason == errors.SAP_UNAVAILABLE and down.value.metadata["http_status"] == "503"
    )


async def test_fields_sap_would_refuse_are_refused_before_sending(sap: Sap) -> None:
    backend = sap.backend()
    order = an_order("ord_1", options=("X" * 41,))
    try:
        with pytest.raises(InvalidArgument) as e:
            await backend.create_sales_order(order)
        with pytest.raises(InvalidArgument):
            await backend.create_sales_order(
                replace(order, order_id="o" * 36, lines=order.lines[:1])
            )
    finally:
        await backend.aclose()
    assert e.value.reason == errors.SAP_FIELD_INVALID
    assert [v.field for v in e.value.field_violations] == ["to_Item[1].Material"]
    assert sap.sim.csrf_fetches == 0 and sap.sim.creates == 0  # nothing reached SAP


async def test_oauth2_client_credentials(sap: Sap) -> None:
    backend = sap.backend(
        auth="oauth2", token_url=sap.root + "/oauth/token", client_id="marque", client_secret="s"
    )
    try:
        order, _ = await backend.create_sales_order(an_order("ord_1"))
    finally:
        await backend.aclose()
    assert order.sap_sales_order in sap.sim.orders
    wrong = sap.backend(user="MARQUE", password="wrong")
    try:
        with pytest.raises(Unavailable) as e:
            await wrong.find("ord_1")
    finally:
        await wrong.aclose()
    assert e.value.reason == errors.SAP_AUTH_FAILED


async def test_a_timeout_after_sap_created_the_order_creates_no_second(sap: Sap) -> None:
    sap.sim.knobs.hang_after_create = 1
    sap.sim.knobs.hang_seconds = 1.5
    backend = sap.backend(timeout_seconds=0.3)
    try:
        order, found = await backend.create_sales_order(an_order("ord_1"))
        # The event redelivered later (a crash before our commit): found, not created.
        again, found_again = await backend.create_sales_order(an_order("ord_1"))
    finally:
        await backend.aclose()
    assert found and found_again and again == order
    assert sap.sim.creates == 1 and len(sap.sim.orders) == 1


async def test_timeouts_that_created_nothing_are_retried_then_raised(sap: Sap) -> None:
    sap.sim.knobs.latency_ms = 800
    backend = sap.backend(timeout_seconds=0.2, create_attempts=2)
    try:
        with pytest.raises(errors.SapTimeout):
            await backend.create_sales_order(an_order("ord_1"))
    finally:
        await backend.aclose()


async def test_the_breaker_opens_in_an_outage_and_closes_after(sap: Sap) -> None:
    clock = Clock()
    backend = sap.backend(clock=clock)
    sap.sim.knobs.outage = True
    reasons = []
    try:
        for _ in range(12):
            with pytest.raises(Unavailable) as e:
                await backend.find("ord_1")
            reasons.append(e.value.reason)
        assert backend.breaker.state == "open"
        assert reasons[0] == errors.SAP_UNAVAILABLE and reasons[-1] == "BACKEND_THROTTLED"
        sap.sim.knobs.outage = False
        clock.now += backend.breaker.window_seconds + 1  # the failures leave the window
        assert backend.breaker.state == "closed"
        order, _ = await backend.create_sales_order(an_order("ord_1"))
        assert order.order_id == "ord_1" and backend.breaker.state == "closed"
    finally:
        await backend.aclose()


async def test_not_found_is_an_answer_not_a_failure(sap: Sap) -> None:
    backend = sap.backend()
    try:
        assert await backend.read("4999999") is None
        assert await backend.find("nobody") is None
    finally:
        await backend.aclose()
    assert backend.breaker.state == "closed"
