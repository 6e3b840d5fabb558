"""The column root (`accounting.work_columns`) is the object root (`work_proof.stream_root`,
its oracle) for any leaves: sizes around every power of two, weights up to 2**128 - 1, and it
refuses leaves out of order or repeated as the oracle does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting import work_proof as wp
from accounting.work_columns import root_of_columns, sorted_columns


def columns(leaves: list[wp.Leaf]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def rows(parts: list[bytes], width: int) -> np.ndarray:
        return np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(-1, width)

    return (
        rows([lf.hash for lf in leaves], 32),
        rows([lf.weight.to_bytes(16, "big") for lf in leaves], 16),
        rows([lf.tag for lf in leaves], 32),
    )


TAGS = st.sampled_from([b"\x01" * 32, b"\x02" * 32])
leaf_sets = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32), st.integers(1, 2**120), TAGS),
    max_size=70,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(leaf_sets)
def test_the_column_root_is_the_object_root(raw: list[tuple[bytes, int, bytes]]) -> None:
    leaves = wp.sort_leaves([wp.Leaf(h, w, t) for h, w, t in raw])
    assert root_of_columns(*columns(leaves)) == wp.stream_root(iter(leaves))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 31, 32, 33, 1000])
def test_sizes_around_powers_of_two(n: int) -> None:
    rng = np.random.default_rng(n)
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    weights = np.zeros((n, 16), dtype=np.uint8)
    weights[:, 8:] = rng.integers(0, 256, size=(n, 8), dtype=np.uint8)
    weights[:, 0] = 0xFF  # near 2**128: the halves' carry is exercised
    weights[:, 15] |= 1
    tags = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    hashes, weights, tags = sorted_columns(hashes, weights, tags)
    leaves = [
        wp.Leaf(bytes(h), int.from_bytes(bytes(w), "big"), bytes(t))
        for h, w, t in zip(hashes, weights, tags, strict=True)
    ]
    if n > 1:  # two leaves near 2**128 already pass what a node holds: named, not wrapped
        with pytest.raises(ValueError, match="2\\*\\*128"):
            root_of_columns(hashes, weights, tags)
        weights[:, 0] = 0  # now well below
        leaves = [wp.Leaf(lf.hash, lf.weight - (0xFF << 120), lf.tag) for lf in leaves]
    assert root_of_columns(hashes, weights, tags) == wp.stream_root(iter(leaves))


def test_leaves_out_of_order_or_repeated_are_refused() -> None:
    h = np.array([[1] * 32, [2] * 32, [2] * 32], dtype=np.uint8)
    w = np.zeros((3, 16), dtype=np.uint8)
    w[:, 15] = 1
    t = np.zeros((3, 32), dtype=np.uint8)
    with pytest.raises(ValueError, match="out of order or repeated at " + "02" * 32):
        root_of_columns(h, w, t)
    with pytest.raises(ValueError, match="out of order"):
        root_of_columns(h[::-1].copy(), w, t)
    assert root_of_columns(h[:0], w[:0], t[:0]) == wp.EMPTY
