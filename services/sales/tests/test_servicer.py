"""SalesService over a real server (harness.py), on SQLite and PostgreSQL: create then get,
row scoping per dealer, bad input with its field, retried request ids, the access policy."""

from __future__ import annotations

import grpc

from services.sales.domain import errors
from services.sales.store.tables import saleses
from services.sales.tests.harness import (
    CUSTOMER,
    OEM,
    SERVICE,
    T0,
    Harness,
    dealer,
    fails,
    reason,
    violations,
)

NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def test_create_then_get(sales: Harness) -> None:
    created = await sales.create("  North   bay ", caller=dealer("D1"), dealer_id="")
    assert created.id.startswith("sales_")
    assert (created.dealer_id, created.display_name) == ("D1", "North bay")
    assert created.create_time.seconds == int(T0.timestamp())
    assert await sales.get(created.id, caller=dealer("D1")) == created
    assert await sales.get(created.id, caller=OEM) == created
    assert await sales.get(created.id, caller=SERVICE) == created


async def test_another_dealer_gets_not_found(sales: Harness) -> None:
    created = await sales.create(caller=dealer("D1"), dealer_id="D1")
    err = await fails(sales.get(created.id, caller=dealer("D2")), NOT_FOUND)
    assert reason(err) == errors.SALES_NOT_FOUND
    missing = await fails(sales.get("sales_nope", caller=OEM), NOT_FOUND)
    assert reason(missing) == errors.SALES_NOT_FOUND
    # A dealer cannot create for another dealer either.
    err = await fails(sales.create(caller=dealer("D2"), dealer_id="D1"), DENIED)
    assert reason(err) == errors.OTHER_DEALER


async def test_bad_input_is_invalid_argument_with_the_field(sales: Harness) -> None:
    # The proto's rules (protovalidate, checked by the mesh before the servicer runs).
    err = await fails(sales.create(""), INVALID)
    assert "sales.display_name" in violations(err)
    err = await fails(sales.get(""), INVALID)
    assert "sales_id" in violations(err)
    # The domain's rules (domain/model.py, domain/visibility.py), with the same field paths.
    err = await fails(sales.create("   "), INVALID)
    assert violations(err) == {"sales.display_name": "must not be blank"}
    err = await fails(sales.create(dealer_id=""), INVALID)
    assert "sales.dealer_id" in violations(err)
    assert await sales.count(saleses) == 0  # nothing written


async def test_a_retried_request_id_returns_the_first(sales: Harness) -> None:
    first = await sales.create("Same", request_id="r-1")
    again = await sales.create("Same", request_id="r-1")
    assert again == first
    assert await sales.count(saleses) == 1
    err = await fails(sales.create("Other", request_id="r-1"), INVALID)
    assert reason(err) == "REQUEST_ID_REUSED"
    # The same id from another caller is another request.
    other = await sales.create("Same", caller=SERVICE, request_id="r-1")
    assert other.id != first.id


async def test_the_access_policy_keeps_customers_out(sales: Harness) -> None:
    await fails(sales.create(caller=CUSTOMER), DENIED)
