"""The work root over a period's leaves held as columns (NumPy): the same tree and the same
root as `work_proof.stream_root` (its oracle in the tests), without a Python object per leaf
or per node. Leaves come as rows of bytes in tree order: header hashes (n x 32, big-endian),
weights (n x 16, big-endian) and account tags (n x 32). Each level is packed into one array
and hashed row by row with `hashlib`; the nodes' work is summed as two 64-bit halves with a
carry. Imports NumPy and `work_proof`; nothing of poold, no I/O.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from accounting.work_proof import EMPTY, LEAF, NODE, WorkNode

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]


def _increasing(hashes: U8) -> int | None:
    """The index of the first row not strictly above the one before it, or None."""
    if len(hashes) < 2:
        return None
    a, b = hashes[:-1], hashes[1:]
    differ = a != b
    first = differ.argmax(axis=1)
    rows = np.arange(len(a))
    ok = differ[rows, first] & (a[rows, first] < b[rows, first])
    bad = np.flatnonzero(~ok)
    return int(bad[0]) + 1 if len(bad) else None


def _halves(be16: U8) -> tuple[U64, U64]:
    """16-byte big-endian rows as (high, low) 64-bit halves."""
    raw = np.ascontiguousarray(be16).view(">u8").reshape(-1, 2)
    return raw[:, 0].astype(np.uint64), raw[:, 1].astype(np.uint64)


def _be16(hi: U64, lo: U64) -> U8:
    out = np.empty((len(hi), 2), dtype=">u8")
    out[:, 0], out[:, 1] = hi, lo
    return out.view(np.uint8).reshape(-1, 16)


def _digests(rows: U8) -> U8:
    """SHA-256 of each row."""
    width = rows.shape[1]
    data = np.ascontiguousarray(rows).tobytes()
    sha = hashlib.sha256
    out = b"".join([sha(data[i : i + width]).digest() for i in range(0, len(data), width)])
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, 32)


def root_of_columns(hashes: U8, weights: U8, tags: U8) -> WorkNode:
    """The work root over leaves in tree order; ValueError naming the first hash out of order
    or repeated, a zero weight, or work past 2**128 - 1."""
    n = len(hashes)
    if not (hashes.shape == (n, 32) and weights.shape == (n, 16) and tags.shape == (n, 32)):
        raise ValueError("leaf columns must be n x 32 hashes, n x 16 weights, n x 32 tags")
    if n == 0:
        return EMPTY
    bad = _increasing(hashes)
    if bad is not None:
        raise ValueError(f"leaves out of order or repeated at {bytes(hashes[bad]).hex()}")
    hi, lo = _halves(weights)
    if bool(np.any((hi == 0) & (lo == 0))):
        raise ValueError("a leaf's weight must be in 1..2**128-1, got 0")
    prefix = np.full((n, 1), LEAF[0], dtype=np.uint8)
    digest = _digests(np.hstack([prefix, hashes, weights, tags]))
    low_keys, high_keys = hashes, hashes
    while len(digest) > 1:
        m = len(digest) // 2 * 2  # nodes paired; an odd last one is carried up as it is
        packed = np.hstack([digest[:m], _be16(hi[:m], lo[:m]), low_keys[:m], high_keys[:m]])
        left, right = packed[0:m:2], packed[1:m:2]
        head = np.full((m // 2, 1), NODE[0], dtype=np.uint8)
        up = _digests(np.hstack([head, left, right]))
        l_hi, r_hi, l_lo, r_lo = hi[0:m:2], hi[1:m:2], lo[0:m:2], lo[1:m:2]
        s_lo = l_lo + r_lo
        carry = (s_lo < l_lo).astype(np.uint64)
        room = np.uint64(2**64 - 1) - r_hi
        if bool(np.any((l_hi > room) | ((l_hi == room) & (carry == 1)))):
            raise ValueError("the work passes 2**128 - 1 hashes: it does not fit a node")
        s_hi = l_hi + r_hi + carry
        lows, highs = low_keys[0:m:2], high_keys[1:m:2]
        if m < len(digest):
            up = np.vstack([up, digest[m:]])
            s_hi, s_lo = np.concatenate([s_hi, hi[m:]]), np.concatenate([s_lo, lo[m:]])
            lows, highs = np.vstack([lows, low_keys[m:]]), np.vstack([highs, high_keys[m:]])
        digest, hi, lo, low_keys, high_keys = up, s_hi, s_lo, lows, highs
    work = (int(hi[0]) << 64) | int(lo[0])
    return WorkNode(bytes(digest[0]), work, bytes(low_keys[0]), bytes(high_keys[0]))


def sorted_columns(hashes: U8, *others: U8) -> tuple[U8, ...]:
    """Rows of every column reordered by header hash (byte order; stable)."""
    keys = np.ascontiguousarray(hashes).view(">u8").reshape(-1, 4)
    order = np.lexsort((keys[:, 3], keys[:, 2], keys[:, 1], keys[:, 0]))
    return (hashes[order], *(c[order] for c in others))


__all__ = ["root_of_columns", "sorted_columns"]
