"""Money in the database: integer fen, exact on both back ends."""

from __future__ import annotations

from decimal import Decimal

HUNDRED = Decimal(100)


def cents(amount: Decimal) -> int:
    """The fen of an amount already rounded to the fen."""
    return int(amount * HUNDRED)


def from_cents(fen: int) -> Decimal:
    """The amount of a stored fen count, with two decimals."""
    return (Decimal(fen) / HUNDRED).quantize(Decimal("0.01"))
