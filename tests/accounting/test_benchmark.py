"""Earnings against hashprice: the mean over a period is the per-second average of the step
function its samples make, and a statement's benchmark always adds up to its gross and net."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounting import mean_hashprice, statement_benchmark, value_at_hashprice

samples = st.lists(
    st.tuples(st.integers(0, 120), st.fractions(min_value=0, max_value=10**6)), max_size=6
)


@given(samples, st.integers(0, 100), st.integers(1, 60))
def test_the_mean_is_the_average_over_each_covered_second(
    steps: list[tuple[int, Fraction]], start: int, length: int
) -> None:
    end = start + length
    by_time = dict(sorted(steps))  # a later sample at the same second replaces the earlier
    per_second = []
    for t in range(start, end):
        known = [v for s, v in by_time.items() if s <= t]
        if known:
            per_second.append(known[-1])
    mean, covered = mean_hashprice(list(by_time.items()), start, end)
    assert covered == len(per_second)
    assert mean == (sum(per_second, Fraction(0)) / len(per_second) if per_second else None)


def test_before_the_first_sample_nothing_is_covered() -> None:
    assert mean_hashprice([(100, 7)], 0, 100) == (None, 0)
    assert mean_hashprice([(50, 7), (75, 11)], 0, 100) == (Fraction(7 * 25 + 11 * 25, 50), 50)
    with pytest.raises(ValueError, match="end must be after start"):
        mean_hashprice([], 5, 5)


@given(
    nominal=st.fractions(min_value=0, max_value=10**9),
    ratio=st.fractions(min_value=0, max_value=1),
    hp=st.fractions(min_value=0, max_value=10**8),
    fee=st.fractions(min_value=0, max_value=1),
    gross=st.integers(0, 10**12),
    elec=st.integers(0, 10**10),
    serv=st.integers(0, 10**10),
)
def test_the_benchmark_always_adds_up(
    nominal: Fraction, ratio: Fraction, hp: Fraction, fee: Fraction, gross: int, elec: int,
    serv: int,
) -> None:  # fmt: skip
    b = statement_benchmark(
        nominal_th_seconds=nominal, delivery_ratio=ratio, hashprice_sat_per_th_day=hp,
        pool_fee=fee, gross_sat=gross, electricity_sat=elec, service_sat=serv,
    )  # fmt: skip
    parts = b.hashprice_value_sat + b.delivery_gap_sat + b.pool_fee_sat + b.luck_and_rounding_sat
    assert parts == gross
    assert gross + b.costs_sat == gross - elec - serv
    assert b.net_vs_hashprice_sat == gross - elec - serv - b.hashprice_value_sat
    assert b.hashprice_value_sat == value_at_hashprice(nominal, 1, hp)
    assert b.delivery_gap_sat <= 0 and b.pool_fee_sat <= 0


def test_a_full_delivery_at_hashprice_less_the_fee_is_no_luck() -> None:
    """A holder of 1.5 TH/s for a day at 50,000 sat/TH/day, fully delivered, FPPS at 2 %:
    gross is exactly hashprice less the fee, so luck is 0 and the costs show as 30 %."""
    b = statement_benchmark(
        nominal_th_seconds=Fraction(3, 2) * 86_400, delivery_ratio=1,
        hashprice_sat_per_th_day=50_000, pool_fee=Fraction(1, 50), gross_sat=73_500,
        electricity_sat=20_000, service_sat=2_050,
    )  # fmt: skip
    assert b.hashprice_value_sat == 75_000 and b.pool_fee_sat == -1_500
    assert b.delivery_gap_sat == 0 and b.luck_and_rounding_sat == 0
    assert b.costs_share_of_gross == Fraction(22_050, 73_500) == Fraction(3, 10)
    assert b.gross_vs_hashprice == Fraction(49, 50)
