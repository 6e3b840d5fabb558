from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting import (
    avg_fees,
    credited_difficulty,
    fpps_settle,
    fpps_settle_arrays,
    fpps_settle_sums,
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


def test_no_share_is_worth_more_than_a_block() -> None:
    # A share of difficulty 5000 at network difficulty 1000 is worth one block, not five.
    v = fpps_share_value(
        "5000", "1000", subsidy_sat=312500000, avg_fees_sat=12345678, pool_fee="0.02"
    )
    assert v == Fraction(7958719111, 25) == Fraction(312500000 + 12345678) * Fraction(98, 100)
    # Regtest: network difficulty 65535/2**47 (bits 207fffff); a difficulty-1 share.
    regtest = Fraction(65535, 140737471578112)
    v = fpps_share_value("1", regtest, subsidy_sat=5_000_000_000, avg_fees_sat=0, pool_fee="0.02")
    assert v == 4_900_000_000
    assert credited_difficulty(5000, 1000) == 1000 and credited_difficulty(1, 4) == 1
    # A mixed list: over-network shares credit one block each, the rest pro rata.
    shares = [("a", 5000, 1000), ("b", 500, 1000), ("a", "1/2", 1), ("b", 1, regtest)]
    got = fpps_settle(shares, subsidy_sat=312_500_000, avg_fees_sat=0, pool_fee="0.02")
    block = Fraction(312_500_000 * 98, 100)
    assert got.credits == {"a": int(block * Fraction(3, 2)), "b": int(block * Fraction(3, 2))}
    assert got.credits == {"a": 459_375_000, "b": 459_375_000}
    assert got.carry == {"a": 0, "b": 0}


@settings(max_examples=200, deadline=None)
@given(
    share_lists(over_network=True),
    st.integers(0, 5 * 10**9),
    st.integers(0, 10**9),
    fees,
    st.dictionaries(st.sampled_from(["alice", "zed"]), st.fractions(0, Fraction(99, 100))),
)
def test_no_booking_exceeds_one_block_per_share(shares, subsidy, avg, fee, carry) -> None:
    got = fpps_settle(shares, subsidy_sat=subsidy, avg_fees_sat=avg, pool_fee=fee, carry_in=carry)
    block = (subsidy + avg) * (1 - fee)
    for account in got.credits:
        mine = sum(1 for a, _sd, _nd in shares if a == account)
        assert got.credits[account] <= block * mine + carry.get(account, 0)
    assert sum(got.credits.values()) <= block * len(shares) + sum(carry.values())
    # The array path the daemon's kernels use caps the same way.
    if shares:
        accounts = sorted({a for a, _sd, _nd in shares})
        nets = sorted({nd for _a, _sd, nd in shares})
        scale = math.lcm(*(sd.denominator for _a, sd, _nd in shares))
        if max(sd * scale for _a, sd, _nd in shares) * len(shares) < 2**61:
            arr = fpps_settle_arrays(
                np.array([accounts.index(a) for a, _sd, _nd in shares], dtype=np.int64),
                np.array([int(sd * scale) for _a, sd, _nd in shares], dtype=np.int64),
                np.array([nets.index(nd) for _a, _sd, nd in shares], dtype=np.int64),
                [nd * scale for nd in nets],
                accounts,
                subsidy_sat=subsidy,
                avg_fees_sat=avg,
                pool_fee=fee,
            )
            plain = fpps_settle(shares, subsidy_sat=subsidy, avg_fees_sat=avg, pool_fee=fee)
            assert arr.credits == plain.credits and arr.carry == plain.carry


@settings(max_examples=150, deadline=None)
@given(share_lists(over_network=True), st.integers(1, 7), fees)
def test_sums_of_capped_shares_book_as_the_shares(shares, groups, fee) -> None:
    """The ledger books slices (sums of capped shares): the same satoshis as share by share."""
    rows: dict[tuple[str, Fraction, int], list] = {}
    for i, (a, sd, nd) in enumerate(shares):
        row = rows.setdefault((a, nd, i % groups), [Fraction(0), 0])
        row[0] += credited_difficulty(sd, nd)
        row[1] += 1
    summed = fpps_settle_sums(
        [(a, c, nd, n) for (a, nd, _g), (c, n) in rows.items()],
        subsidy_sat=312_500_000,
        avg_fees_sat=10**7,
        pool_fee=fee,
    )
    plain = fpps_settle(shares, subsidy_sat=312_500_000, avg_fees_sat=10**7, pool_fee=fee)
    assert summed.credits == plain.credits and summed.carry == plain.carry


def test_sums_refuse_a_row_worth_more_than_its_shares() -> None:
    with pytest.raises(ValueError, match="worth more than a block"):
        fpps_settle_sums([("a", 2001, 1000, 2)], subsidy_sat=1, avg_fees_sat=0)
    with pytest.raises(ValueError, match="worth more than a block"):
        fpps_settle_sums([("a", 1, 1000, 0)], subsidy_sat=1, avg_fees_sat=0)
    with pytest.raises(ValueError, match=r"rows\[0\]: expected"):
        fpps_settle_sums([("a", 1, 1000)], subsidy_sat=1, avg_fees_sat=0)  # type: ignore[list-item]
    ok = fpps_settle_sums([("a", 2000, 1000, 2)], subsidy_sat=100, avg_fees_sat=0)
    assert ok.credits == {"a": 200}


@settings(max_examples=200, deadline=None)
@given(share_lists(over_network=True), st.integers(0, 5 * 10**9), st.integers(0, 10**9), fees)
def test_fpps_matches_reference(shares, subsidy, avg, fee) -> None:
    got = fpps_settle(shares, subsidy_sat=subsidy, avg_fees_sat=avg, pool_fee=fee)
    credits, carry = reference.fpps(shares, subsidy, Fraction(avg), fee, {})
    assert got.credits == credits and got.carry == carry


@settings(max_examples=150, deadline=None)
@given(share_lists(max_size=80, over_network=True), st.lists(st.integers(0, 80), max_size=6), fees)
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
