"""PROP and SOLO against the oracle (accounting.reference), with Hypothesis."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounting import pplns_split, prop_split, reference, solo_split
from tests.accounting.strategies import ACCOUNTS, fees, rewards, share_lists


def _nonzero(credits: dict[str, int]) -> dict[str, int]:
    return {a: c for a, c in credits.items() if c}


@given(rewards, share_lists(), fees)
def test_prop_matches_reference(reward, shares, fee) -> None:
    got = prop_split(reward, shares, pool_fee=fee)
    credits, fee_sat, unallocated = reference.prop(reward, shares, fee)
    assert _nonzero(got.credits) == _nonzero(credits)
    assert (got.pool_fee_sat, got.unallocated_sat) == (fee_sat, unallocated)
    assert sum(got.credits.values()) + got.pool_fee_sat + got.unallocated_sat == reward


@given(rewards, share_lists(), fees)
def test_prop_credit_is_floor_or_ceil_of_its_quota_and_order_does_not_matter(
    reward, shares, fee
) -> None:
    got = prop_split(reward, shares, pool_fee=fee)
    dist = reward - reward * fee.numerator // fee.denominator
    scores: dict[str, Fraction] = {}
    for a, sd, nd in shares:
        scores[a] = scores.get(a, Fraction(0)) + sd / nd
    total = sum(scores.values(), Fraction(0))
    for a, s in scores.items():
        quota = dist * s / total
        assert quota - 1 < got.credits.get(a, 0) < quota + 1
    assert _nonzero(prop_split(reward, shares[::-1], pool_fee=fee).credits) == _nonzero(got.credits)


def test_prop_is_not_pplns_when_the_round_is_longer_than_the_window() -> None:
    # Four shares of one network difficulty each: PPLNS (factor 2) pays only the newest two,
    # PROP pays the whole round.
    shares = [("alice", 1, 1), ("alice", 1, 1), ("bob", 1, 1), ("carol", 1, 1)]
    assert pplns_split(1000, shares).credits == {"bob": 500, "carol": 500}
    assert prop_split(1000, shares).credits == {"alice": 500, "bob": 250, "carol": 250}


def test_prop_empty_round_keeps_the_reward_unallocated_and_ties_go_to_smaller_id() -> None:
    empty = prop_split(1001, [], pool_fee="1/100")
    assert (empty.credits, empty.pool_fee_sat, empty.unallocated_sat) == ({}, 10, 991)
    tie = prop_split(1001, [("b", 1, 1), ("a", 1, 1), ("c", 1, 1)])
    assert tie.credits == {"a": 334, "b": 334, "c": 333}


@given(rewards, st.sampled_from(ACCOUNTS), fees)
def test_solo_matches_reference(reward, finder, fee) -> None:
    got = solo_split(reward, finder, pool_fee=fee)
    credits, fee_sat, unallocated = reference.solo(reward, finder, fee)
    assert (got.credits, got.pool_fee_sat, got.unallocated_sat) == (credits, fee_sat, unallocated)
    assert got.total_sat == reward


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda: prop_split(-1, []), ValueError, "block_reward_sat"),
        (lambda: prop_split(10, [("a", 0, 1)]), ValueError, "share_difficulty"),
        (lambda: prop_split(10, [("a", 1, 1)], pool_fee=2), ValueError, "pool_fee"),
        (lambda: solo_split(10, ""), TypeError, "finder"),
        (lambda: solo_split(10.0, "a"), TypeError, "block_reward_sat"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_names_the_field(call, error, needle) -> None:
    with pytest.raises(error, match=needle):
        call()
