"""List paging as AIP-158 and marque.common.v1.paging describe it, written once for every
service: page sizes, and opaque page tokens bound to the filter they were issued for.

A token is a `PageCursor` (the last sort key and the filter hash) followed by an
HMAC-SHA256 tag of it, base64url. A token whose tag does not verify was not issued here
(forged, altered, or signed with another deployment's secret) and is INVALID_ARGUMENT
before its key is read, so services parse only keys they issued themselves. The secret is
`MARQUE_PAGE_TOKEN_SECRET` (in production a Secret shared by all replicas, so any replica
accepts another's tokens), else a random one created once under the var dir.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TypeVar

from google.protobuf.message import DecodeError
from marque.common.v1 import paging_pb2

from mesh.config import var_dir
from mesh.errors import InvalidArgument
from mesh.varfiles import shared_secret

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
SECRET_ENV = "MARQUE_PAGE_TOKEN_SECRET"
SECRET_FILE = "page-token.key"
MIN_SECRET_BYTES = 32
_TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits
_MAC_CONTEXT = b"marque.page-token.v1\x00"


def page_size(requested: int) -> int:
    """0 is the default, above the maximum is capped, negative is refused (the proto's
    validation refuses it first; this keeps the rule true without it)."""
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def filter_hash(*parts: object) -> str:
    """A short hash of the filter a token was issued for."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def load_secret(env: Mapping[str, str] | None = None) -> bytes:
    """The page-token secret: `MARQUE_PAGE_TOKEN_SECRET`, else var/page-token.key (created
    once, mode 0600, so tokens survive a restart)."""
    env = os.environ if env is None else env
    return shared_secret(env, SECRET_ENV, var_dir(env), SECRET_FILE, MIN_SECRET_BYTES)


@lru_cache(maxsize=1)
def default_secret() -> bytes:
    """The process's page-token secret, loaded once."""
    return load_secret()


def _tag(raw: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, _MAC_CONTEXT + raw, hashlib.sha256).digest()[:_TAG_BYTES]


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument.for_field("page_token", description, reason="INVALID_PAGE_TOKEN")


def encode_token(after_key: str, fhash: str, *, secret: bytes | None = None) -> str:
    """An opaque page token: the last sort key and the filter hash, signed, base64url."""
    raw = paging_pb2.PageCursor(after_key=after_key, filter_hash=fhash).SerializeToString()
    tag = _tag(raw, secret or default_secret())
    return base64.urlsafe_b64encode(raw + tag).decode().rstrip("=")


def decode_token(token: str, fhash: str, *, secret: bytes | None = None) -> str | None:
    """The sort key of a page token, None for no token; INVALID_ARGUMENT for a token that
    was not issued here or was issued for other filters."""
    if not token:
        return None
    try:
        data = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("not a valid page token") from None
    raw, tag = data[:-_TAG_BYTES], data[-_TAG_BYTES:]
    if len(data) <= _TAG_BYTES or not hmac.compare_digest(
        tag, _tag(raw, secret or default_secret())
    ):
        raise _invalid("not a valid page token")
    try:
        cursor = paging_pb2.PageCursor.FromString(raw)
    except DecodeError:  # signed by us, so never; kept so a bug cannot become INTERNAL
        raise _invalid("not a valid page token") from None
    if cursor.filter_hash != fhash or not cursor.after_key:
        raise _invalid("issued for other filters; start again without a token")
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
