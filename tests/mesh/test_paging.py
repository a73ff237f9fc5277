"""mesh.paging: AIP-158 page sizes and filter-bound opaque tokens."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from marque.common.v1 import paging_pb2

from mesh.errors import InvalidArgument
from mesh.paging import (
    decode_token,
    encode_token,
    filter_hash,
    load_secret,
    page_size,
    split_page,
)


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


# ------------------------------------------------------------------ signed tokens

SECRET = b"s" * 32
OTHER = b"o" * 32


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _refused(token: str, fhash: str, secret: bytes = SECRET) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as err:
        decode_token(token, fhash, secret=secret)
    assert err.value.reason == "INVALID_PAGE_TOKEN"
    assert [v.field for v in err.value.field_violations] == ["page_token"]
    return err.value


def test_signed_token_round_trip() -> None:
    f = filter_hash("ListThings", "M1")
    token = encode_token("42", f, secret=SECRET)
    assert decode_token(token, f, secret=SECRET) == "42"


def test_a_forged_or_tampered_token_is_refused() -> None:
    f = filter_hash("ListPointTransactions", "M1")
    # What a client could build from the proto alone: a cursor with any key it likes.
    forged = paging_pb2.PageCursor(after_key="99999999999999999999999", filter_hash=f)
    _refused(_b64(forged.SerializeToString()), f)
    token = _raw(encode_token("42", f, secret=SECRET))
    for i in range(len(token)):  # any flipped bit anywhere
        tampered = bytearray(token)
        tampered[i] ^= 0x01
        _refused(_b64(bytes(tampered)), f)
    _refused(_b64(token[:-1]), f)
    _refused(_b64(token + b"x"), f)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    f = filter_hash("ListThings")
    _refused(encode_token("42", f, secret=OTHER), f)


def test_a_token_from_another_filter_is_refused() -> None:
    token = encode_token("42", filter_hash("ListThings", "M1"), secret=SECRET)
    error = _refused(token, filter_hash("ListThings", "M2"))
    assert "other filters" in error.message


def test_the_secret_comes_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    assert load_secret({"MARQUE_PAGE_TOKEN_SECRET": "x" * 32}) == b"x" * 32
    with pytest.raises(ValueError, match="at least 32"):
        load_secret({"MARQUE_PAGE_TOKEN_SECRET": "short"})
    env = {"MARQUE_VAR_DIR": str(tmp_path)}
    first = load_secret(env)
    assert len(first) >= 32 and load_secret(env) == first  # survives a restart
    path = tmp_path / "page-token.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_secret({"MARQUE_VAR_DIR": str(tmp_path / "other")}) != first
