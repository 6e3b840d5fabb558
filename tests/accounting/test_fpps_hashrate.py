from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting import (
    avg_fees,
    fpps_settle,
    fpps_settle_arrays,
    fpps_share_value,
    hashprice,
    hashrate,
    hashrate_windows,
    reference,
)
from tests.accounting.strategies import fees, share_lists
from tests.accounting.test_pplns import BLOCK_840000_FEES, BLOCK_840000_NET, BLOCK_840000_SUBSIDY


def test_share_value_and_avg_fees() -> None:
    v = fpps_share_value(1, 4, subsidy_sat=100, avg_fees_sat=Fraction(7), pool_fee="1/10")
    assert v == Fraction(1, 4) * 107 * Fraction(9, 10)
    assert avg_fees([10, 20, 30, 40], n=3) == 30
    assert avg_fees([1, 2], n=144) == Fraction(3, 2)
    with pytest.raises(ValueError, match="at least one"):
        avg_fees([])
    with pytest.raises(ValueError, match="n:"):
        avg_fees([1], n=0)


def test_block_840000_share_value() -> None:
    # A difficulty-65536 share at block 840000, with that block's fees as the average:
    # 65536 / 86388558925171.02 x 4,075,061,499 sat x 0.98 = 3.0296 sat.
    v = fpps_share_value(
        65536,
        BLOCK_840000_NET,
        subsidy_sat=BLOCK_840000_SUBSIDY,
        avg_fees_sat=BLOCK_840000_FEES,
        pool_fee="0.02",
    )
    assert v == Fraction(65536) / BLOCK_840000_NET * 4_075_061_499 * Fraction(98, 100)
    assert 3.0295 < float(v) < 3.0296


@settings(max_examples=200, deadline=None)
@given(share_lists(), st.integers(0, 5 * 10**9), st.integers(0, 10**9), fees)
def test_fpps_matches_reference(shares, subsidy, avg, fee) -> None:
    got = fpps_settle(shares, subsidy_sat=subsidy, avg_fees_sat=avg, pool_fee=fee)
    credits, carry = reference.fpps(shares, subsidy, Fraction(avg), fee, {})
    assert got.credits == credits and got.carry == carry


@settings(max_examples=150, deadline=None)
@given(share_lists(max_size=80), st.lists(st.integers(0, 80), max_size=6), fees)
def test_fpps_nothing_lost_across_any_split_of_a_period(shares, cuts, fee) -> None:
    whole = fpps_settle(shares, subsidy_sat=312_500_000, avg_fees_sat=10**7, pool_fee=fee)
    bounds = sorted({0, len(shares), *(c for c in cuts if c <= len(shares))})
    carry: dict[str, Fraction] = {}
    booked: dict[str, int] = {}
    for a, b in itertools.pairwise(bounds):
        part = fpps_settle(
            shares[a:b], subsidy_sat=312_500_000, avg_fees_sat=10**7, pool_fee=fee, carry_in=carry
        )
        for k, v in part.credits.items():
            booked[k] = booked.get(k, 0) + v
        carry = part.carry
    for k, v in whole.credits.items():
        assert booked.get(k, 0) == v and carry.get(k, Fraction(0)) == whole.carry[k]
        assert 0 <= whole.carry[k] < 1


def test_fpps_bad_input() -> None:
    with pytest.raises(ValueError, match="carry_in"):
        fpps_settle([], subsidy_sat=1, avg_fees_sat=0, carry_in={"a": 1})
    with pytest.raises(TypeError, match="subsidy_sat"):
        fpps_settle([], subsidy_sat=1.5, avg_fees_sat=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="avg_fees_sat"):
        fpps_settle([], subsidy_sat=1, avg_fees_sat=-1)
    with pytest.raises(ValueError, match="accounts must be unique"):
        one = np.zeros(1, dtype=np.int64)
        fpps_settle_arrays(one, one + 1, one, [1], ["a", "a"], subsidy_sat=1, avg_fees_sat=0)


def test_hashprice_of_block_840000() -> None:
    hp = hashprice(BLOCK_840000_NET, BLOCK_840000_SUBSIDY)
    assert round(float(hp), 2) == 72.77
    with_fees = hashprice(BLOCK_840000_NET, BLOCK_840000_SUBSIDY, BLOCK_840000_FEES)
    assert with_fees > 900


def test_hashrate_window_is_half_open() -> None:
    shares = [(0, 1), (1, 2), (10, 4), (11, 8)]
    assert hashrate(shares, 0, 10) == Fraction(6 * 2**32, 10)  # (0, 10]: t=1 and t=10
    with pytest.raises(ValueError, match="end must be after start"):
        hashrate(shares, 5, 5)
    with pytest.raises(TypeError, match="float"):
        hashrate([(1, 0.5)], 0, 2)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3600), st.integers(1, 2**20), st.integers(0, 4)), max_size=200
    ),
    st.integers(1, 3600),
)
def test_hashrate_windows_kernel_matches_reference(rows, window) -> None:
    end = 3600
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    work = np.array([r[1] for r in rows], dtype=np.int64)
    acct = np.array([r[2] for r in rows], dtype=np.int64)
    got = hashrate_windows(ts, work, acct, 5, end, [window, 600])
    for a in range(5):
        mine = [(Fraction(t), Fraction(w)) for t, w, x in rows if x == a]
        want = reference.hashrate(mine, Fraction(end - window), Fraction(end))
        assert got[0, a] == pytest.approx(float(want), rel=1e-12)
