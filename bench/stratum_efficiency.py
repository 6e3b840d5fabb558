"""CPU per share: poold against the minimal validating server, A/B/A/B in one run.

The figure a pool pays for is server CPU per accepted share, not shares per second on an
idle core. For each connection count (1,000 and 10,000 by default) this starts the frozen
minimal server (`bench/baseline_server.py`, poold's checked parser) and `poold run` (share
log on, in its default durability mode; vardiff and sessions on) alternately, each a fresh
process pinned to CPU 0, drives it with `bench/loadgen.py` in a closed loop pinned to CPU 1,
and reads the server's CPU seconds over exactly the measured window. Each pair is one A/B;
the median of `--runs` pairs is reported, with the efficiency ratio baseline µs / poold µs
(≥ 1.0 means poold spends no more CPU on a share than the minimal server). Writes
bench/results/stratum_efficiency.json.

    .venv/bin/python bench/stratum_efficiency.py [--runs 5] [--duration 8] \
        [--connections 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import RUNS, machine
from stratum_bench import ROOT, loadgen, start_server, stop


def one(kind: str, tmp: Path, connections: int, duration: float) -> dict:
    proc, port = start_server(kind, tmp, cpu=0)
    try:
        return loadgen(port, proc.pid, connections=connections, mode="closed", duration=duration)
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=RUNS, help="A/B pairs per connection count")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--connections", type=int, nargs="+", default=[1000, 10000])
    a = ap.parse_args()
    results: dict = {"machine": machine(), "runs": a.runs, "duration_s": a.duration}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for n in a.connections:
            each: dict[str, list[dict]] = {"baseline": [], "poold": []}
            for i in range(a.runs):
                for kind in ("baseline", "poold"):
                    r = one(kind, tmp, n, a.duration)
                    each[kind].append(r)
                    print(
                        f"{n} run {i + 1} {kind}: {r['accepted_per_s']} shares/s, "
                        f"{r['server_cpu_us_per_share']} µs CPU/share",
                        flush=True,
                    )
            row: dict = {}
            for kind, runs in each.items():
                us = [r["server_cpu_us_per_share"] for r in runs]
                row[kind] = {
                    "cpu_us_per_share_median": round(statistics.median(us), 2),
                    "cpu_us_per_share_each": us,
                    "accepted_per_s_median": round(
                        statistics.median(r["accepted_per_s"] for r in runs)
                    ),
                    "latency_ms_p99_median": round(
                        statistics.median(r["latency_ms_p99"] for r in runs), 3
                    ),
                }
            ratios = [
                b["server_cpu_us_per_share"] / p["server_cpu_us_per_share"]
                for b, p in zip(each["baseline"], each["poold"], strict=True)
            ]
            row["efficiency_vs_baseline_median"] = round(statistics.median(ratios), 3)
            row["efficiency_vs_baseline_each"] = [round(x, 3) for x in ratios]
            results[f"closed_{n}"] = row
            print(n, json.dumps(row), flush=True)
    out = ROOT / "bench" / "results" / "stratum_efficiency.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
