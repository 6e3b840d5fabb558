"""Where a share's CPU goes: py-spy samples `poold run` (pinned to CPU 0, share log on in its
default durability mode) while bench/loadgen.py keeps 1,000 connections busy in a closed loop
(pinned to CPU 1). Prints the top functions by own time and each stage's share of the
samples (parse, validate, log, reply, event loop and the rest), and the µs per share that
gives at the measured rate. Writes bench/results/stratum_profile.json.

    .venv/bin/pip install py-spy   # once: a sampling profiler, not a dependency of poold
    .venv/bin/python bench/stratum_profile.py [--duration 20] [--connections 1000]
    .venv/bin/python bench/stratum_profile.py --server baseline   # the minimal server, alike
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from common import machine
from stratum_bench import ROOT, loadgen, start_server, stop

# A sample's stage: the first rule whose module or function appears in its stack, innermost
# frame first. Order matters: validation calls hashing, the log calls the disk.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("log (share log write, group commit)", ("shares/log.py", "shares/writer.py", "fdatasync")),
    ("validate (header, hash, target)", ("shares/validate.py", "chain/", "jobs/")),
    ("parse (JSON line to request)", ("stratum/protocol.py", "orjson")),
    ("reply (encode, transport write)", ("write", "writelines", "_reply", "send")),
    ("session (vardiff, counters, duplicates)", ("stratum/session.py", "stratum/vardiff.py")),
    ("metrics and events", ("metrics.py", "events.py")),
    ("event loop and sockets", ("asyncio", "uvloop", "selectors")),
]


def find_py_spy() -> str:
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: `.venv/bin/pip install py-spy` (a profiler only)")
    return found


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument(
        "--server",
        choices=("poold", "baseline"),
        default="poold",
        help="profile poold, or the minimal server the same way (for a side-by-side)",
    )
    args = ap.parse_args()
    spy = find_py_spy()
    report: dict[str, object] = {
        "machine": machine(),
        "server": args.server,
        "connections": args.connections,
    }
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        server, port = start_server(args.server, tmp, cpu=0)
        raw = tmp / "samples.txt"
        try:
            # Sample for the load's whole measured window (warm-up excluded by starting late).
            # --gil: only the thread holding the GIL is sampled, so a thread waiting in
            # fdatasync (the group commit) is not counted as work.
            record = [spy, "record", "-p", str(server.pid), "-r", "200", "-f", "raw", "--gil"]
            record += ["-o", str(raw), "-d", str(int(args.duration)), "--nonblocking"]
            result: dict[str, object] = {}

            def load() -> None:
                result.update(
                    loadgen(
                        port,
                        server.pid,
                        connections=args.connections,
                        mode="closed",
                        duration=args.duration + 2,
                        warmup=3,
                    )
                )

            runner = threading.Thread(target=load)
            runner.start()
            subprocess.run(record, check=True, capture_output=True, timeout=args.duration + 120)
            runner.join()
        finally:
            stop(server)
        own: Counter[str] = Counter()
        stages: Counter[str] = Counter()
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            frames = stack.split(";")
            own[re.sub(r":\d+\)$", ")", frames[-1])] += n  # by function, not by line
            stages[stage_of(frames)] += n
            total += n
    rate = float(result.get("accepted_per_s", 0) or 0)
    cpu = float(result.get("server_cpu_avg", 0) or 0)
    us_per_share = cpu / rate * 1e6 if rate else 0.0
    report["shares_per_s"] = round(rate)
    report["server_cpu"] = cpu
    report["cpu_us_per_share"] = round(us_per_share, 1)
    report["samples"] = total
    report["top_own_time"] = [
        {"function": f, "share": round(n / total, 4)} for f, n in own.most_common(args.top)
    ]
    report["stages"] = {
        s: {"share": round(n / total, 4), "us_per_share": round(us_per_share * n / total, 1)}
        for s, n in stages.most_common()
    }
    print(json.dumps(report, indent=2))
    name = "stratum_profile" if args.server == "poold" else "stratum_profile_baseline"
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
