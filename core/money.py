"""Money for people and for ledgers: Decimal only, rounded once, half up, to the cent (D-3).

No float anywhere: amounts are `Decimal`, intermediate products and quotients are kept exact as
fractions, and the only rounding is the one the customer sees, at a line's boundary.
"""

from decimal import Decimal
from fractions import Fraction

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

_SYMBOLS = {"USD": "$", "EUR": "\u20ac", "GBP": "\u00a3"}


def decimal_of(amount: Decimal | int, what: str = "amount") -> Decimal:
    """`amount` as a finite Decimal; anything else (a float above all) is refused (D-3)."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise TypeError(f"{what} must be a Decimal, not {type(amount).__name__} (D-3)")
    value = Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite number, got {value}")
    return value


def currency_code(code: str) -> str:
    """A 3-letter ISO 4217 code, upper case."""
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha():
        raise ValueError(f"currency must be a 3-letter code, got {code!r}")
    return code.upper()


def round_cents(exact: Fraction) -> Decimal:
    """`exact` rounded to the cent, half up (away from zero), without a float or a context."""
    scaled = abs(exact) * 100
    units = (2 * scaled.numerator + scaled.denominator) // (2 * scaled.denominator)
    if units == 0:
        return ZERO  # never "-0.00"
    # Built from a string so no decimal context can round the digits again.
    return Decimal(f"{'-' if exact < 0 else ''}{units}E-2")


def cents(amount: Decimal) -> Decimal:
    """`amount` rounded to the cent, half up (D-3).

    The same as `amount.quantize(CENT, ROUND_HALF_UP)`, exact at any magnitude.

    >>> cents(Decimal("7.505")), cents(Decimal("2.675")), cents(Decimal("-3.005"))
    (Decimal('7.51'), Decimal('2.68'), Decimal('-3.01'))
    """
    value = decimal_of(amount)
    if value.as_tuple().exponent == -2:  # already whole cents: nothing to round (most amounts, issue 17)
        return value if value else ZERO  # never "-0.00"
    return round_cents(Fraction(value))


def share(amount: Decimal, part: int, whole: int) -> Decimal:
    """`amount x part / whole`, rounded once, at the end, to the cent half up (D-3).

    15.00 x 15/30 = 7.50; 15.00 x 7/31 = 3.3870... -> 3.39

    >>> share(Decimal("15.00"), 15, 30), share(Decimal("15.00"), 7, 31)
    (Decimal('7.50'), Decimal('3.39'))
    """
    value = decimal_of(amount)
    if whole <= 0:
        raise ValueError(f"whole must be positive, got {whole}")
    if part < 0:
        raise ValueError(f"part must not be negative, got {part}")
    return round_cents(Fraction(value) * part / whole)


def format_money(amount: Decimal, currency: str = "USD") -> str:
    """`amount` for people: symbol, thousands separators, two decimals, half up.

    Formatting goes through Decimal's own `format`, never through a float.

    >>> format_money(Decimal("7.5")), format_money(Decimal("1234")), format_money(Decimal("-3"))
    ('$7.50', '$1,234.00', '-$3.00')
    >>> format_money(Decimal("7.50"), "EUR"), format_money(Decimal("7.50"), "chf")
    ('€7.50', '7.50 CHF')
    """
    code = currency_code(currency)
    rounded = cents(amount)
    sign = "-" if rounded < 0 else ""
    digits = format(abs(rounded), ",f")  # already two places: no rounding here
    symbol = _SYMBOLS.get(code)
    if symbol is None:
        return f"{sign}{digits} {code}"
    return f"{sign}{symbol}{digits}"
