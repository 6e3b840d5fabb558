"""Accounting core benchmark: 10M shares, 50k accounts, mixed difficulties, two days.

Reports (after JIT warm-up) PPLNS window walk + exact split, FPPS per-account credit, hashrate
for 10 min / 1 h / 24 h windows for all accounts, with NumPy and pure-Python baselines for the
PPLNS path in the same run; JIT compile time cold and from the cache (fresh processes); token
settlement for 100,000 holders and 1,000,000 transfers in a day; peak RSS.
Writes bench/results/accounting.json.

    .venv/bin/python bench/accounting_bench.py [--shares N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from common import RUNS, machine, median_of

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accounting import (  # noqa: E402
    AccountNames,
    fpps_credit_arrays,
    hashrate_windows,
    pplns_split_arrays,
    token_settle,
)

DAY = 86_400


def timed(fn, repeat: int = RUNS) -> tuple[float, object]:
    """The median CPU time of this process over `repeat` runs, in ms, and the last result."""
    median_s, _times, out = median_of(fn, repeat, clock=time.process_time)
    return median_s * 1000, out


def make_shares(n: int, n_acc: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 2 * DAY, n)).astype(np.int64)
    # Skewed account activity and mixed difficulties (2**10 .. 2**20, integer units).
    acct = (rng.zipf(1.3, n) % n_acc).astype(np.int64)
    work = (2 ** rng.integers(10, 21, n)).astype(np.int64)
    epoch = (ts >= DAY).astype(np.int64)  # a network difficulty change after day one
    return ts, acct, work, epoch


def pplns_numpy(acct, work, epoch, nets, n_acc, factor=2):
    """Baseline: the same walk with NumPy (cumsum + searchsorted + bincount), one epoch."""
    rev = work[::-1]
    cum = np.cumsum(rev)
    cap = int(factor * nets[int(epoch[-1])])
    k = int(np.searchsorted(cum, cap))
    return np.bincount(acct[::-1][:k], weights=rev[:k], minlength=n_acc)


def pplns_python(acct, work, epoch, nets, factor=2):
    acc: dict[int, int] = {}
    cap = int(factor * nets[int(epoch[-1])])
    cum = 0
    a_list, w_list = acct.tolist(), work.tolist()
    for i in range(len(w_list) - 1, -1, -1):
        w = w_list[i]
        if cum + w >= cap:
            break
        cum += w
        acc[a_list[i]] = acc.get(a_list[i], 0) + w
    return acc


def jit_times() -> dict[str, float]:
    code = (
        "import time, numpy as np; t=time.perf_counter();"
        "from accounting.kernels import walk_window, epoch_account_sums, window_sums, "
        "apply_transfers;"
        "a=np.ones(4, dtype=np.int64); z=np.zeros(4, dtype=np.int64);"
        "walk_window(a, z, z, 3, 2, np.zeros(1, dtype=np.int64));"
        "epoch_account_sums(a, z, z, 1, 1); window_sums(a, a, z, 1, a, 5);"
        "apply_transfers(z, z - 1, z, a, np.zeros(1, dtype=np.int64));"
        "print(time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cold = float(
            subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
        )
        warm = float(
            subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
        )
    return {"compile_cold_s": round(cold, 3), "load_from_cache_s": round(warm, 3)}


def tokens_case(n_holders: int, n_transfers: int, seed: int = 2):
    rng = np.random.default_rng(seed)
    names = [f"holder{i:06d}" for i in range(n_holders)]
    opening = {h: 1000 for h in names}
    t = np.sort(rng.integers(0, DAY, n_transfers)).tolist()
    src = rng.integers(0, n_holders, n_transfers).tolist()
    dst = ((np.array(src) + 1 + rng.integers(0, n_holders - 1, n_transfers)) % n_holders).tolist()
    transfers = [(t[i], names[src[i]], names[dst[i]], 1) for i in range(n_transfers)]
    return opening, transfers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shares", type=int, default=10_000_000)
    ap.add_argument("--accounts", type=int, default=50_000)
    a = ap.parse_args()
    n, n_acc = a.shares, a.accounts
    res: dict[str, object] = {"machine": machine(), "shares": n, "accounts": n_acc}
    res["jit"] = jit_times()
    ts, acct, work, epoch = make_shares(n, n_acc)
    # The account table is checked unique once, as the ledger's table is built; every split
    # over it then skips the check (a plain list costs ~2 ms more per split).
    accounts = AccountNames(f"acct{i:05d}" for i in range(n_acc))
    # Network difficulty per epoch chosen so a factor-2 window covers ~80% of day two's work.
    day2 = int(work[epoch == 1].sum())
    nets = [Fraction(int(work[epoch == 0].sum()) * 2, 5), Fraction(day2 * 2, 5)]
    reward = 312_500_000 + 3_762_561_499

    def run_pplns():
        return pplns_split_arrays(
            reward, acct, work, epoch, nets, accounts, factor=2, pool_fee="0.02"
        )

    def run_numpy():
        return pplns_numpy(acct, work, epoch, nets, n_acc)

    run_pplns()  # JIT warm-up
    run_numpy()
    # A/B/A/B: the exact split and the float window alternate, so a change in the machine's
    # load hits both; CPU time of this process, the median of RUNS runs each.
    exact_s: list[float] = []
    float_s: list[float] = []
    r = None
    for _ in range(RUNS):
        _m, (t_exact,), r = median_of(run_pplns, 1, clock=time.process_time)
        _m, (t_float,), _ = median_of(run_numpy, 1, clock=time.process_time)
        exact_s.append(t_exact)
        float_s.append(t_float)
    ms, ms_np = statistics.median(exact_s) * 1000, statistics.median(float_s) * 1000
    res["pplns_walk_split_ms"] = round(ms, 2)
    res["pplns_shares_used"] = r.shares_used  # type: ignore[union-attr]
    res["pplns_walk_numpy_ms"] = round(ms_np, 2)
    res["pplns_exact_vs_float_numpy"] = round(ms_np / ms, 2)
    t = time.perf_counter()
    pplns_python(acct, work, epoch, nets)
    res["pplns_walk_python_ms"] = round((time.perf_counter() - t) * 1000, 1)
    # The walk alone, to compare like with like against the baselines.
    from accounting.kernels import walk_window

    cap = int(2 * nets[1])

    def walk_only():
        acc = np.zeros(n_acc, dtype=np.int64)
        return walk_window(work, acct, epoch, n - 1, cap, acc)

    ms_walk, _ = timed(walk_only)
    res["pplns_walk_numba_ms"] = round(ms_walk, 2)
    res["numba_vs_numpy"] = round(ms_np / ms_walk, 1)
    res["numba_vs_python"] = round(res["pplns_walk_python_ms"] / ms_walk)  # type: ignore[operator]

    block = Fraction(312_500_000 + 3_762_561_499) * Fraction(98, 100)
    fpps_credit_arrays(acct, work, epoch, nets, n_acc, block_sat=block)
    ms, _ = timed(lambda: fpps_credit_arrays(acct, work, epoch, nets, n_acc, block_sat=block))
    res["fpps_credit_ms"] = round(ms, 2)

    end = 2 * DAY
    hashrate_windows(ts, work, acct, n_acc, end, [600, 3600, DAY])
    ms, _ = timed(lambda: hashrate_windows(ts, work, acct, n_acc, end, [600, 3600, DAY]))
    res["hashrate_3_windows_ms"] = round(ms, 2)

    def hashrate_numpy():
        out = []
        for w in (600, 3600, DAY):
            lo = int(np.searchsorted(ts, end - w, side="right"))
            out.append(np.bincount(acct[lo:], weights=work[lo:], minlength=n_acc))
        return out

    ms, _ = timed(hashrate_numpy)
    res["hashrate_3_windows_numpy_ms"] = round(ms, 2)
    res["peak_rss_mb_after_10m_runs"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )

    opening, transfers = tokens_case(100_000, 1_000_000)
    kw = dict(
        th_per_token=1,
        w_per_th=20,
        usd_per_kwh="0.06",
        btc_usd=60_000,
        delivered_th_per_s=90_000_000,
        period_earnings_sat=5 * 10**9,
        service_usd_per_th_day="0.01",
    )
    token_settle(0, DAY, opening, transfers[:1000], **kw)
    ms, _ = timed(lambda: token_settle(0, DAY, opening, transfers, **kw), repeat=3)
    res["token_settle_100k_holders_1m_transfers_ms"] = round(ms, 1)
    out = ROOT / "bench" / "results" / "accounting.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
