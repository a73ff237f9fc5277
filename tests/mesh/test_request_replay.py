"""`Request.replayed_in`: a batch writer's request-id check on the claims it read or made."""

from __future__ import annotations

import pytest

from mesh.idempotency import Request, RequestIdReused


def test_a_claimed_request_id_gives_the_first_result_and_a_new_one_none() -> None:
    claimed = {("dealer:D1", "r1"): ("fp-a", "ord_1")}
    assert Request("dealer:D1", "r1", "fp-a").replayed_in(claimed) == "ord_1"
    assert Request("dealer:D1", "r2", "fp-a").replayed_in(claimed) is None
    assert Request("dealer:D2", "r1", "fp-a").replayed_in(claimed) is None  # another scope
    assert Request("dealer:D1", "", "fp-a").replayed_in(claimed) is None  # no request id


def test_a_claimed_request_id_with_other_arguments_is_refused() -> None:
    claimed = {("dealer:D1", "r1"): ("fp-a", "ord_1")}
    with pytest.raises(RequestIdReused):
        Request("dealer:D1", "r1", "fp-b").replayed_in(claimed)
