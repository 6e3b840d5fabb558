"""How every quantity is shown to people: satoshis and BTC, hashrates, difficulties,
hashprices, percentages, dollars, energy and times in UTC. The API puts these strings beside
the exact values (the dashboard shows them as they are) and the CSV exports carry them in
their display columns: one formatter for the page and the files.

The rule every function keeps: a display is right to its last digit, or it starts with "≈ "
(it was rounded; the exact value is beside it). Satoshi and BTC amounts are never rounded.
Pure: imports only the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

ROUNDED = "≈ "
TIMES = "\u00d7"  # the multiplication sign of '2.3 x 10^-10'
DASH = "\u2013"  # the en dash between a period's start and end
SAT_PER_BTC = 100_000_000
HASH_UNITS = ("H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s", "ZH/s")
SI = ("", "k", "M", "G", "T", "P", "E", "Z", "Y")
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

Number = int | Fraction


def exact(x: Number) -> str:
    """The exact value as text: a decimal when it has one (its denominator is 2**a * 5**b),
    else the fraction 'n/d'."""
    x = Fraction(x)
    d, twos, fives = x.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return str(x)
    places = max(twos, fives)
    scaled = x.numerator * 10**places // x.denominator
    sign, digits = ("-" if scaled < 0 else ""), str(abs(scaled)).rjust(places + 1, "0")
    return sign + (digits[:-places] + "." + digits[-places:] if places else digits)


def group(n: int) -> str:
    """An integer with thousands separators: 1234567 -> '1,234,567'."""
    return f"{n:,}"


def fixed(x: Number, places: int) -> str:
    """x to `places` decimals (half away from zero), thousands separated, "≈ " when that
    dropped anything."""
    x = Fraction(x)
    scale = 10**places
    scaled = abs(x) * scale
    whole = scaled.numerator // scaled.denominator
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    sign = "-" if x < 0 else ""
    text = group(whole // scale)
    if places:
        text += "." + str(whole % scale).rjust(places, "0")
    return (ROUNDED if Fraction(whole, scale) != abs(x) else "") + sign + text


def significant(x: Number, digits: int = 4) -> str:
    """x with `digits` significant digits in plain decimals (for values below 1), thousands
    separated above; scientific notation below 1e-6. "≈ " when rounded."""
    x = Fraction(x)
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1:
        places = max(0, digits - len(str(a.numerator // a.denominator)))
        return fixed(x, places)
    exponent = 0  # a x 10**exponent lands in [1, 10)
    while a * 10**exponent < 1:
        exponent += 1
    if exponent > 6:
        mantissa = fixed(x * 10**exponent, digits - 1)
        approx = mantissa.startswith(ROUNDED)
        core = mantissa.removeprefix(ROUNDED)
        if not approx:  # exact: no trailing zeros to suggest a precision it does not need
            core = core.rstrip("0").rstrip(".")
        power = f"-{exponent}".translate(SUPERSCRIPT)
        return (ROUNDED if approx else "") + f"{core} {TIMES} 10{power}"
    return fixed(x, exponent + digits - 1)


def plain(x: Number, digits: int = 4) -> str:
    """A rate or setting as written when it has at most 6 decimals ('21.5', '1,000.25'),
    else `digits` significant digits ('≈ 0.3333')."""
    text = exact(x)
    if "/" not in text and len(text.partition(".")[2]) <= 6:
        whole, dot, frac = text.partition(".")
        sign = "-" if whole.startswith("-") else ""
        return sign + group(abs(int(whole))) + dot + frac
    return significant(x, digits)


def sat(n: int) -> str:
    """Satoshis, exact: '1,234,567 sat'."""
    return f"{group(n)} sat"


def btc(n_sat: int) -> str:
    """Satoshis as BTC with all 8 decimals (exact): '-0.00001234 BTC'."""
    return f"{btc_amount(n_sat)} BTC"


def btc_amount(n_sat: int) -> str:
    """The BTC amount of `n_sat` satoshis with its 8 decimals and no unit: '-0.00001234'."""
    sign = "-" if n_sat < 0 else ""
    whole, frac = divmod(abs(n_sat), SAT_PER_BTC)
    return f"{sign}{group(whole)}.{frac:08d}"


def _scaled(x: Fraction, step: int, units: tuple[str, ...]) -> tuple[Fraction, str]:
    i = 0
    while abs(x) >= step and i < len(units) - 1:
        x /= step
        i += 1
    return x, units[i]


def hashrate(hs: Number) -> str:
    """H/s in the unit that fits, 2 decimals: 2000 -> '2.00 kH/s', 1163710 -> '≈ 1.16 MH/s'."""
    value, unit = _scaled(Fraction(hs), 1000, HASH_UNITS)
    if 0 < abs(value) < 1:  # below 1 H/s: significant digits, not '≈ 0.00'
        return f"{significant(value, 3)} {unit}"
    return f"{fixed(value, 2)} {unit}"


def hashrate_th(th_per_s: Number) -> str:
    """A hashrate given in TH/s, shown like `hashrate`."""
    return hashrate(Fraction(th_per_s) * 10**12)


def difficulty(d: Number) -> str:
    """A share or network difficulty: with an SI prefix from 1,000 up ('≈ 1.23 G'), else
    4 significant digits ('0.001953', '≈ 9.537 x 10⁻⁷' with a multiplication sign)."""
    d = Fraction(d)
    if abs(d) < 1000:
        return significant(d, 4)
    value, prefix = _scaled(d, 1000, SI)
    return f"{fixed(value, 2)} {prefix}".rstrip()


def percent(x: Number, places: int = 2) -> str:
    """A ratio as a percentage: Fraction(197, 200) -> '98.50 %'."""
    return f"{fixed(Fraction(x) * 100, places)} %"


def usd(x: Number) -> str:
    """Dollars: exact with at least cents when the value has at most 6 decimals ('$65,432.10',
    '$0.0125'); else to the cent from one cent up, or 4 significant digits below
    ('$1 x 10⁻¹³' with a multiplication sign)."""
    x = Fraction(x)
    text = exact(x)
    places = len(text.partition(".")[2]) if "/" not in text else None
    if places is not None and places <= 6:
        text = fixed(x, max(2, places))
    elif abs(x) >= Fraction(1, 100):
        text = fixed(x, 2)
    else:
        text = significant(x, 4)
    approx = text.startswith(ROUNDED)
    core = text.removeprefix(ROUNDED)
    sign = "-" if core.startswith("-") else ""
    return (ROUNDED if approx else "") + f"{sign}${core.removeprefix('-')}"


ENERGY = ((Fraction(10**3), "MWh"), (Fraction(1), "kWh"), (Fraction(1, 10**3), "Wh"),
          (Fraction(1, 10**6), "mWh"), (Fraction(1, 10**9), "µWh"), (Fraction(1, 10**12), "nWh"),
          (Fraction(1, 10**15), "pWh"))  # fmt: skip


def energy(kwh: Number) -> str:
    """Energy in the unit that fits, 3 significant digits: 1/1500000000000 kWh -> '≈ 667 pWh'."""
    kwh = Fraction(kwh)
    if kwh == 0:
        return "0 kWh"
    for scale, unit in ENERGY:
        if abs(kwh) >= scale:
            return f"{significant(kwh / scale, 3)} {unit}"
    return f"{significant(kwh / ENERGY[-1][0], 3)} {ENERGY[-1][1]}"


HASHPRICE_UNITS = ("TH", "GH", "MH", "kH", "H")


def hashprice(sat_per_th_day: Number) -> str:
    """Satoshis per unit of hashrate per day, per TH unless that needs more than 9 integer
    digits; then per a smaller unit (a test chain's tiny difficulty makes a TH/s worth
    trillions of satoshis a day): '≈ 51,498,446.43 sat/(H/s)/day'."""
    value = Fraction(sat_per_th_day)
    for unit in HASHPRICE_UNITS:
        if abs(value) < 10**9 or unit == HASHPRICE_UNITS[-1]:
            return f"{fixed(value, 2)} sat/({unit}/s)/day"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def utc(ts_s: int) -> str:
    """Unix seconds as '2027-01-15 00:39 UTC' (seconds shown when not on the minute)."""
    when = datetime.fromtimestamp(ts_s, UTC)
    return when.strftime("%Y-%m-%d %H:%M" + (":%S" if ts_s % 60 else "")) + " UTC"


def utc_ms(ts_ms: int) -> str:
    """Unix milliseconds as '2027-01-15 00:39:07 UTC' (to the second; '≈' is not shown:
    the exact milliseconds are always the field beside it)."""
    return datetime.fromtimestamp(ts_ms // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def period(start_s: int, end_s: int) -> str:
    """A period [start, end): a whole UTC day as '2027-01-15'; else its start and end, the
    end's date left out when it is the same day: '2027-01-15 00:01-00:02 UTC' (an en
    dash)."""
    if end_s - start_s == 86_400 and start_s % 86_400 == 0:
        return datetime.fromtimestamp(start_s, UTC).date().isoformat()
    a, b = utc(start_s).removesuffix(" UTC"), utc(end_s).removesuffix(" UTC")
    if a[:10] == b[:10]:
        b = b[11:]
    return f"{a}{DASH}{b} UTC"


def duration(seconds: int) -> str:
    """A period's length: '1 min', '1 h', '1 day', '90 s'."""
    for size, unit in ((86_400, "day"), (3600, "h"), (60, "min")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{seconds} s"


__all__ = [
    "ROUNDED",
    "btc",
    "btc_amount",
    "difficulty",
    "duration",
    "energy",
    "exact",
    "fixed",
    "group",
    "hashprice",
    "hashrate",
    "hashrate_th",
    "percent",
    "period",
    "plain",
    "sat",
    "significant",
    "usd",
    "utc",
    "utc_ms",
]
