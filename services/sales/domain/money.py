"""Money of the sales rules: yuan as `Decimal`, rounded to the fen (0.01) once per figure.

Only CNY: a Chinese dealer network quotes, invoices and finances in yuan. Amounts are never
floats (0.1 + 0.2 is not 0.3 on an invoice), and every figure a customer sees is rounded
half up to the fen exactly once, where it is computed, so re-adding shown figures gives the
shown total.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from services.sales.domain.errors import invalid

CNY = "CNY"
FEN = Decimal("0.01")
ZERO = Decimal("0.00")
# Above any car, insurance or fee: a bigger figure is a typo (or units sent as fen), not a price.
MAX_AMOUNT = Decimal("100000000")


def fen(x: Decimal) -> Decimal:
    """`x` rounded half up to the fen, the way Chinese invoices and loan contracts round."""
    return x.quantize(FEN, rounding=ROUND_HALF_UP)


def parse_amount(field: str, x: Decimal) -> Decimal:
    """A client's amount checked and normalised to two places (`Decimal("5")` -> `5.00`).

    Refused (INVALID_ARGUMENT on `field`) rather than rounded: a negative amount, fractions
    of a fen (someone computed it with floats or in the wrong unit), or an absurd figure."""
    if not x.is_finite():
        raise invalid(field, "must be a finite amount")
    if x < 0:
        raise invalid(field, "must not be negative")
    if x > MAX_AMOUNT:
        raise invalid(field, f"must be at most {MAX_AMOUNT} {CNY}")
    rounded = fen(x)
    if rounded != x:
        raise invalid(field, "must have at most 2 decimals (a whole fen)")
    return rounded if rounded else ZERO  # -0 is 0
