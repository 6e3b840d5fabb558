"""Stratum front-door benchmark: poold vs a minimal validating server, side by side.

Server pinned to CPU 0, load generator (bench/loadgen.py) pinned to CPU 1. "baseline" parses
with poold's checked parser, "baseline_raw" with unchecked orjson (bench/baseline_server.py
says why both). Reports validated
shares/s at 1,000 and 10,000 connections (closed loop), p50/p99 reply latency at 20,000
shares/s offered over 10,000 connections, RSS per idle connection, server CPU use, and
`poold run` with 1 vs 2 SO_REUSEPORT workers (unpinned). Writes bench/results/stratum.json.

    .venv/bin/python bench/stratum_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def family(pid: int) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children")
    out = [pid]
    if kids.exists():
        for c in kids.read_text().split():
            out += family(int(c))
    return out


def cpu_s(pid: int) -> float:
    total = 0.0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def rss_kb(pid: int) -> int:
    total = 0
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def poold_config(tmp: Path, port: int, workers: int = 1, fsync: int = 5) -> Path:
    cfg = tmp / f"bench-{port}.toml"
    cfg.write_text(f"""
[stratum]
listen = "127.0.0.1:{port}"
workers = {workers}
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
fsync_interval_ms = {fsync}
[log]
level = "warning"
format = "json"
""")
    return cfg


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(
    kind: str, tmp: Path, cpu: int | None, workers: int = 1
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if kind == "poold":
        cmd = [PY, "-m", "poold", "run", "--config", str(poold_config(tmp, port, workers))]
    else:
        parser = "raw" if kind == "baseline_raw" else "checked"
        cmd = [PY, str(ROOT / "bench" / "baseline_server.py"), "--port", str(port)]
        cmd += ["--parser", parser]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=raise_nofile
    )
    wait_port(port)
    time.sleep(0.5)
    return proc, port


def loadgen(
    port: int,
    server_pid: int,
    *,
    connections: int,
    mode: str,
    rate: float = 0,
    cpu: int | None = 1,
    duration: float = 10,
    warmup: float = 3,
    tls: bool = False,
) -> dict:
    cmd = [
        PY,
        str(ROOT / "bench" / "loadgen.py"),
        "--port",
        str(port),
        "--connections",
        str(connections),
        "--mode",
        mode,
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--server-pid",
        str(server_pid),
    ]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if tls:
        cmd.append("--tls")
    c0 = cpu_s(server_pid)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    wall = time.monotonic() - t0
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    # Server CPU over the whole loadgen run (connect + warm-up + measurement), as a fraction.
    result["server_cpu_avg"] = round((cpu_s(server_pid) - c0) / wall, 2)
    return result


def idle_rss(proc: subprocess.Popen[bytes], port: int, connections: int) -> dict:
    before = rss_kb(proc.pid)
    lg = subprocess.Popen(
        [
            PY,
            str(ROOT / "bench" / "loadgen.py"),
            "--port",
            str(port),
            "--connections",
            str(connections),
            "--mode",
            "idle",
            "--duration",
            "30",
            "--cpu",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert lg.stdout is not None
    lg.stdout.readline()  # all connected, subscribed, authorized, job received
    time.sleep(1.0)
    after = rss_kb(proc.pid)
    lg.kill()
    lg.wait()
    return {
        "connections": connections,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "bytes_per_idle_connection": round((after - before) * 1024 / connections),
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    a = ap.parse_args()
    dur = 5.0 if a.quick else 10.0
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for kind in ("baseline", "poold"):
            proc, port = start_server(kind, tmp, cpu=0)
            try:
                r: dict = {}
                for n in (1000, 10000):
                    r[f"closed_{n}"] = loadgen(
                        port, proc.pid, connections=n, mode="closed", duration=dur
                    )
                    print(kind, n, r[f"closed_{n}"], flush=True)
                results[kind] = r
            finally:
                stop(proc)
            # fresh process for the open-loop run: no leftover connections
            proc, port = start_server(kind, tmp, cpu=0)
            try:
                results[kind]["open_10000_at_20000"] = loadgen(
                    port, proc.pid, connections=10000, mode="open", rate=20000, duration=dur
                )
                print(kind, "open", results[kind]["open_10000_at_20000"], flush=True)
            finally:
                stop(proc)
        # The unchecked-parser baseline, for transparency (see bench/baseline_server.py).
        proc, port = start_server("baseline_raw", tmp, cpu=0)
        try:
            results["baseline_raw"] = {
                "closed_1000": loadgen(
                    port, proc.pid, connections=1000, mode="closed", duration=dur
                )
            }
            print("baseline_raw", results["baseline_raw"]["closed_1000"], flush=True)
        finally:
            stop(proc)
        proc, port = start_server("poold", tmp, cpu=0)
        try:
            results["poold"]["idle"] = idle_rss(proc, port, 10000)
            print("idle", results["poold"]["idle"], flush=True)
        finally:
            stop(proc)
        for workers in (1, 2):
            proc, port = start_server("poold", tmp, cpu=None, workers=workers)
            try:
                r2 = loadgen(
                    port, proc.pid, connections=1000, mode="closed", cpu=None, duration=dur
                )
                results[f"poold_workers_{workers}_unpinned"] = r2
                print("workers", workers, r2, flush=True)
            finally:
                stop(proc)
    b = results["baseline"]["closed_1000"]["accepted_per_s"]
    p = results["poold"]["closed_1000"]["accepted_per_s"]
    results["poold_vs_baseline_1000"] = round(p / b, 3)
    raw = results["baseline_raw"]["closed_1000"]["accepted_per_s"]
    results["poold_vs_baseline_raw_1000"] = round(p / raw, 3)
    out = ROOT / "bench" / "results" / "stratum.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
