"""How the API shows numbers (`poold.api.display`): an exact decimal where the value has one,
the exact fraction otherwise; every display right to its last digit or starting with "≈ ";
hashrates, hashprices, energy and dollars in the unit that fits; times in UTC."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from poold.api import display


@given(st.integers(-(10**12), 10**12), st.integers(0, 12), st.integers(0, 12), st.integers(1, 50))
def test_an_exact_decimal_where_the_value_has_one_else_the_fraction(
    n: int, twos: int, fives: int, other: int
) -> None:
    x = Fraction(n, 2**twos * 5**fives * other)
    text = display.exact(x)
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


def _value(text: str) -> Fraction:
    """The number a display shows (separators, unit and '≈ ' taken off)."""
    core = text.removeprefix(display.ROUNDED).split(" ")[0].replace(",", "").removeprefix("$")
    return Fraction(Decimal(core))


@given(st.fractions(min_value=-(10**15), max_value=10**15), st.integers(0, 8))
def test_a_display_is_exact_or_says_it_is_rounded(x: Fraction, places: int) -> None:
    text = display.fixed(x, places)
    shown = _value(text)
    if text.startswith(display.ROUNDED):
        assert shown != x and abs(shown - x) <= Fraction(1, 2 * 10**places)
    else:
        assert shown == x


@given(st.integers(-(10**17), 10**17))
def test_satoshis_and_btc_are_never_rounded(n: int) -> None:
    assert Fraction(Decimal(display.btc_amount(n).replace(",", ""))) == Fraction(n, 10**8)
    assert int(display.sat(n).removesuffix(" sat").replace(",", "")) == n
    assert not display.btc(n).startswith(display.ROUNDED)


def test_the_numbers_the_issue_found_wrong() -> None:
    # The simnet's hashprice: exact 823975142816162109375/16; a float showed
    # 51498449392318726144.000 (wrong past the 8th digit) with no separators.
    hp = Fraction(823975142816162109375, 16)
    assert display.exact(hp) == "51498446426010131835.9375"
    assert display.hashprice(hp) == "≈ 51,498,446.43 sat/(H/s)/day"
    assert display.hashprice(50_123) == "50,123.00 sat/(TH/s)/day"
    # kWh "0.000" was shown for an exact 1/1500000000000.
    assert display.energy(Fraction(1, 1_500_000_000_000)) == "≈ 667 pWh"
    assert display.energy(Fraction(3, 2)) == "1.50 kWh"


def test_hashrates_in_the_unit_that_fits() -> None:
    assert display.hashrate_th(Fraction(63, 100_000_000)) == "630.00 kH/s"
    assert display.hashrate_th(Fraction(2, 1_000_000)) == "2.00 MH/s"
    assert display.hashrate_th(Fraction(150)) == "150.00 TH/s"
    assert display.hashrate(0) == "0.00 H/s"
    assert display.hashrate(1_163_710) == "≈ 1.16 MH/s"


def test_difficulties_percentages_dollars_and_times() -> None:
    assert display.difficulty(Fraction(1, 512)) == "≈ 0.001953"
    assert display.difficulty(2**18) == "≈ 262.14 k"
    assert display.difficulty(Fraction(1, 2**32)) == "≈ 2.328 \u00d7 10⁻¹⁰"
    assert display.difficulty(Fraction(1, 2)) == "0.5000"
    assert display.percent(Fraction(197, 200)) == "98.50 %"
    assert display.percent(Fraction(1, 3)) == "≈ 33.33 %"
    assert display.usd(Fraction("65432.1")) == "$65,432.10"
    assert display.usd(Fraction(1, 10**13)) == "$1 \u00d7 10⁻¹³"
    assert display.usd(Fraction("0.05")) == "$0.05"
    assert display.usd(Fraction("0.0125")) == "$0.0125"
    assert display.utc(1_800_000_000) == "2027-01-15 08:00 UTC"
    assert display.utc_ms(1_800_000_007_999) == "2027-01-15 08:00:07 UTC"
    # A day is its date; a shorter period shows its times (rows no longer all read the same
    # date when periods are hours or minutes).
    assert display.period(1_799_971_200, 1_800_057_600) == "2027-01-15"
    assert display.period(1_800_000_000, 1_800_000_060) == "2027-01-15 08:00\u201308:01 UTC"
    assert display.period(1_800_003_540, 1_800_003_660) == "2027-01-15 08:59\u201309:01 UTC"
    assert display.period(1_800_057_540, 1_800_057_660) == (
        "2027-01-15 23:59\u20132027-01-16 00:01 UTC"
    )
    assert display.plain(Fraction("21.5")) == "21.5" and display.plain(1000) == "1,000"
    assert display.plain(Fraction(1, 3)) == "≈ 0.3333"
    assert display.duration(60) == "1 min" and display.duration(86_400) == "1 day"
