"""The proof of delivered hashrate: what the commitment costs, what it stores, how big a
work proof is and how long verify.py takes on it.

.venv/bin/python bench/work_proof_bench.py [--shares 200000] [--leaves-log2 16] [--k 100]

1. Commitment cost. A share log of N shares (binary records with header hashes, a job record
   every 1,000 shares, heartbeats) is turned into the period's leaf file by the production
   keeper (`shares.leaves.LeafKeeper.build_due`), then into the work root the settlement
   commits (`tokens.work.columns_root`, what `commit_work` calls). CPU seconds per
   share, and what 30,000 shares/s costs as a share of one core.
2. Storage: bytes per share of the leaf file, and what header hashes and job records add to
   the share log, per million shares.
3. Proof size and verify.py. A period of 2^m real shares (ground against real jobs on the
   simnet: `tests/work_scenario.py`), committed, anchored, sampled k times: the proof's bytes
   and `python verify.py proof.json` (a fresh interpreter, median of 5). For 2^32 leaves the
   size is the measured one plus the extra distinct path nodes 100 draws meet in a tree of
   2^32 leaves (counted, each at its measured size): no machine here holds 2^32 leaves.
4. The default k: the fewest draws that catch a 5 % inflation (1/21 of the work fake) with
   99 % probability.
Prints and writes bench/results/work_proof.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accounting import work_proof as wp  # noqa: E402
from poold.shares.format import Beat, JobRecord, encode_share  # noqa: E402
from poold.shares.leaves import LeafKeeper  # noqa: E402
from poold.shares.log import ShareLog  # noqa: E402
from poold.tokens.work import columns_root, merged  # noqa: E402

PERIOD = 86400
T0 = 1_800_000_000 // PERIOD * PERIOD


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def commitment(n: int, directory: Path) -> dict[str, object]:
    log = ShareLog(directory, segment_bytes=64 << 20)
    log.open()
    rng = random.Random(1)
    job = JobRecord(T0 * 1000, 0, "", 840_000, bytes(32), 0x20000000, 0x17034219, T0,
                    bytes(60), bytes(150), tuple(bytes([i]) * 32 for i in range(12)))  # fmt: skip
    plain = 0
    payloads = []
    for i in range(n):
        if i % 1000 == 0:
            key = f"{i // 1000:016x}"
            rec = JobRecord(**{**{k: getattr(job, k) for k in JobRecord.__slots__}, "key": key})
            payloads.append(json.dumps(rec.to_json(), separators=(",", ":")).encode())
        ts = T0 * 1000 + i * (PERIOD * 1000 // n)
        en2 = i.to_bytes(8, "big")
        args = (ts, 0, "fleet", f"rig{i % 50}", key, 840_000, 0x17034219, 65536, 1,
                b"\0\0\0\1", en2, T0, i & 0xFFFFFFFF, 0x20000000, False)  # fmt: skip
        h = rng.randbytes(32)
        plain += len(encode_share(*args))
        payloads.append(encode_share(*args, h))
        if len(payloads) > 10_000:
            log.append_payloads(payloads)
            payloads = []
    payloads.append(json.dumps(Beat(T0 * 1000 + PERIOD * 1000, 0, (T0 + PERIOD) * 1000).to_json(),
                               separators=(",", ":")).encode())  # fmt: skip
    log.append_payloads(payloads)
    log.flush()
    log.close()
    log_bytes = sum(p.stat().st_size for p in directory.glob("shares-*.log"))
    keeper = LeafKeeper(
        directory, 0, ("fleet",), lambda t: (t // PERIOD * PERIOD, t // PERIOD * PERIOD + PERIOD)
    )
    c0, w0 = cpu(), time.perf_counter()
    (built,) = keeper.build_due(T0 + PERIOD + 1)
    c1 = cpu()
    from poold.shares.leaves import read_leaves

    files = [read_leaves(built.path)]
    root = columns_root(files, b"salt" * 4)
    c2, w2 = cpu(), time.perf_counter()
    assert root == wp.stream_root(lf for lf, _n, _i in merged(files, b"salt" * 4))
    assert built.leaves == n and root.work == n * 65536 * 2**32
    per_share = (c2 - c0) / n
    return {
        "shares": n,
        "leaf_file_cpu_us_per_share": round((c1 - c0) / n * 1e6, 2),
        "root_cpu_us_per_share": round((c2 - c1) / n * 1e6, 2),
        "cpu_us_per_share": round(per_share * 1e6, 2),
        "wall_s": round(w2 - w0, 2),
        "core_share_at_30000_per_s": round(per_share * 30_000, 3),
        "leaf_file_bytes_per_share": round(built.path.stat().st_size / n, 2),
        "leaf_file_mb_per_million": round(built.path.stat().st_size / n, 2),
        "log_bytes_per_share": round(log_bytes / n, 2),
        "log_bytes_per_share_without_hashes_and_jobs": round(plain / n, 2),
    }


def distinct_siblings(leaves_log2: int, k: int, seed: int = 7) -> int:
    """Distinct sibling positions k random draws meet in a full tree of 2^m leaves."""
    rng = random.Random(seed)
    n = 1 << leaves_log2
    seen = set()
    for _ in range(k):
        i = rng.randrange(n)
        for lv in range(leaves_log2):
            seen.add((lv, (i >> lv) ^ 1))
    return len(seen)


def proof(leaves_log2: int, k: int, tmp: Path) -> dict[str, object]:
    from tests.work_scenario import work_doc

    t0 = time.perf_counter()
    doc = asyncio.run(work_doc(shares=1 << leaves_log2, k=k))
    made_s = time.perf_counter() - t0
    raw = json.dumps(doc).encode()
    path = tmp / "work.json"
    path.write_bytes(raw)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, str(ROOT / "verify.py"), str(path)],
                             capture_output=True, text=True, check=False)  # fmt: skip
        times.append(time.perf_counter() - t)
        assert out.returncode == 0, out.stdout + out.stderr
    node_bytes = statistics.mean(len(json.dumps(x)) + 2 for x in doc["nodes"])  # type: ignore[union-attr]
    big_nodes = distinct_siblings(32, k)
    entry_32 = node_bytes + 5  # indices of up to 10 digits instead of up to 5
    size_32 = len(raw) - len(doc["nodes"]) * node_bytes + big_nodes * entry_32  # type: ignore[arg-type]
    return {
        "leaves": doc["work"]["leaves"],  # type: ignore[index]
        "k": k,
        "made_s": round(made_s, 1),
        "proof_bytes": len(raw),
        "path_nodes": len(doc["nodes"]),  # type: ignore[arg-type]
        "bytes_per_node_entry": round(node_bytes, 1),
        "verify_s_median": round(statistics.median(times), 3),
        "verify_s_slowest": round(max(times), 3),
        "verdict": out.stdout.splitlines()[0],
        "at_2_32_leaves": {
            "path_nodes": big_nodes,
            "proof_bytes": int(size_32),
            "proof_kb": round(size_32 / 1000, 1),
            "verify_extra_parent_hashes": (32 - leaves_log2) * k,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shares", type=int, default=200_000)
    ap.add_argument("--leaves-log2", type=int, default=14)
    ap.add_argument("--k", type=int, default=wp.DEFAULT_K)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "log").mkdir()
        result = {
            "machine": machine(),
            "commitment": commitment(args.shares, t / "log"),
            "proof": proof(args.leaves_log2, args.k, t),
            "default_k": {
                "k": wp.DEFAULT_K,
                "min_k_for_5_percent_inflation": wp.min_k(1 / 21),
                "escape_at_default_k": round(wp.escape_probability(1 / 21, wp.DEFAULT_K), 5),
            },
        }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "work_proof.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
