"""The share stream under load (part of bench/durability_bench.py): three daemons shipping to
one JetStream server of the bench's own (its own port and store), an open-loop load split
over them. Reports, per offered rate, accepted shares/s and the shipping lag each daemon's
/metrics shows (`poold_stream_lag_seconds`, sampled every 0.25 s; the daemon refreshes it
once a second), and for one run with the server killed -9 for 20 s and restarted on its
store: shares refused while it was down and the seconds from its restart until every
daemon's lag is 0 again."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.durability_bench import config, start  # noqa: E402
from bench.stratum_bench import free_port, stop  # noqa: E402

PY = sys.executable
NATS = "/usr/sbin/nats-server"
LAG = re.compile(rb"^poold_stream_lag_seconds ([0-9.e+inf-]+)$", re.M)
OK = re.compile(rb"^poold_stream_ok ([0-9.]+)$", re.M)


class Nats:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.store = tmp / "nats-store"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [NATS, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def lag(api_port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=2) as r:
            m = LAG.search(r.read())
    except OSError:
        return None
    return float(m.group(1)) if m else None


def ok(api_port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=2) as r:
            m = OK.search(r.read())
    except OSError:
        return None
    return int(float(m.group(1))) if m else None


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) if xs else 0.0


def daemons(tmp: Path, nats: Nats, tag: str) -> list[tuple[subprocess.Popen[bytes], int, int]]:
    out = []
    for node in (1, 2, 3):
        port, api = free_port(), free_port()
        extra = f"""
[stream]
url = "nats://127.0.0.1:{nats.port}"
stream = "BENCH_{tag}"
subject = "bench.{tag}"
[api]
listen = "127.0.0.1:{api}"
[ledger]
ingest_interval_s = 0
"""
        cfg = config(tmp, port, "fsync", extra, node_id=node)
        out.append((start(cfg, port, None, tmp / f"poold-{node}.log"), port, api))
    return out


def load(ports: list[int], rate: float, duration: float) -> list[subprocess.Popen[str]]:
    procs = []
    for port in ports:
        cmd = [
            PY, str(ROOT / "bench" / "loadgen.py"), "--port", str(port), "--connections", "300",
            "--mode", "open", "--rate", str(rate / len(ports)), "--duration", str(duration),
            "--warmup", "3",
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    return procs


def results(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=600)
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def sample(apis: list[int], until: float, into: dict[int, list[float]]) -> None:
    while time.monotonic() < until:
        for api in apis:
            v = lag(api)
            if v is not None:
                into.setdefault(api, []).append(v)
        time.sleep(0.25)


def stream_part(tmp: Path, *, quick: bool = False) -> dict[str, Any]:
    nats = Nats(tmp)
    nats.start()
    out: dict[str, Any] = {"daemons": 3, "lag_sampling": "/metrics every 0.25 s (1 s refresh)"}
    duration = 10.0 if quick else 20.0
    try:
        for rate in (3000, 6000, 9000, 12000, 15000, 20000):
            ds = daemons(tmp, nats, f"R{rate}")
            try:
                lags: dict[int, list[float]] = {}
                procs = load([p for _d, p, _a in ds], rate, duration)
                time.sleep(3)
                sample([a for _d, _p, a in ds], time.monotonic() + duration, lags)
                rs = results(procs)
            finally:
                for d, _p, _a in ds:
                    stop(d)
            every = [v for vs in lags.values() for v in vs]
            accepted = sum(r["accepted_per_s"] for r in rs)
            out[f"offered_{rate}"] = {
                "accepted_per_s": accepted,
                "rejected": sum(r["rejected"] for r in rs),
                "reply_ms_p99": max(r["latency_ms_p99"] for r in rs),
                "lag_s_p50": pct(every, 0.5),
                "lag_s_p99": pct(every, 0.99),
                "lag_s_max": max(every, default=0.0),
            }
            print("stream", rate, out[f"offered_{rate}"], flush=True)
            if accepted < 0.95 * rate:
                break  # past what this machine sustains
        sustained = [
            int(k.split("_")[1])
            for k, v in out.items()
            if k.startswith("offered_") and v["accepted_per_s"] >= 0.95 * int(k.split("_")[1])
        ]
        out["highest_sustained_offered_per_s"] = max(sustained, default=0)
        rate = max(1000, out["highest_sustained_offered_per_s"] // 2)
        # The outage: 20 s down, then restarted on its store.
        ds = daemons(tmp, nats, "OUT")
        apis = [a for _d, _p, a in ds]
        try:
            procs = load([p for _d, p, _a in ds], rate, 45)
            time.sleep(8)
            nats.kill()
            down = time.monotonic()
            lags: dict[int, list[float]] = {}
            sampler = threading.Thread(target=sample, args=(apis, down + 20, lags))
            sampler.start()
            sampler.join()
            nats.start()
            back = time.monotonic()
            # Recovered: every daemon reaches the stream again and its lag is back under
            # 1 s (its ordinary p99 under load is about half that).
            while time.monotonic() - back < 120:
                states = [(ok(a), lag(a)) for a in apis]
                if all(o == 1 and v is not None and v < 1.0 for o, v in states):
                    break
                time.sleep(0.1)
            recovered = time.monotonic() - back
            rs = results(procs)
        finally:
            for d, _p, _a in ds:
                stop(d)
        out["outage_20s"] = {
            "offered_per_s": rate,
            "recovery_s": round(recovered, 2),
            "refused_during_run": sum(r["rejected"] for r in rs),
            "accepted": sum(r["accepted"] for r in rs),
            "lag_s_max_while_down": max((v for vs in lags.values() for v in vs), default=0.0),
        }
        print("outage", out["outage_20s"], flush=True)
    finally:
        if nats.proc is not None and nats.proc.poll() is None:
            nats.kill()
        shutil.rmtree(nats.store, ignore_errors=True)
    return out
