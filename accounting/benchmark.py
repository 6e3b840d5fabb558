"""Earnings against the network's hashprice: what a hashrate would have earned at plain
hashprice, and where a token holder's statement differs from it. Imports `accounting` only.

Hashprice over a period: the chain's hashprice (`hashrate.hashprice`: subsidy + average fees
over the difficulty) is a step function of time, known from samples (t, hashprice) taken when
it changes; its value at t is the newest sample at or before t. The period's hashprice is its
time-weighted mean over the part of the period the samples cover (from the first sample on).

A holder's statement against it (all exact, in satoshis):
  hashprice_value   = nominal TH·days x hashprice        what plain hashprice pays the tokens
  delivery_gap      = (delivered - nominal) TH·days x hp what under-delivery cost (<= 0)
  pool_fee          = - fee x delivered TH·days x hp     what the pool's fee takes
  luck_and_rounding = gross - the three above            block luck, the fees FPPS booked
                                                         with, the pot's rounding to sats
  costs             = - (electricity + service)
so that hashprice_value + delivery_gap + pool_fee + luck_and_rounding = gross and
gross + costs = net, always.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from accounting.money import exact, non_negative, rate, satoshis, whole

SECONDS_PER_DAY = 86_400


def mean_hashprice(
    samples: Sequence[tuple[object, object]], start: object, end: object
) -> tuple[Fraction | None, int]:
    """(time-weighted mean hashprice over [start, end), seconds covered), from samples
    (t, hashprice) in any order, times in whole seconds; (None, 0) when no sample is at or
    before `end`."""
    start, end = whole(start, "start"), whole(end, "end")
    if end <= start:
        raise ValueError("end must be after start")
    steps = sorted(
        (whole(t, f"samples[{i}].t"), non_negative(v, "hashprice"))
        for i, (t, v) in enumerate(samples)
    )
    total, covered = Fraction(0), 0
    for i, (t, value) in enumerate(steps):
        nxt = steps[i + 1][0] if i + 1 < len(steps) else end
        lo, hi = max(t, start), min(nxt, end)
        if hi > lo:
            total += value * (hi - lo)
            covered += hi - lo
    return (total / covered if covered else None), covered


@dataclass(frozen=True)
class StatementBenchmark:
    hashprice_value_sat: Fraction
    delivery_gap_sat: Fraction
    pool_fee_sat: Fraction
    luck_and_rounding_sat: Fraction
    costs_sat: Fraction
    net_vs_hashprice_sat: Fraction
    costs_share_of_gross: Fraction | None  # None: nothing gross
    gross_vs_hashprice: Fraction | None  # gross / hashprice value; None: no value


def statement_benchmark(
    *,
    nominal_th_seconds: object,
    delivery_ratio: object,
    hashprice_sat_per_th_day: object,
    pool_fee: object,
    gross_sat: int,
    electricity_sat: int,
    service_sat: int,
) -> StatementBenchmark:
    """One holder's period against plain hashprice (see the module docstring)."""
    nominal = non_negative(nominal_th_seconds, "nominal_th_seconds")
    ratio = rate(delivery_ratio, "delivery_ratio")
    hp = non_negative(hashprice_sat_per_th_day, "hashprice_sat_per_th_day")
    fee = rate(pool_fee, "pool_fee")
    gross = satoshis(gross_sat, "gross_sat")
    costs = satoshis(electricity_sat, "electricity_sat") + satoshis(service_sat, "service_sat")
    value = nominal * hp / SECONDS_PER_DAY
    delivered_value = value * ratio
    gap = delivered_value - value
    fee_sat = -fee * delivered_value
    luck = gross - value - gap - fee_sat
    net = gross - costs
    return StatementBenchmark(
        hashprice_value_sat=value,
        delivery_gap_sat=gap,
        pool_fee_sat=fee_sat,
        luck_and_rounding_sat=luck,
        costs_sat=Fraction(-costs),
        net_vs_hashprice_sat=net - value,
        costs_share_of_gross=Fraction(costs, gross) if gross else None,
        gross_vs_hashprice=gross / value if value else None,
    )


def value_at_hashprice(
    th_per_s: object, seconds: object, hashprice_sat_per_th_day: object
) -> Fraction:
    """What `th_per_s` over `seconds` earns at a hashprice (sat per TH/s per day), exactly:
    the FPPS value of that work before any pool fee."""
    return (
        exact(th_per_s, "th_per_s")
        * whole(seconds, "seconds")
        * non_negative(hashprice_sat_per_th_day, "hashprice_sat_per_th_day")
        / SECONDS_PER_DAY
    )


__all__ = ["StatementBenchmark", "mean_hashprice", "statement_benchmark", "value_at_hashprice"]
