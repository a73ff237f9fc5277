"""The sales records, frozen dataclasses, and the rules that make them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.sales.domain.config import SalesConfig
from services.sales.domain.errors import invalid

DISPLAY_NAME = "sales.display_name"


@dataclass(frozen=True, slots=True)
class Sales:
    """One sales, as stored and as replied."""

    id: str
    dealer_id: str
    display_name: str
    create_time: dt.datetime
    create_actor: str


def new_sales(
    id_: str,
    dealer_id: str,
    display_name: str,
    now: dt.datetime,
    actor: str,
    *,
    config: SalesConfig,
) -> Sales:
    """A new sales: the name trimmed, not blank and at most the configured length (the
    proto rules only bound its raw length; a rule on meaning is the domain's, reported with
    the request's field path)."""
    name = " ".join(display_name.split())
    if not name:
        raise invalid(DISPLAY_NAME, "must not be blank")
    if len(name) > config.display_name_max_chars:
        raise invalid(DISPLAY_NAME, f"must be at most {config.display_name_max_chars} characters")
    return Sales(id_, dealer_id, name, now, actor)
