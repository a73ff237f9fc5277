"""The keys an intake batch looks up, and the rows found for them kept only where they
match exactly: shared by the SQLite and PostgreSQL lookups, whose queries search on one
column each (the indexed one) and so may return rows of other keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.lead.store.batch import ChannelKey, Prior, RequestKey


@dataclass(frozen=True, slots=True)
class Wanted:
    """A batch's lookup keys without the blank ones: a submission with no request id or
    no channel lead id has nothing to be found by."""

    requests: set[RequestKey]
    channel: set[ChannelKey]
    keys: set[tuple[str, str]]

    @classmethod
    def of(
        cls,
        request_keys: Sequence[RequestKey],
        channel_keys: Sequence[ChannelKey],
        keys: Sequence[tuple[str, str]],
    ) -> Wanted:
        return cls(
            {k for k in request_keys if k[1]},
            {k for k in channel_keys if k[2]},
            set(keys),
        )


def priors_found(rows: Iterable[Sequence[Any]], wanted: set[RequestKey]) -> dict[RequestKey, Prior]:
    """(scope, request id, result, fingerprint) rows as the earlier calls of the wanted
    requests."""
    return {
        (scope, rid): Prior(result, fp) for scope, rid, result, fp in rows if (scope, rid) in wanted
    }


def channel_leads_found(
    rows: Iterable[Sequence[Any]], wanted: set[ChannelKey]
) -> dict[ChannelKey, str]:
    """(channel, dealer, channel lead id, lead id) rows as the lead of each wanted channel
    lead id (the query matches ids and channels separately, and not the dealer)."""
    return {
        (ch, dealer, clid): lead_id
        for ch, dealer, clid, lead_id in rows
        if (ch, dealer, clid) in wanted
    }


def key_leads_found(
    rows: Iterable[Sequence[Any]], wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(contact, brand, lead id) rows as the current lead of each wanted (contact, brand)
    (the query matches the contact only: every brand of it comes back)."""
    return {(c, b): lead_id for c, b, lead_id in rows if (c, b) in wanted}
