"""The Numba kernels on their own (CI also runs this directory with NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting import fpps_settle_arrays, pplns_split_arrays
from accounting.kernels import (
    apply_transfers,
    epoch_account_sums,
    walk_window,
)


def arr(xs) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


def test_walk_window_statuses() -> None:
    work, acct = arr([5, 1, 2, 3]), arr([0, 1, 0, 1])
    acc = np.zeros(2, dtype=np.int64)
    # From the newest (index 3): 3 + 2 = 5 < 6, then 1 reaches 6 -> index 1 is the crossing share.
    assert walk_window(work, acct, arr([0, 0, 0, 0]), 3, 6, acc) == (1, 1, 5)
    assert acc.tolist() == [2, 3]
    acc = np.zeros(2, dtype=np.int64)
    assert walk_window(work, acct, arr([0, 0, 1, 1]), 3, 100, acc) == (1, 2, 5)  # epoch change
    acc = np.zeros(2, dtype=np.int64)
    assert walk_window(work, acct, arr([0, 0, 0, 0]), 3, 100, acc) == (-1, 0, 11)  # exhausted
    assert acc.tolist() == [7, 4]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 1000), st.integers(0, 4), st.integers(0, 2)),
        min_size=1,
        max_size=100,
    )
)
def test_epoch_account_sums(rows) -> None:
    work, acct, ep = (arr([r[i] for r in rows]) for i in range(3))
    sums = epoch_account_sums(work, acct, ep, 3, 5)
    for e in range(3):
        for a in range(5):
            assert sums[e, a] == sum(w for w, x, y in rows if x == a and y == e)


def test_window_beyond_int64_is_refused_not_cut_short() -> None:
    big = 2**61 - 1
    with pytest.raises(ValueError, match="coarser scale"):
        pplns_split_arrays(100, arr([0, 0, 0]), arr([big] * 3), arr([0, 0, 0]), [2**62], ["a"])


def test_apply_transfers_stops_at_the_first_negative_balance() -> None:
    balance = arr([5, 0])
    # transfer 0: 0 -> 1 of 3; transfer 1: 1 -> burn 4 (1 has only 3)
    assert apply_transfers(arr([0, 1]), arr([0, 1]), arr([1, -1]), arr([3, 4]), balance) == 1
    ok = arr([5, 0])
    assert apply_transfers(arr([0]), arr([-1]), arr([1]), arr([2]), ok) == -1 and ok.tolist() == [
        5,
        2,
    ]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"work": arr([0])}, "work\\[0\\] must be > 0"),
        ({"account_idx": arr([3])}, "account_idx\\[0\\] is out of range"),
        ({"epoch_idx": arr([2])}, "epoch_idx\\[0\\] = 2 is out of range"),
        ({"work": arr([2**61])}, "coarser scale"),
        ({"accounts": ["a", "a"]}, "accounts must be unique"),
        ({"epoch_net_work": [0]}, "epoch_net_work\\[0\\]"),
        ({"work": arr([1, 2])}, "same length"),
    ],
)
def test_array_path_bad_input(kwargs, needle) -> None:
    args = dict(
        account_idx=arr([0]), work=arr([1]), epoch_idx=arr([0]), epoch_net_work=[1], accounts=["a"]
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        pplns_split_arrays(
            100,
            args["account_idx"],
            args["work"],
            args["epoch_idx"],
            args["epoch_net_work"],
            args["accounts"],
        )


def test_fpps_arrays_equal_per_share_totals() -> None:
    work, acct, ep = arr([3, 5, 7]), arr([0, 1, 0]), arr([0, 0, 1])
    r = fpps_settle_arrays(
        acct, work, ep, [Fraction(10), Fraction(20)], ["a", "b"], subsidy_sat=1000, avg_fees_sat=0
    )
    # a: 3/10 + 7/20 = 13/20 of 1000 = 650; b: 5/10 = 500
    assert r.credits == {"a": 650, "b": 500} and r.carry == {"a": 0, "b": 0}


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 2**62 - 1).flatmap(
        lambda d: st.tuples(
            st.just(d),
            st.integers(0, d - 1),
            st.lists(st.integers(0, 2**62 - 1), min_size=1, max_size=20),
        )
    )
)
def test_mul_div_is_exact(args) -> None:
    from accounting.kernels import mul_div

    d, c, vs = args
    q, r = mul_div(arr(vs), c, d)
    for v, qi, ri in zip(vs, q.tolist(), r.tolist(), strict=True):
        assert (qi, ri) == divmod(c * v, d)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 2**60 - 1).flatmap(
        lambda d: st.tuples(
            st.just(d),
            st.integers(0, d - 1),
            st.lists(st.integers(0, 2**62 - 1), min_size=1, max_size=20),
        )
    )
)
def test_mul_div_small_is_exact_where_quotients_are_small(args) -> None:
    """The constant-time kernel agrees with Python's divmod on every input inside its
    precondition (quotients below 2**53), including the edges where the float estimate is
    off: remainders next to 0 and to d, d near 2**60."""
    from accounting.kernels import mul_div_small

    d, c, vs = args
    vs = [v for v in vs if c * v // d < 2**53] or [0]
    q, r = mul_div_small(arr(vs), c, d)
    for v, qi, ri in zip(vs, q.tolist(), r.tolist(), strict=True):
        assert (qi, ri) == divmod(c * v, d)


@pytest.mark.parametrize(
    ("c", "d", "v"),
    [
        (2**60 - 2, 2**60 - 1, (2**53 - 1)),  # a quotient just below 2**53, q = v - 1
        (1, 2**60 - 1, 2**62 - 1),  # the largest v
        (3, 7, 0),
        ((2**59 + 1), 2**60 - 3, 2**53 + 12345),
    ],
)
def test_mul_div_small_edges(c: int, d: int, v: int) -> None:
    from accounting.kernels import mul_div_small

    q, r = mul_div_small(arr([v]), c, d)
    assert (int(q[0]), int(r[0])) == divmod(c * v, d)
