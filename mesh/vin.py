"""Vehicle identification numbers (ISO 3779; 49 CFR 565.15; GB 16735 in China), for every
service that takes one (member binds owners' cars, sales allocates and test-drives them).

A VIN is 17 characters of A-Z and 0-9 without I, O and Q (they read like 1 and 0).
Position 9 is a check digit: letters transliterate (A-H=1-8, J-N=1-5, P=7, R=9, S-Z=2-9),
each position is weighted 8 7 6 5 4 3 2 10 0 9 8 7 6 5 4 3 2, the sum is taken mod 11 and
10 is written X. Chinese VINs use the same rule. Europe does not require the check digit,
but every car this platform handles (China, North America) carries one, so it is enforced.
"""

from __future__ import annotations

from mesh.errors import InvalidArgument

LENGTH = 17
CHECK_POSITION = 8  # 0-based index of position 9
WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VALUES: dict[str, int] = {str(d): d for d in range(10)}
_VALUES.update(zip("ABCDEFGH", range(1, 9), strict=True))
_VALUES.update(zip("JKLMN", range(1, 6), strict=True))
_VALUES.update({"P": 7, "R": 9})
_VALUES.update(zip("STUVWXYZ", range(2, 10), strict=True))
REASON = "INVALID_FIELD"


def check_digit(vin: str) -> str:
    """The check digit a 17-character VIN should carry at position 9 ('0'-'9' or 'X').

    ValueError if `vin` is not 17 characters of the VIN alphabet (upper case)."""
    if len(vin) != LENGTH or any(c not in _VALUES for c in vin):
        raise ValueError(f"not 17 characters of the VIN alphabet: {vin!r}")
    total = sum(_VALUES[c] * w for c, w in zip(vin, WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def normalize(field: str, raw: str) -> str:
    """The VIN stripped and upper-cased, or InvalidArgument on `field` saying what is wrong
    (length, a character outside the alphabet, the check digit)."""
    vin = raw.strip().upper()
    if len(vin) != LENGTH:
        raise InvalidArgument.for_field(
            field, f"a VIN has {LENGTH} characters, got {len(vin)}", reason=REASON
        )
    bad = sorted({c for c in vin if c not in _VALUES})
    if bad:
        raise InvalidArgument.for_field(
            field, f"a VIN never contains {''.join(bad)!r} (I, O, Q are excluded)", reason=REASON
        )
    expected = check_digit(vin)
    if vin[CHECK_POSITION] != expected:
        raise InvalidArgument.for_field(
            field,
            f"check digit (position 9) is {vin[CHECK_POSITION]!r}, expected {expected!r}",
            reason=REASON,
        )
    return vin


def is_valid(vin: str) -> bool:
    """True if `vin` is a well-formed VIN with the right check digit (case and surrounding
    blanks forgiven, as `normalize` does)."""
    try:
        normalize("vin", vin)
    except InvalidArgument:
        return False
    return True
