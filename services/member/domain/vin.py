"""Vehicle identification numbers for member: the platform's rule (mesh/vin.py, shared with
sales) under member's names, so a VIN is refused the same way in every service
(INVALID_ARGUMENT, reason INVALID_FIELD, the field named)."""

from __future__ import annotations

from mesh import vin as _vin
from mesh.vin import CHECK_POSITION, LENGTH, WEIGHTS, check_digit, is_valid

__all__ = ["CHECK_POSITION", "LENGTH", "WEIGHTS", "check_digit", "is_valid", "normalise_vin"]


def normalise_vin(raw: str, field: str = "vin") -> str:
    """The VIN upper-cased and checked, or InvalidArgument naming what is wrong."""
    return _vin.normalize(field, raw)
