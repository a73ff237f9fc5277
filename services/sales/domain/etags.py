"""Etags of the sales records (AIP-154): opaque, derived from the record's id and version,
so a client cannot forge the next one and every change (version + 1) makes a new one."""

from __future__ import annotations

import hashlib

from services.sales.domain.errors import etag_mismatch


def of(id_: str, version: int) -> str:
    """The etag of version `version` of record `id_` (16 hex digits)."""
    return hashlib.sha256(f"{id_}\x00{version}".encode()).hexdigest()[:16]


def check(what: str, id_: str, version: int, etag: str) -> None:
    """ABORTED (ETAG_MISMATCH) unless `etag` is the record's; an empty etag is an
    unconditional change."""
    if etag and etag != of(id_, version):
        raise etag_mismatch(what, id_)
