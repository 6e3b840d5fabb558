"""What durability costs: `[sharelog] reply_after = "fsync"` beside the default "write" (shares
per second and reply p50/p99 at 1,000 connections, closed loop, the modes alternated in one
run, the median of each), and the share stream: shipping lag p99 over three daemons at the
highest rate this machine sustains beside NATS and the load generator, and the time to catch
up after a 20 s stream outage. Writes bench/results/durability.json.

    .venv/bin/python bench/durability_bench.py [--quick] [--part fsync|stream]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from bench.stratum_bench import free_port, loadgen, raise_nofile, stop, wait_port

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
OUT = ROOT / "bench" / "results" / "durability.json"


def config(tmp: Path, port: int, reply_after: str, extra: str = "", node_id: int = 1) -> Path:
    cfg = tmp / f"bench-{port}.toml"
    cfg.write_text(f"""
[stratum]
listen = "127.0.0.1:{port}"
node_id = {node_id}
start_difficulty = "1/4294967296"
min_difficulty = "1/4294967296"
max_difficulty = "1/4294967296"
max_connections = 20000
idle_timeout_s = 3600
[bitcoind]
kind = "simnet"
simnet_difficulty = 1099511627776
[pool]
network = "regtest"
payout_address = "bcrt1q2gxggvp0sywjxshxylx4ta30xu80fnqdt5pekn"
[sharelog]
path = "{tmp / f"sharelog-{port}"}"
fsync_interval_ms = 5
reply_after = "{reply_after}"
{extra}
[log]
level = "info"
format = "json"
""")
    return cfg


def start(cfg: Path, port: int, cpu: int | None, log: Path) -> subprocess.Popen[bytes]:
    cmd = [PY, "-m", "poold", "run", "--config", str(cfg)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=raise_nofile)
    wait_port(port)
    time.sleep(0.5)
    return proc


def fsync_part(tmp: Path, runs: int, duration: float) -> dict[str, Any]:
    """The two reply modes, alternated so both meet the same machine."""
    per: dict[str, list[dict[str, Any]]] = {"write": [], "fsync": []}
    for _ in range(runs):
        for mode in ("write", "fsync"):
            port = free_port()
            proc = start(config(tmp, port, mode), port, 0, tmp / "poold.log")
            try:
                r = loadgen(port, proc.pid, connections=1000, mode="closed", duration=duration)
            finally:
                stop(proc)
            print(mode, r, flush=True)
            per[mode].append(r)
    out: dict[str, Any] = {}
    for mode, rs in per.items():
        out[mode] = {
            "accepted_per_s": statistics.median(r["accepted_per_s"] for r in rs),
            "latency_ms_p50": statistics.median(r["latency_ms_p50"] for r in rs),
            "latency_ms_p99": statistics.median(r["latency_ms_p99"] for r in rs),
            "runs": rs,
        }
    w, f = out["write"], out["fsync"]
    out["fsync_vs_write_throughput"] = round(f["accepted_per_s"] / w["accepted_per_s"], 3)
    out["connections"] = 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    ap.add_argument("--part", choices=["fsync", "stream", "all"], default="all")
    a = ap.parse_args()
    results: dict[str, Any] = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["machine"] = machine()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        if a.part in ("fsync", "all"):
            results["reply_after"] = fsync_part(tmp, 1 if a.quick else 3, 5 if a.quick else 8)
        if a.part in ("stream", "all"):
            from bench.stream_bench import stream_part

            results["stream"] = stream_part(tmp, quick=a.quick)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2)[:3000])


if __name__ == "__main__":
    main()
