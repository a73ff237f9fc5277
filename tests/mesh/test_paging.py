"""mesh.paging: AIP-158 page sizes and filter-bound opaque tokens."""

from __future__ import annotations

import pytest

from mesh.errors import InvalidArgument
from mesh.paging import decode_token, encode_token, filter_hash, page_size, split_page


def test_page_size_default_cap_and_negative() -> None:
    assert page_size(0) == 50
    assert page_size(7) == 7
    assert page_size(10_000) == 1000
    with pytest.raises(InvalidArgument):
        page_size(-1)


def test_token_round_trip_and_filter_binding() -> None:
    f = filter_hash("D-SH-01", 2)
    token = encode_token("2026-11-24|lead_1", f)
    assert decode_token(token, f) == "2026-11-24|lead_1"
    assert decode_token("", f) is None
    with pytest.raises(InvalidArgument) as other:
        decode_token(token, filter_hash("D-BJ-01", 2))
    assert other.value.field_violations[0].field == "page_token"
    with pytest.raises(InvalidArgument):
        decode_token("%%%not-a-token", f)


def test_split_page_reads_one_row_more_than_it_returns() -> None:
    fhash = filter_hash("ListThings")
    page, token = split_page([1, 2, 3], 2, str, fhash)
    assert page == [1, 2] and decode_token(token, fhash) == "2"
    assert split_page([1, 2], 2, str, fhash) == ([1, 2], "")
    assert split_page([], 2, str, fhash) == ([], "")
