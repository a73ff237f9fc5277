"""mesh/vin.py: the check digit on every row of the shared VIN table (../shared beside the
checkout; skipped when it is absent), the alphabet and the errors' shape."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mesh import vin
from mesh.errors import InvalidArgument

TSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "vin" / "vin_check_digit.tsv"


def _rows() -> list[tuple[str, bool]]:
    if not TSV.exists():
        return []
    with TSV.open(newline="") as f:
        return [(r["vin"], r["check_ok"] == "True") for r in csv.DictReader(f, delimiter="\t")]


ROWS = _rows()
needs_table = pytest.mark.skipif(not ROWS, reason=f"{TSV} not present")


@needs_table
def test_table_has_both_kinds() -> None:
    assert len(ROWS) >= 40
    assert any(ok for _, ok in ROWS) and any(not ok for _, ok in ROWS)


@needs_table
@pytest.mark.parametrize(("raw", "ok"), ROWS, ids=[v for v, _ in ROWS])
def test_every_row_of_the_shared_table(raw: str, ok: bool) -> None:
    assert vin.is_valid(raw) is ok
    assert (vin.check_digit(raw) == raw[vin.CHECK_POSITION]) is ok
    if ok:
        assert vin.normalize("car.vin", f" {raw.lower()} ") == raw
    else:
        with pytest.raises(InvalidArgument, match="check digit"):
            vin.normalize("car.vin", raw)


def test_x_check_digit() -> None:
    assert vin.check_digit("137ZA903X1E412677") == "X"


def test_check_digit_wants_a_well_formed_vin() -> None:
    with pytest.raises(ValueError):
        vin.check_digit("137ZA903X1E41267")
    with pytest.raises(ValueError):
        vin.check_digit("137ZA9O3X1E412677")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "17 characters, got 0"),
        ("137ZA903X1E41267", "17 characters"),
        ("137ZA903X1E4126777", "17 characters"),
        ("137ZA9O3X1E412677", "never contains 'O'"),
        ("I37ZA903X1E412677", "never contains 'I'"),
        ("137ZA903X1E41267Q", "never contains 'Q'"),
        ("137ZA903X1E4126-7", "never contains '-'"),
        ("1HGCM82633A123456", "expected"),
    ],
)
def test_bad_vins_name_the_field_and_say_why(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        vin.normalize("order.vin", raw)
    (violation,) = caught.value.field_violations
    assert violation.field == "order.vin"
    assert fragment in violation.description
    assert caught.value.reason == "INVALID_FIELD"
    assert caught.value.code == "INVALID_ARGUMENT"
    assert vin.is_valid(raw) is False
