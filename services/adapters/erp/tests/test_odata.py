"""OData V2 on plain data: `/Date(ms)/`, decimal strings, the error envelope's mapping."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from mesh.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from services.adapters.erp.domain import errors, odata


def test_dates_and_decimals() -> None:
    when = dt.datetime(2026, 12, 3, 9, 30, 15, 123000, tzinfo=dt.UTC)
    assert odata.format_date(when) == "/Date(1796290215123)/"
    assert odata.parse_date("/Date(1796290215123)/") == when
    assert odata.parse_date("/Date(1796290215123+0000)/") == when
    with pytest.raises(ValueError):
        odata.parse_date("2026-12-03")
    assert odata.decimal_text(Decimal("259900")) == "259900.000"
    assert odata.decimal_text(Decimal("0.1"), 2) == "0.10"
    assert odata.parse_decimal("12.500") == Decimal("12.5")
    assert odata.quoted("o'brien") == "'o''brien'"


@pytest.mark.parametrize(
    ("status", "cls", "reason"),
    [
        (400, InvalidArgument, errors.SAP_REJECTED),
        (404, NotFound, errors.SALES_ORDER_NOT_FOUND),
        (409, AlreadyExists, errors.SAP_REJECTED),
        (401, Unavailable, errors.SAP_AUTH_FAILED),
        (429, Unavailable, errors.SAP_UNAVAILABLE),
        (503, Unavailable, errors.SAP_UNAVAILABLE),
    ],
)
def test_the_envelope_maps_to_mesh_errors(status: int, cls: type, reason: str) -> None:
    body = {
        "error": {
            "code": "V1/302",
            "message": {"lang": "en", "value": "Sold-to party USCU_X not maintained"},
            "innererror": {
                "errordetails": [{"code": "V1/302", "message": "m", "severity": "error"}]
            },
        }
    }
    err = odata.envelope_error(status, body)
    assert type(err) is cls and err.reason == reason
    assert err.metadata["sap_message"] == "Sold-to party USCU_X not maintained"
    assert '"severity": "error"' in err.metadata["sap_errordetails"]
    assert (err.retry_after is not None) == (cls is Unavailable)


def test_a_body_that_is_no_envelope() -> None:
    err = odata.envelope_error(502, "<html>Bad gateway</html>")
    assert isinstance(err, Unavailable) and err.metadata == {"http_status": "502"}
