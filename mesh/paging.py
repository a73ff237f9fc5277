"""List paging as AIP-158 and marque.common.v1.paging describe it, written once for every
service: page sizes, and opaque page tokens bound to the filter they were issued for."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf.message import DecodeError
from marque.common.v1 import paging_pb2

from mesh.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    """0 is the default, above the maximum is capped, negative is refused (the proto's
    validation refuses it first; this keeps the rule true without it)."""
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def filter_hash(*parts: object) -> str:
    """A short hash of the filter a token was issued for."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def encode_token(after_key: str, fhash: str) -> str:
    """An opaque page token: the last sort key and the filter hash, base64url."""
    raw = paging_pb2.PageCursor(after_key=after_key, filter_hash=fhash).SerializeToString()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, fhash: str) -> str | None:
    """The sort key of a page token, None for no token; INVALID_ARGUMENT for a token that
    is not ours or was issued for other filters."""
    if not token:
        return None
    try:
        cursor = paging_pb2.PageCursor.FromString(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        )
    except (binascii.Error, ValueError, DecodeError):
        raise InvalidArgument.for_field("page_token", "not a valid page token") from None
    if cursor.filter_hash != fhash or not cursor.after_key:
        raise InvalidArgument.for_field(
            "page_token", "issued for other filters; start again without a token"
        )
    return cursor.after_key


def split_page(
    rows: Sequence[T], size: int, key: Callable[[T], str], fhash: str
) -> tuple[list[T], str]:
    """A page of `rows` read with limit `size + 1` (the extra row only says that another page
    follows) and the token of the next page: its sort key taken from the page's last row by
    `key`, or "" on the last page."""
    page = list(rows[:size])
    if len(rows) <= size:
        return page, ""
    return page, encode_token(key(page[-1]), fhash)
