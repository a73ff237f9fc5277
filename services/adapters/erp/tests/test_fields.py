"""The limits copied into domain/fields.py are SAP's: the shipped `$metadata` (package
data, served by the simulator) and SAP's sample in ../shared say the same."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import pytest

from services.adapters.erp.domain import fields

SHARED = (
    Path(__file__).resolve().parents[5] / "shared" / "data" / "sap" / "API_SALES_ORDER_SRV.edmx"
)
EDM = "{http://schemas.microsoft.com/ado/2008/09/edm}"


def _properties(text: str) -> dict[str, dict[str, dict[str, str]]]:
    root = ET.fromstring(text)
    return {
        t.get("Name", ""): {p.get("Name", ""): dict(p.attrib) for p in t.iter(f"{EDM}Property")}
        for t in root.iter(f"{EDM}EntityType")
    }


def _shipped() -> str:
    path = resources.files("services.adapters.erp").joinpath("data/API_SALES_ORDER_SRV.edmx")
    return path.read_text()


@pytest.mark.parametrize("source", ["shipped", "shared"])
def test_limits_match_the_metadata(source: str) -> None:
    if source == "shared" and not SHARED.exists():
        pytest.skip("no ../shared/data/sap here")
    props = _properties(_shipped() if source == "shipped" else SHARED.read_text())
    for entity, limits in fields.MAX_LENGTH.items():
        for name, limit in limits.items():
            assert props[entity][name]["MaxLength"] == str(limit), (entity, name)
    for entity, decimals in fields.DECIMALS.items():
        for name, (precision, scale) in decimals.items():
            p = props[entity][name]
            assert (p["Precision"], p["Scale"]) == (str(precision), str(scale)), (entity, name)


def test_decimals_that_do_not_fit_are_named() -> None:
    item = {"SalesOrderItem": "10", "Material": "M", "RequestedQuantity": "1.0001"}
    assert [v.field for v in fields.check_entity(fields.ITEM, item, "")] == ["RequestedQuantity"]
    item["RequestedQuantity"] = "999999999999.999"
    assert fields.check_entity(fields.ITEM, item, "") == []
