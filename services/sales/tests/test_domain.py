"""The sales rules on plain data: no server, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from mesh.errors import InvalidArgument, PermissionDenied
from mesh.identity import Caller, Kind
from services.sales.domain.config import SalesConfig
from services.sales.domain.model import new_sales
from services.sales.domain.visibility import may_see, owner_for

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
OEM = Caller(Kind.OEM, "staff")
D1 = Caller(Kind.DEALER, "d1-staff", dealer_id="D1")
D2 = Caller(Kind.DEALER, "d2-staff", dealer_id="D2")
CONFIG = SalesConfig()


def test_a_dealer_owns_what_it_creates_and_sees_only_that() -> None:
    assert owner_for(D1, "") == owner_for(D1, "D1") == "D1"
    with pytest.raises(PermissionDenied):
        owner_for(D1, "D2")
    record = new_sales("g1", "D1", "x", T0, D1.ref, config=CONFIG)
    assert may_see(D1, record) and may_see(OEM, record)
    assert not may_see(D2, record)


def test_staff_name_the_dealer() -> None:
    assert owner_for(OEM, "D9") == "D9"
    with pytest.raises(InvalidArgument):
        owner_for(OEM, "")


def test_the_display_name_is_trimmed_and_not_blank() -> None:
    trimmed = new_sales("g1", "D1", "  a   b ", T0, "oem:x", config=CONFIG)
    assert trimmed.display_name == "a b"
    with pytest.raises(InvalidArgument) as e:
        new_sales("g1", "D1", " \t ", T0, "oem:x", config=CONFIG)
    assert [v.field for v in e.value.field_violations] == ["sales.display_name"]


def test_the_display_name_is_at_most_the_configured_length() -> None:
    short = SalesConfig(display_name_max_chars=5)
    trimmed = new_sales("g1", "D1", " a   bcd ", T0, "oem:x", config=short)
    assert trimmed.display_name == "a bcd"
    with pytest.raises(InvalidArgument) as e:
        new_sales("g1", "D1", "abcdef", T0, "oem:x", config=short)
    assert e.value.field_violations[0].description == "must be at most 5 characters"


def test_the_config_is_read_from_the_environment() -> None:
    assert SalesConfig.from_env({}) == CONFIG
    env = {"MARQUE_SALES_DISPLAY_NAME_MAX_CHARS": " 40 "}
    assert SalesConfig.from_env(env).display_name_max_chars == 40
    with pytest.raises(ValueError):
        SalesConfig.from_env({"MARQUE_SALES_DISPLAY_NAME_MAX_CHARS": "101"})
