"""The work-proof tree and its sampling: the root streamed equals the root built, a draw walks
down to the leaf whose range holds it, honest paths climb, and forged shares mixed in at a
fraction f of the work are caught at the rate (1 - (1 - f)**k) the maths promises."""

from __future__ import annotations

import hashlib
import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting import work_proof as wp

SALT = b"fleet-salt"
TAG = wp.account_tag(SALT, "fleet")


def honest_leaf(rng: random.Random, weight: int | None = None) -> wp.Leaf:
    w = weight if weight is not None else rng.choice([2**32, 2**33, 5 * 2**32, 2**40])
    h = rng.randrange(wp.target_of_weight(w) + 1)
    return wp.Leaf(h.to_bytes(32, "big"), w, TAG)


def honest(seed: int, n: int) -> list[wp.Leaf]:
    rng = random.Random(seed)
    return wp.sort_leaves([honest_leaf(rng) for _ in range(n)])


@given(st.integers(0, 2**32), st.integers(0, 70))
def test_the_streamed_root_is_the_built_root(seed: int, n: int) -> None:
    leaves = honest(seed, n)
    levels = wp.build(leaves)
    assert wp.stream_root(iter(leaves)) == levels[-1][0]
    assert levels[-1][0].work == sum(lf.weight for lf in leaves)
    if leaves:
        assert (levels[-1][0].lo, levels[-1][0].hi) == (leaves[0].hash, leaves[-1].hash)


@given(st.integers(0, 2**32), st.integers(1, 70), st.data())
def test_a_draw_walks_to_the_leaf_whose_range_holds_it(
    seed: int, n: int, data: st.DataObject
) -> None:
    leaves = honest(seed, n)
    levels = wp.build(leaves)
    root = levels[-1][0]
    prefix = wp.prefix_sums(leaves)
    for _ in range(5):
        r = data.draw(st.integers(0, root.work - 1))
        i = wp.locate(levels, r)
        assert i == wp.locate_prefix(prefix, r)
        sibs = wp.siblings(levels, i)
        wp.climb(leaves[i], i, n, sibs, root, r)
        if i + 1 < n:  # the neighbour's range does not hold r
            j = i + 1
            other = wp.siblings(levels, j)
            with pytest.raises(wp.PathError, match="does not fall in this leaf"):
                wp.climb(leaves[j], j, n, other, root, r)


def test_weights_targets_and_the_number_of_draws() -> None:
    assert wp.weight_of(1, 1) == 2**32 and wp.weight_of(1, 2**32) == 1
    with pytest.raises(ValueError, match="not a whole number"):
        wp.weight_of(1, 3)
    assert wp.target_of_weight(2**32) == wp.DIFF1_TARGET
    f = wp.inflation_fake_fraction(Fraction(5, 100))
    assert f == Fraction(1, 21)
    assert wp.min_k(float(f)) == 95 <= wp.DEFAULT_K
    assert wp.escape_probability(float(f), wp.DEFAULT_K) < 0.01
    assert wp.escape_probability(float(f), 94) > 0.01
    assert math.isclose(wp.real_fraction_bound(100), 0.01 ** (1 / 100))
    with pytest.raises(ValueError, match="out of order or repeated"):
        leaves = honest(1, 4)
        wp.build([leaves[1], leaves[0], *leaves[2:]])


def caught(
    leaves: list[wp.Leaf], bad: set[bytes], beacon: bytes, k: int, levels: list[list[wp.WorkNode]]
) -> bool:
    """Does one beacon's sample catch the period: a drawn leaf is bad (fails a leaf check the
    verifier makes) or its path breaks the order?"""
    root = levels[-1][0]
    n = len(leaves)
    for r in wp.draws(beacon, root, k):
        i = wp.locate(levels, r)
        lf = leaves[i]
        if lf.hash in bad or not wp.meets_weight(lf.hash, lf.weight):
            return True
        sibs = wp.siblings(levels, i)
        try:
            wp.climb(lf, i, n, sibs, root, r)
        except wp.PathError:
            return True
    return False


@settings(max_examples=8, deadline=None)
@given(
    st.integers(0, 2**32),
    st.sampled_from(["low difficulty", "another pool", "another period", "duplicate"]),
    st.sampled_from([0.05, 0.1, 0.2]),
)
def test_forged_shares_are_caught_at_the_promised_rate(seed: int, kind: str, f: float) -> None:
    """Mix forged shares into an honest period until they are a fraction f of the committed
    work, commit (the forger's tree: sorted, duplicates kept) and sample with many beacons:
    the share of beacons that catch it matches 1 - (1 - f)**k (duplicates: at least that,
    since both copies break the order)."""
    rng = random.Random(seed)
    good = [honest_leaf(rng, 2**32) for _ in range(300)]
    total_good = sum(lf.weight for lf in good)
    want_fake = round(f / (1 - f) * total_good)  # fake / (good + fake) = f
    fake: list[wp.Leaf] = []
    bad: set[bytes] = set()
    while sum(lf.weight for lf in fake) < want_fake:
        if kind == "low difficulty":  # claims 2**32 hashes of work its hash does not meet
            h = rng.randrange(wp.target_of_weight(2**32) + 1, 2**256)
            fake.append(wp.Leaf(h.to_bytes(32, "big"), 2**32, TAG))
        elif kind == "duplicate":  # a real share counted again
            fake.append(rng.choice(good))
        else:  # a real hash, but its header pays another pool or builds on another tip
            lf = honest_leaf(rng, 2**32)
            fake.append(lf)
            bad.add(lf.hash)
    leaves = sorted(good + fake, key=lambda lf: lf.hash)
    levels = wp.build_unchecked(leaves)
    real_f = sum(lf.weight for lf in fake) / levels[-1][0].work
    k, beacons = 10, 300
    hits = sum(
        caught(leaves, bad, hashlib.sha256(b"beacon %d %d" % (seed, b)).digest(), k, levels)
        for b in range(beacons)
    )
    promised = 1 - (1 - real_f) ** k
    sd = math.sqrt(promised * (1 - promised) / beacons)
    rate = hits / beacons
    assert rate >= promised - 4 * sd, (kind, rate, promised)
    if kind != "duplicate":
        assert rate <= promised + 4 * sd, (kind, rate, promised)


def test_a_lying_sibling_bound_or_work_does_not_climb() -> None:
    leaves = honest(7, 9)
    levels = wp.build(leaves)
    root = levels[-1][0]
    sibs = wp.siblings(levels, 4)
    key = next(iter(sibs))
    s = sibs[key]
    for forged in (
        wp.WorkNode(s.hash, s.work + 1, s.lo, s.hi),
        wp.WorkNode(s.hash, s.work, s.lo, bytes(32)),
    ):
        with pytest.raises(wp.PathError):
            wp.climb(leaves[4], 4, 9, {**sibs, key: forged}, root)
    assert wp.WorkNode.unpack(s.pack()) == s
