"""Hashrate over a window and hashprice. Imports numpy and `accounting` only.

Hashrate over (start, end] = sum(share difficulty) x 2**32 / (end - start), in H/s.
Hashprice = expected satoshis per TH/s per day at a network difficulty.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from accounting.kernels import window_sums
from accounting.money import exact, non_negative, positive, satoshis

I64 = npt.NDArray[np.int64]
SECONDS_PER_DAY = 86_400


def hashrate(shares: Sequence[tuple[object, object]], start: object, end: object) -> Fraction:
    """H/s over (start, end] from `shares` = [(timestamp_s, share_difficulty)], exactly."""
    t0, t1 = exact(start, "start"), exact(end, "end")
    if t1 <= t0:
        raise ValueError("end must be after start")
    total = Fraction(0)
    for i, (t, d) in enumerate(shares):
        ts = exact(t, f"shares[{i}].timestamp")
        diff = positive(d, f"shares[{i}].share_difficulty")
        if t0 < ts <= t1:
            total += diff
    return total * 2**32 / (t1 - t0)


def hashprice(network_difficulty: object, subsidy_sat: int, avg_fees_sat: object = 0) -> Fraction:
    """Expected satoshis per TH/s per day: 1e12 x 86400 / (difficulty x 2**32) x block value."""
    nd = positive(network_difficulty, "network_difficulty")
    block = satoshis(subsidy_sat, "subsidy_sat") + non_negative(avg_fees_sat, "avg_fees_sat")
    return Fraction(10**12 * SECONDS_PER_DAY) / (nd * 2**32) * block


def hashrate_windows(
    ts: I64,
    work: I64,
    account_idx: I64,
    n_accounts: int,
    end: int,
    windows_s: Sequence[int],
    *,
    work_per_difficulty: int = 1,
) -> npt.NDArray[np.float64]:
    """Per-account hashrate (H/s, float64 for display) for each window ending at `end`.

    Exact work sums come from the kernel; the division is the only rounding."""
    if not windows_s or min(windows_s) <= 0:
        raise ValueError("windows_s: need positive window lengths")
    starts = np.array([end - w for w in windows_s], dtype=np.int64)
    sums = window_sums(ts, work, account_idx, n_accounts, starts, end)
    scale = np.array([2**32 / (w * work_per_difficulty) for w in windows_s])
    out: npt.NDArray[np.float64] = sums.astype(np.float64) * scale[:, None]
    return out
