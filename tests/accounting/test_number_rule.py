"""One rule for every number a public accounting function takes, tested field by field.

Every number may be an int, a str, a Decimal or a Fraction and is read exactly; bool and float
are refused with a TypeError naming the field. Whole-unit fields (satoshis, seconds, counts)
take the same forms but must have an integral value: "21600" is 21600 seconds, "21600.5" is a
ValueError naming the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from accounting import (
    avg_fees,
    fpps_settle,
    fpps_share_value,
    hashprice,
    hashrate,
    mean_hashprice,
    pplns_split,
    prop_split,
    solo_split,
    statement_benchmark,
    token_settle,
    value_at_hashprice,
)

V = dict[str, Any]


def _tokens(v: V) -> Any:
    return token_settle(
        v["period_start"],
        v["period_end"],
        {"h1": v["opening['h1']"], "h2": 2},
        [(v["transfers[0].t"], "h1", "h2", v["transfers[0].amount"])],
        th_per_token=v["th_per_token"],
        w_per_th=v["w_per_th"],
        usd_per_kwh=v["usd_per_kwh"],
        btc_usd=v["btc_usd"],
        delivered_th_per_s=v["delivered_th_per_s"],
        period_earnings_sat=v["period_earnings_sat"],
        service_usd_per_th_day=v["service_usd_per_th_day"],
        discount=v["discount"],
        debt_in={"h1": v["debt_in['h1']"]},
    )


# (function, call from named values, {field: (value, whole)})
CASES: list[tuple[str, Callable[[V], Any], dict[str, tuple[Any, bool]]]] = [
    (
        "pplns_split",
        lambda v: pplns_split(
            v["block_reward_sat"],
            [
                ("a", v["shares[0].share_difficulty"], v["shares[0].network_difficulty"]),
                ("b", 1, 3),
            ],
            factor=v["factor"],
            pool_fee=v["pool_fee"],
        ),
        {
            "block_reward_sat": (5_000_000_000, True),
            "shares[0].share_difficulty": (Fraction(3, 2), False),
            "shares[0].network_difficulty": (3, False),
            "factor": (Fraction(1, 2), False),
            "pool_fee": (Fraction(1, 100), False),
        },
    ),
    (
        "prop_split",
        lambda v: prop_split(
            v["block_reward_sat"],
            [
                ("a", v["shares[0].share_difficulty"], v["shares[0].network_difficulty"]),
                ("b", 1, 3),
            ],
            pool_fee=v["pool_fee"],
        ),
        {
            "block_reward_sat": (312_500_001, True),
            "shares[0].share_difficulty": (Fraction(7, 4), False),
            "shares[0].network_difficulty": (5, False),
            "pool_fee": (Fraction(3, 200), False),
        },
    ),
    (
        "solo_split",
        lambda v: solo_split(v["block_reward_sat"], "a", pool_fee=v["pool_fee"]),
        {"block_reward_sat": (625_000_000, True), "pool_fee": (Fraction(1, 50), False)},
    ),
    (
        "fpps_settle",
        lambda v: fpps_settle(
            [("a", v["shares[0].share_difficulty"], v["shares[0].network_difficulty"])],
            subsidy_sat=v["subsidy_sat"],
            avg_fees_sat=v["avg_fees_sat"],
            pool_fee=v["pool_fee"],
            carry_in={"a": v["carry_in['a']"]},
        ),
        {
            "shares[0].share_difficulty": (Fraction(9, 8), False),
            "shares[0].network_difficulty": (1000, False),
            "subsidy_sat": (312_500_000, True),
            "avg_fees_sat": (Fraction(2_000_001, 3), False),
            "pool_fee": (Fraction(2, 100), False),
            "carry_in['a']": (Fraction(1, 3), False),
        },
    ),
    (
        "fpps_share_value",
        lambda v: fpps_share_value(
            v["share_difficulty"],
            v["network_difficulty"],
            subsidy_sat=v["subsidy_sat"],
            avg_fees_sat=v["avg_fees_sat"],
            pool_fee=v["pool_fee"],
        ),
        {
            "share_difficulty": (Fraction(1, 2), False),
            "network_difficulty": (7, False),
            "subsidy_sat": (312_500_000, True),
            "avg_fees_sat": (Fraction(5, 2), False),
            "pool_fee": (Fraction(1, 40), False),
        },
    ),
    (
        "avg_fees",
        lambda v: avg_fees([v["fees_per_block[0]"], 7, 9], v["n"]),
        {"fees_per_block[0]": (5, True), "n": (2, True)},
    ),
    (
        "hashrate",
        lambda v: hashrate(
            [(v["shares[0].timestamp"], v["shares[0].share_difficulty"])], v["start"], v["end"]
        ),
        {
            "shares[0].timestamp": (Fraction(21, 2), False),
            "shares[0].share_difficulty": (Fraction(3, 4), False),
            "start": (10, False),
            "end": (70, False),
        },
    ),
    (
        "hashprice",
        lambda v: hashprice(v["network_difficulty"], v["subsidy_sat"], v["avg_fees_sat"]),
        {
            "network_difficulty": (Fraction("86388558925171.02"), False),
            "subsidy_sat": (312_500_000, True),
            "avg_fees_sat": (Fraction(1, 3), False),
        },
    ),
    (
        "mean_hashprice",
        lambda v: mean_hashprice([(v["samples[0].t"], v["hashprice"]), (30, 5)], 0, v["end"]),
        {"samples[0].t": (0, True), "hashprice": (Fraction(7, 3), False), "end": (60, True)},
    ),
    (
        "statement_benchmark",
        lambda v: statement_benchmark(
            nominal_th_seconds=v["nominal_th_seconds"],
            delivery_ratio=v["delivery_ratio"],
            hashprice_sat_per_th_day=v["hashprice_sat_per_th_day"],
            pool_fee=v["pool_fee"],
            gross_sat=v["gross_sat"],
            electricity_sat=v["electricity_sat"],
            service_sat=v["service_sat"],
        ),
        {
            "nominal_th_seconds": (Fraction(86_400 * 3, 2), False),
            "delivery_ratio": (Fraction(9, 10), False),
            "hashprice_sat_per_th_day": (Fraction(50_001, 2), False),
            "pool_fee": (Fraction(1, 50), False),
            "gross_sat": (30_000, True),
            "electricity_sat": (9_000, True),
            "service_sat": (1_000, True),
        },
    ),
    (
        "value_at_hashprice",
        lambda v: value_at_hashprice(v["th_per_s"], v["seconds"], v["hashprice_sat_per_th_day"]),
        {
            "th_per_s": (Fraction(3, 2), False),
            "seconds": (3600, True),
            "hashprice_sat_per_th_day": (Fraction(50_001, 2), False),
        },
    ),
    (
        "token_settle",
        _tokens,
        {
            "period_start": (0, True),
            "period_end": (86_400, True),
            "opening['h1']": (Fraction(5, 2), False),
            "transfers[0].t": (21_600, True),
            "transfers[0].amount": (Fraction(1, 2), False),
            "th_per_token": (Fraction(1, 10), False),
            "w_per_th": (Fraction(43, 2), False),
            "usd_per_kwh": (Fraction(6, 100), False),
            "btc_usd": (Fraction(194_001, 2), False),
            "delivered_th_per_s": (Fraction(9, 20), False),
            "period_earnings_sat": (1_234_567, True),
            "service_usd_per_th_day": (Fraction(1, 100), False),
            "discount": (Fraction(1, 10), False),
            "debt_in['h1']": (17, True),
        },
    ),
]

FIELDS = [(name, call, values, f) for name, call, values in CASES for f in values]
IDS = [f"{name}:{f}" for name, _c, _v, f in FIELDS]


def _as_decimal_string(x: Fraction) -> str | None:
    """x as a finite decimal string, or None when it has none (e.g. 1/3)."""
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return None
    places = 0
    while (x * 10**places).denominator != 1:
        places += 1
    return str(Decimal(x.numerator) / Decimal(x.denominator)) if places else str(x.numerator)


def _same(result: Any) -> Any:
    """A result in comparable form (split results carry a lazy scores callable)."""
    if hasattr(result, "unallocated_sat"):
        return (result.credits, result.pool_fee_sat, result.unallocated_sat, result.scores)
    return result


def _base(values: dict[str, tuple[Any, bool]]) -> V:
    return {k: v for k, (v, _w) in values.items()}


@pytest.mark.parametrize(("name", "call", "values", "field"), FIELDS, ids=IDS)
def test_every_exact_form_gives_the_same_result(name, call, values, field) -> None:
    base = _base(values)
    want = _same(call(base))
    x = Fraction(base[field])
    forms: list[Any] = [x, str(x), f" {x} "]
    dec = _as_decimal_string(x)
    if dec is not None:
        forms += [dec, Decimal(dec)]
    for form in forms:
        assert _same(call({**base, field: form})) == want, (name, field, form)


@pytest.mark.parametrize(("name", "call", "values", "field"), FIELDS, ids=IDS)
def test_floats_bools_and_junk_are_refused_naming_the_field(name, call, values, field) -> None:
    base = _base(values)
    field_re = re.escape(field)
    for bad in (float(base[field]), True):
        with pytest.raises(TypeError, match=field_re):
            call({**base, field: bad})
    with pytest.raises(ValueError, match=field_re):
        call({**base, field: "twelve"})


@pytest.mark.parametrize(
    ("name", "call", "values", "field"),
    [c for c in FIELDS if c[2][c[3]][1]],
    ids=[i for i, c in zip(IDS, FIELDS, strict=True) if c[2][c[3]][1]],
)
def test_whole_fields_refuse_a_fractional_value(name, call, values, field) -> None:
    base = _base(values)
    field_re = re.escape(field)
    for bad in (f"{base[field]}.5", Decimal(base[field]) + Decimal("0.25"), Fraction(1, 3)):
        with pytest.raises(ValueError, match=field_re + ": expected a whole number"):
            call({**base, field: bad})


def test_the_issue_example_a_transfer_time_as_a_string() -> None:
    v = _base(CASES[-1][2])
    assert _tokens({**v, "transfers[0].t": "21600"}) == _tokens(v)
