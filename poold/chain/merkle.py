"""Double-SHA256 and the merkle tree as Bitcoin builds it.

All hashes here are in internal byte order (as serialized in blocks), never display order.
Pure: no I/O, no imports from the rest of poold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256


def sha256d(data: bytes) -> bytes:
    """SHA256(SHA256(data))."""
    return _sha256(_sha256(data).digest()).digest()


def merkle_root(hashes: Sequence[bytes]) -> bytes:
    """Merkle root of `hashes` (an odd layer duplicates its last element, as Bitcoin does)."""
    if not hashes:
        raise ValueError("merkle_root of an empty list")
    layer = list(hashes)
    while len(layer) > 1:
        if len(layer) % 2:
            layer.append(layer[-1])
        layer = [sha256d(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def coinbase_branch(tx_hashes: Sequence[bytes]) -> list[bytes]:
    """Merkle branch for position 0 given the hashes of every transaction *after* the coinbase.

    Folding the coinbase hash through the branch (see `fold_branch`) yields the merkle root.
    """
    branch: list[bytes] = []
    # Position 0 is a placeholder for the coinbase; its value never influences the branch.
    layer: list[bytes | None] = [None, *tx_hashes]
    while len(layer) > 1:
        if len(layer) % 2:
            layer.append(layer[-1])
        sibling = layer[1]
        assert sibling is not None  # only index 0 is ever None
        branch.append(sibling)
        nxt: list[bytes | None] = [None]
        for i in range(2, len(layer), 2):
            left, right = layer[i], layer[i + 1]
            assert left is not None and right is not None
            nxt.append(sha256d(left + right))
        layer = nxt
    return branch


def fold_branch(leaf: bytes, branch: Sequence[bytes]) -> bytes:
    """Fold a position-0 leaf through its branch to the root."""
    h = leaf
    for step in branch:
        h = _sha256(_sha256(h + step).digest()).digest()
    return h
