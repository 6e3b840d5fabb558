"""Numba kernels: the O(shares) loops, over int64 arrays, nothing else.

Arrays are oldest first; walks go newest first (from the end). Work is an integer number of
difficulty units (share difficulty x a scale the caller chooses). Each kernel has an oracle
in `reference.py` (through the public functions that call it). Imports numpy and numba only.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
#: Work values and cumulative sums handed to the kernels stay below this: no int64 overflow.
SAFE_WORK = 1 << 62


@nb.njit(cache=True, nogil=True)
def walk_window(
    work: I64, acct: I64, epoch: I64, start: int, threshold: int, acc: I64
) -> tuple[int, int, int]:
    """Walk from `start` towards index 0 inside one epoch, adding each share that ends below
    `threshold` (cumulative work) to `acc[acct]`.

    Returns (index, status, cumulative work before index): status 1 = share `index` reaches the
    threshold (it is cut by the caller, exactly); 2 = share `index` is in another epoch;
    0 = ran out of shares (index -1); 3 = share `index` has work <= 0 or >= 2**61; 4 = its
    account index is out of range. Rows are checked as the walk reaches them, so a caller
    keeping threshold <= 2**62 can never overflow int64.
    """
    e = epoch[start]
    n_acc = acc.shape[0]
    cum = 0
    i = start
    while i >= 0:
        if epoch[i] != e:
            return i, 2, cum
        w = work[i]
        if w <= 0 or w >= 2305843009213693952:  # 2**61
            return i, 3, cum
        a = acct[i]
        if a < 0 or a >= n_acc:
            return i, 4, cum
        if cum + w >= threshold:
            return i, 1, cum
        cum += w
        acc[a] += w
        i -= 1
    return -1, 0, cum


@nb.njit(cache=True, nogil=True)
def epoch_account_sums(work: I64, acct: I64, epoch: I64, n_epochs: int, n_accounts: int) -> I64:
    """sums[e, a] = total work of account a's shares in epoch e."""
    out = np.zeros((n_epochs, n_accounts), dtype=np.int64)
    for i in range(work.shape[0]):
        out[epoch[i], acct[i]] += work[i]
    return out


@nb.njit(cache=True, nogil=True)
def window_sums(ts: I64, work: I64, acct: I64, n_accounts: int, starts: I64, end: int) -> I64:
    """sums[w, a] = work of account a's shares with starts[w] < ts <= end."""
    n_w = starts.shape[0]
    out = np.zeros((n_w, n_accounts), dtype=np.int64)
    for i in range(ts.shape[0]):
        t = ts[i]
        if t > end:
            continue
        for w in range(n_w):
            if t > starts[w]:
                out[w, acct[i]] += work[i]
    return out


@nb.njit(cache=True, nogil=True)
def apply_transfers(order: I64, src: I64, dst: I64, amount: I64, balance: I64) -> int:
    """Apply transfers in `order` to `balance` (in place); -1 = mint/burn side.
    Returns the position in `order` of the first transfer that makes a balance negative, or -1."""
    for k in range(order.shape[0]):
        j = order[k]
        s = src[j]
        if s >= 0:
            balance[s] -= amount[j]
            if balance[s] < 0:
                return k
        d = dst[j]
        if d >= 0:
            balance[d] += amount[j]
    return -1


@nb.njit(cache=True, nogil=True)
def token_seconds(src: I64, dst: I64, moved: I64, ts: I64) -> None:
    """ts[src] -= moved, ts[dst] += moved for every transfer (-1 = mint/burn side)."""
    for j in range(moved.shape[0]):
        if src[j] >= 0:
            ts[src[j]] -= moved[j]
        if dst[j] >= 0:
            ts[dst[j]] += moved[j]


@nb.njit(cache=True, nogil=True)
def mul_div_small(v: I64, c: int, d: int) -> tuple[I64, I64]:
    """`mul_div` in constant time per element when every quotient is small: needs
    0 <= c < d < 2**60, 0 <= v < 2**62 and floor(c * v[i] / d) < 2**53 for every i.

    A float64 estimate of the quotient is off by at most 4 (four roundings of relative size
    2**-53 on a value below 2**53), so c * v - q_est * d lies within 6 d of the true remainder
    and fits int64; it is computed in wrapping 64-bit arithmetic (exact modulo 2**64, hence
    exact), then the estimate is corrected by whole steps of d."""
    n = v.shape[0]
    q = np.empty(n, dtype=np.int64)
    r = np.empty(n, dtype=np.int64)
    fc = float(c)
    fd = float(d)
    for i in range(n):
        x = int(v[i])
        qi = int(fc * float(x) / fd)
        ri = c * x - qi * d  # compiled: wraps in both products, the difference is exact
        while ri < 0:
            ri += d
            qi -= 1
        while ri >= d:
            ri -= d
            qi += 1
        q[i] = qi
        r[i] = ri
    return q, r


@nb.njit(cache=True, nogil=True)
def mul_div(v: I64, c: int, d: int) -> tuple[I64, I64]:
    """Exact q[i] = floor(c * v[i] / d) and r[i] = c * v[i] mod d without 128-bit integers.

    Binary long multiplication, reducing modulo d at every step: (q, r) always represents
    c * (the bits of v seen so far) = q * d + r. Needs 0 <= c < d < 2**62 and 0 <= v < 2**62,
    so no intermediate exceeds 2**63 - 1.
    """
    n = v.shape[0]
    q = np.zeros(n, dtype=np.int64)
    r = np.zeros(n, dtype=np.int64)
    for i in range(n):
        x = v[i]
        qi = 0
        ri = 0
        for bit in range(61, -1, -1):
            qi = 2 * qi
            ri = 2 * ri
            if ri >= d:
                ri -= d
                qi += 1
            if (x >> bit) & 1:
                ri += c
                if ri >= d:
                    ri -= d
                    qi += 1
        q[i] = qi
        r[i] = ri
    return q, r
