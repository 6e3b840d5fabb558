"""Share difficulties: parsed exactly, the values poold credits (whole numbers, or 1/2**k
below 1), and how they are shown to miners. Target and `nbits` math is `poold.chain.targets`.
Imports only the standard library and `poold.chain`.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

#: The smallest difficulty poold accepts anywhere: at 2**-32 every hash is a share.
MIN_DIFFICULTY = Fraction(1, 2**32)
MAX_DIFFICULTY = Fraction(2**60)


def to_difficulty(value: object, *, field: str = "difficulty") -> Fraction:
    """Parse a difficulty exactly from int, str ("0.5", "1/4", "65536"), Decimal, Fraction or float.

    Floats are converted exactly (their binary value), which is what a miner sending `0.001`
    in JSON means closely enough; the result is then bounded to [2**-32, 2**64].
    """
    pre = f"{field}: " if field else ""
    if isinstance(value, bool):
        raise TypeError(f"{pre}expected a number, got a boolean")
    try:
        if isinstance(value, Fraction):
            d = value
        elif isinstance(value, int):
            d = Fraction(value)
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{pre}{value!r} is not a finite number")
            d = Fraction(value)
        elif isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError(f"{pre}{value!r} is not a finite number")
            d = Fraction(value)
        elif isinstance(value, str):
            d = Fraction(value.strip())
        else:
            raise TypeError(f"{pre}expected a number, got {type(value).__name__}")
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"{pre}cannot read {value!r} as a difficulty ({exc})") from None
    if d <= 0:
        raise ValueError(f"{pre}difficulty must be > 0, got {value!r}")
    if d < MIN_DIFFICULTY or d > MAX_DIFFICULTY:
        raise ValueError(f"{pre}difficulty {value!r} is outside [2**-32, 2**60]")
    return d


def quantize(difficulty: Fraction) -> Fraction:
    """Round down to an integer when >= 1, else to a power of two (exact, never zero).

    Every difficulty poold credits is quantized: within [2**-32, 2**60] its numerator and
    denominator each fit the share record's 64-bit fields."""
    n, m = difficulty.numerator, difficulty.denominator
    if n >= m:
        return Fraction(n // m)
    # Smallest k with 1/2**k <= n/m, i.e. m <= n * 2**k (integer arithmetic only).
    k = max(0, (m // n).bit_length() - 1)
    while n << k < m:
        k += 1
    return Fraction(1, 1 << k)


def is_quantized(difficulty: Fraction) -> bool:
    """A whole number, or 1/2**k."""
    n, m = difficulty.numerator, difficulty.denominator
    return m == 1 or (n == 1 and m & (m - 1) == 0)


def share_difficulty(value: object, *, field: str = "difficulty") -> Fraction:
    """An operator's share difficulty: exact, in bounds, and already quantized.

    A value that `quantize` would change is refused with the two nearest values that work,
    rather than rounded in silence (a config says what it means)."""
    d = to_difficulty(value, field=field)
    if is_quantized(d):
        return d
    below = quantize(d)
    above = below * 2 if below < 1 else below + 1
    pre = f"{field}: " if field else ""
    raise ValueError(
        f"{pre}{value!r} is not a difficulty poold can credit exactly (whole numbers, or "
        f"1/2**k below 1); use {_show(below)} or {_show(above)}"
    )


def _show(d: Fraction) -> str:
    if d.denominator == 1:
        return str(d.numerator)
    return f'"1/{d.denominator}" (2**-{d.denominator.bit_length() - 1} = {float(d)!r})'


def format_difficulty(difficulty: Fraction) -> int | float:
    """Difficulty as a JSON number for `mining.set_difficulty` (int when whole)."""
    if difficulty.denominator == 1:
        return difficulty.numerator
    return float(difficulty)
