from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting import AccountNames, pplns_split, pplns_split_arrays, reference
from accounting.money import largest_remainder
from tests.accounting.strategies import factors, fees, rewards, share_lists

# Mainnet block 840000 (the 2024 halving): bits 0x17034219, difficulty 86388558925171.02.
BLOCK_840000_NET = Fraction(0xFFFF * 2**208, 0x034219 * 2 ** (8 * (0x17 - 3)))
BLOCK_840000_SUBSIDY = 312_500_000
BLOCK_840000_FEES = 3_762_561_499


def check_against_reference(reward: int, shares, factor, fee) -> None:
    got = pplns_split(reward, shares, factor=factor, pool_fee=fee)
    exact_shares = [(a, Fraction(sd), Fraction(nd)) for a, sd, nd in shares]
    credits, fee_sat, unallocated, scores = reference.pplns(
        reward, exact_shares, Fraction(factor), Fraction(fee)
    )
    assert got.pool_fee_sat == fee_sat
    assert got.unallocated_sat == unallocated
    assert {a: c for a, c in got.credits.items()} == credits
    assert got.scores == scores
    assert sum(got.credits.values()) + got.pool_fee_sat + got.unallocated_sat == reward


def test_window_edge_cuts_the_crossing_share() -> None:
    # newest first: d 1/2, c 1/2, b 1/2 (crosses: only 1/2 of its 1/2... no, fills), a ignored
    shares = [("a", 1, 4), ("b", 3, 4), ("c", 2, 4), ("d", 2, 4)]
    r = pplns_split(1000, shares, factor=Fraction(3, 2))
    assert r.scores == {"d": Fraction(1, 2), "c": Fraction(1, 2), "b": Fraction(1, 2)}
    assert r.shares_used == 3 and r.unallocated_sat == 0
    assert r.credits == {"b": 334, "c": 333, "d": 333}  # tie: 1 sat to the smallest id
    check_against_reference(1000, shares, Fraction(3, 2), Fraction(0))


def test_exact_boundary_share_counts_fully_and_stops() -> None:
    shares = [("old", 1, 1), ("x", 1, 2), ("y", 1, 2)]
    r = pplns_split(100, shares, factor=1)
    assert r.scores == {"x": Fraction(1, 2), "y": Fraction(1, 2)} and r.shares_used == 2


def test_unfilled_window_leaves_unallocated_with_the_pool() -> None:
    r = pplns_split(1_000_000, [("a", 1, 10), ("b", 3, 10)], factor=2, pool_fee="0.02")
    assert r.pool_fee_sat == 20_000
    # 0.4 of a window of 2 is filled: a 1/20, b 3/20 of 980,000; 80% unallocated.
    assert r.credits == {"a": 49_000, "b": 147_000}
    assert r.unallocated_sat == 784_000


def test_difficulty_change_inside_the_window() -> None:
    shares = [("a", 10, 10), ("b", 10, 20), ("c", 5, 20)]  # scores newest first 1/4, 1/2, 1
    r = pplns_split(700, shares, factor=1)
    assert r.scores == {"c": Fraction(1, 4), "b": Fraction(1, 2), "a": Fraction(1, 4)}
    assert r.credits == {"a": 175, "b": 350, "c": 175}


def test_ties_go_to_the_smaller_account_id_and_names_only_move_ties() -> None:
    shares = [("zed", 1, 3), ("amy", 1, 3), ("max", 1, 3)]
    r = pplns_split(100, shares, factor=1)
    assert r.credits == {"amy": 34, "max": 33, "zed": 33}
    renamed = pplns_split(100, [("b", 1, 3), ("c", 1, 3), ("a", 1, 3)], factor=1)
    assert sorted(renamed.credits.values()) == sorted(r.credits.values())
    assert renamed.credits["a"] == 34


def test_mainnet_block_840000() -> None:
    """Block 840000: subsidy 3.125 BTC + its real fee total, 3,762,561,499 sat."""
    reward = BLOCK_840000_SUBSIDY + BLOCK_840000_FEES
    net = BLOCK_840000_NET
    shares = [(f"m{i % 7}", Fraction(2**40 + i), net) for i in range(200)]
    shares += [("whale", net / 2, net), ("finder", net, net)]
    r = pplns_split(reward, shares, factor=2, pool_fee="0.015")
    assert reward == 4_075_061_499
    assert r.pool_fee_sat == 61_125_922  # floor(4,075,061,499 x 0.015)
    assert r.scores["finder"] == 1 and r.scores["whale"] == Fraction(1, 2)
    assert r.credits["finder"] == 2_006_967_788  # (reward - fee) / 2, rounded by the rule
    check_against_reference(reward, shares, Fraction(2), Fraction("0.015"))


@settings(max_examples=300, deadline=None)
@given(rewards, share_lists(), factors, fees)
def test_matches_reference(reward, shares, factor, fee) -> None:
    check_against_reference(reward, shares, factor, fee)


@settings(max_examples=200, deadline=None)
@given(rewards, share_lists(), factors, fees)
def test_every_credit_is_floor_or_ceil_of_its_quota(reward, shares, factor, fee) -> None:
    r = pplns_split(reward, shares, factor=factor, pool_fee=fee)
    dist = reward - r.pool_fee_sat
    for account, credit in r.credits.items():
        quota = dist * r.scores[account] / factor
        assert quota - 1 < credit < quota + 1


@settings(max_examples=100, deadline=None)
@given(share_lists(max_size=40), st.permutations(range(9)))
def test_permuting_names_changes_nothing_but_ties(shares, perm) -> None:
    names = sorted({a for a, _, _ in shares})
    rename = {a: f"acct{perm[i % 9]}{i}" for i, a in enumerate(names)}
    r1 = pplns_split(10**8, shares)
    r2 = pplns_split(10**8, [(rename[a], s, n) for a, s, n in shares])
    for a in names:
        assert abs(r1.credits.get(a, 0) - r2.credits.get(rename[a], 0)) <= 1
        assert r1.scores.get(a) == r2.scores.get(rename[a])


def test_slices_equal_shares_when_they_do_not_straddle_and_conserve_when_they_do() -> None:
    rng = np.random.default_rng(7)
    n, n_acc = 3000, 40
    acct = rng.integers(0, n_acc, n).astype(np.int64)
    work = rng.integers(1, 50, n).astype(np.int64)
    epoch = np.zeros(n, dtype=np.int64)
    accounts = [f"acc{i:02d}" for i in range(n_acc)]
    net = [Fraction(int(work[-1000:].sum()))]  # window = last 1000 shares exactly (factor 1)
    per_share = pplns_split_arrays(10**9, acct, work, epoch, net, accounts, factor=1)
    # Slices of 100 shares per account, aligned with the window edge (n - 1000 is a multiple).
    rows = []
    for lo in range(0, n, 100):
        for a in range(n_acc):
            m = acct[lo : lo + 100] == a
            if m.any():
                rows.append((a, int(work[lo : lo + 100][m].sum())))
    s_acct = np.array([r[0] for r in rows], dtype=np.int64)
    s_work = np.array([r[1] for r in rows], dtype=np.int64)
    sliced = pplns_split_arrays(
        10**9, s_acct, s_work, np.zeros(len(rows), dtype=np.int64), net, accounts, factor=1
    )
    assert sliced.credits == per_share.credits and sliced.scores == per_share.scores
    # Shift the edge into the middle of a slice: still exact and conserving.
    net2 = [Fraction(int(work[-1050:].sum()))]
    straddle = pplns_split_arrays(
        10**9, s_acct, s_work, np.zeros(len(rows), dtype=np.int64), net2, accounts, factor=1
    )
    assert straddle.total_sat == 10**9 and straddle.unallocated_sat == 0
    assert sum(straddle.scores.values()) == 1


@pytest.mark.parametrize(
    ("shares", "kwargs", "error", "needle"),
    [
        ([("a", 0, 1)], {}, ValueError, "share_difficulty: must be > 0"),
        ([("a", -1, 1)], {}, ValueError, "share_difficulty"),
        ([("a", 1, 0)], {}, ValueError, "network_difficulty: must be > 0"),
        ([("a", 1.5, 1)], {}, TypeError, "float is not exact"),
        ([("a", "nan", 1)], {}, ValueError, "cannot read"),
        ([("a", Decimal("Infinity"), 1)], {}, ValueError, "not finite"),
        ([("a", 1, 1)], {"factor": 0}, ValueError, "factor"),
        ([("a", 1, 1)], {"pool_fee": "1.5"}, ValueError, "pool_fee"),
        ([("a", 1, 1)], {"pool_fee": 0.01}, TypeError, "pool_fee"),
        ([(1, 1, 1)], {}, TypeError, "account"),
        ([("a", 1)], {}, ValueError, "expected (account"),
    ],
)
def test_bad_input_names_the_field(shares, kwargs, error, needle) -> None:
    with pytest.raises(error, match=needle.replace("(", r"\(")):
        pplns_split(100, shares, **kwargs)
    with pytest.raises(TypeError, match="block_reward_sat"):
        pplns_split(1.0, [("a", 1, 1)])  # type: ignore[arg-type]


def test_largest_remainder_rule() -> None:
    q = {"b": Fraction(5, 2), "a": Fraction(5, 2), "c": Fraction(5)}
    assert largest_remainder(10, q) == {"a": 3, "b": 2, "c": 5}
    with pytest.raises(ValueError):
        largest_remainder(11, q)


def test_one_share_crossing_a_tiny_window_of_a_huge_block() -> None:
    """Found by the ledger's window property test: the only share crosses the edge, so the
    fast path's per-score multiplier exceeds int64 while no full share exists to bound it."""
    net = Fraction(0xFFFF * 2**208, 0x7FFFFF * 2 ** (8 * (0x20 - 3)))
    got = pplns_split(5_000_000_000, [("a", Fraction(1), net)], factor=Fraction(1, 1000))
    credits, fee, unallocated, _ = reference.pplns(
        5_000_000_000, [("a", Fraction(1), net)], Fraction(1, 1000), Fraction(0)
    )
    assert (got.credits, got.pool_fee_sat, got.unallocated_sat) == (credits, fee, unallocated)
    assert got.credits == {"a": 5_000_000_000}


def test_account_table_checked_once_and_never_skipped_for_a_plain_list() -> None:
    """A split maps ids to names: two ids with one name would merge their credits (and lose
    satoshis from the mapping), so duplicates are refused as a table or as a plain list."""
    acct = np.array([0, 1, 0], dtype=np.int64)
    work = np.array([1, 1, 1], dtype=np.int64)
    epoch = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="unique"):
        AccountNames(["a", "b", "a"])
    with pytest.raises(ValueError, match="unique"):
        pplns_split_arrays(1000, acct, work, epoch, [3], ["a", "a"], factor=1)
    table = AccountNames(["a", "b"])
    as_table = pplns_split_arrays(1000, acct, work, epoch, [3], table, factor=1)
    as_list = pplns_split_arrays(1000, acct, work, epoch, [3], ["a", "b"], factor=1)
    assert dict(as_table.credits) == dict(as_list.credits) == {"a": 667, "b": 333}
