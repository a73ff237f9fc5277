"""VIN check digit on every row of the shared VIN table, plus the alphabet rules."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mesh.errors import InvalidArgument
from services.member.domain.vin import check_digit, is_valid, normalise_vin

TSV = Path(__file__).resolve().parents[4] / "shared" / "data" / "vin" / "vin_check_digit.tsv"


def _rows() -> list[tuple[str, bool]]:
    if not TSV.exists():
        return []
    with TSV.open(newline="") as f:
        return [(r["vin"], r["check_ok"] == "True") for r in csv.DictReader(f, delimiter="\t")]


ROWS = _rows()


def test_table_is_there() -> None:
    if not TSV.exists():
        pytest.skip(f"{TSV} not present")
    assert len(ROWS) >= 40
    assert any(not ok for _, ok in ROWS) and any(ok for _, ok in ROWS)


@pytest.mark.parametrize(("vin", "ok"), ROWS, ids=[v for v, _ in ROWS])
def test_every_row_of_the_shared_table(vin: str, ok: bool) -> None:
    assert is_valid(vin) is ok
    assert (check_digit(vin) == vin[8]) is ok


def test_chinese_vin_uses_the_same_rule() -> None:
    assert normalise_vin("lz91ae3a4j3lsa560") == "LZ91AE3A4J3LSA560"


def test_x_check_digit() -> None:
    assert check_digit("137ZA903X1E412677") == "X"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("137ZA903X1E41267", "17 characters"),
        ("137ZA903X1E4126777", "17 characters"),
        ("137ZA9O3X1E412677", "never contains 'O'"),
        ("I37ZA903X1E412677", "never contains 'I'"),
        ("137ZA903X1E41267Q", "never contains 'Q'"),
        ("1HGCM82633A123456", "expected"),
    ],
)
def test_bad_vins_say_why(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        normalise_vin(raw)
    (violation,) = e.value.field_violations
    assert fragment in violation.description
    assert violation.field == "vin"
    assert e.value.reason == "INVALID_FIELD"
