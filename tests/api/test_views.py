"""How the API shows numbers: an exact decimal where the value has one, the exact fraction
otherwise (always beside a rounded display value); hashrates in the unit that fits."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st


@given(st.integers(-(10**12), 10**12), st.integers(0, 12), st.integers(0, 12), st.integers(1, 50))
def test_an_exact_decimal_where_the_value_has_one_else_the_fraction(
    n: int, twos: int, fives: int, other: int
) -> None:
    from decimal import Decimal

    from poold.api.views import decimal_or_fraction

    x = Fraction(n, 2**twos * 5**fives * other)
    text = decimal_or_fraction(x)
    terminating = all(p in (2, 5) for p in _primes(x.denominator))
    if terminating:
        assert "/" not in text and Fraction(Decimal(text)) == x
    else:
        assert text == str(x)


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def test_hashrate_is_shown_in_the_unit_that_fits() -> None:
    from poold.api.views import hashrate_display

    assert hashrate_display(Fraction(63, 100_000_000)) == "630.00 kH/s"
    assert hashrate_display(Fraction(2, 1_000_000)) == "2.00 MH/s"
    assert hashrate_display(Fraction(150)) == "150.00 TH/s"
    assert hashrate_display(Fraction(0)) == "0.00 H/s"
