"""API latency while the daemon takes shares: p50/p99 of a holder's 365-day statement list and
of the pool overview, measured against `poold run` (its process on CPU 0; its ledger process,
PostgreSQL and this client unpinned; a PostgreSQL ledger with a day of slices, ingest every 5 s)
while bench/loadgen.py offers 20,000 shares/s over 10,000 connections (CPU 1).
Writes bench/results/api.json.

.venv/bin/python bench/api_bench.py [--workers 2000] [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stratum_bench import PY, free_port, poold_config, raise_nofile, stop, wait_port  # noqa: E402

from poold.api.auth import create_token  # noqa: E402
from poold.ledger.db import bulk_insert, make_engine, migrate  # noqa: E402
from poold.ledger.models import (  # noqa: E402
    Account,
    JournalEntry,
    ShareSlice,
    TokenPeriod,
    TokenStatement,
    TokenTransfer,
    Worker,
)
from poold.ledger.slices.sums import fold  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DAY = 86400


def populate(engine: sa.Engine, workers: int, now: int) -> None:
    """One holder with 365 daily statements; `workers` workers with a slice per minute for
    the last 24 h."""
    first = now // DAY * DAY - 365 * DAY
    with engine.begin() as conn:
        conn.execute(
            sa.insert(TokenTransfer).values(
                ext_id="mint", ts=first, sender=None, receiver="h0", amount="100", digest="x"
            )
        )
        ids = (
            conn.execute(
                sa.insert(JournalEntry).returning(JournalEntry.id),
                [
                    {"kind": "token_period", "reference": str(first + d * DAY), "created_ms": 0}
                    for d in range(365)
                ],
            )
            .scalars()
            .all()
        )
        conn.execute(
            sa.insert(TokenPeriod),
            [
                {
                    "period_start": first + d * DAY,
                    "period_end": first + (d + 1) * DAY,
                    "entry_id": ids[d],
                    "btc_usd": "65000",
                    "delivered_ths": "100",
                    "nominal_th_s": "8640000",
                    "delivery_ratio": "1",
                    "earnings_sat": 5_000_000,
                    "holders_pot_sat": 5_000_000,
                    "operator_retained_sat": 0,
                }
                for d in range(365)
            ],
        )
        conn.execute(
            sa.insert(TokenStatement),
            [
                {
                    "holder": "h0",
                    "period_start": first + d * DAY,
                    "token_seconds": "8640000",
                    "gross_sat": 5_000_000,
                    "electricity_sat": 1_000_000,
                    "service_sat": 10_000,
                    "net_sat": 3_990_000,
                    "debt_in_sat": 0,
                    "paid_sat": 3_990_000,
                    "debt_out_sat": 0,
                    "written_off_sat": 0,
                }
                for d in range(365)
            ],
        )
        conn.execute(
            sa.insert(Account), [{"id": a + 1, "name": f"acct{a}"} for a in range(workers // 4)]
        )
        conn.execute(
            sa.insert(Worker),
            [
                {"id": w + 1, "account_id": w // 4 + 1, "name": f"rig{w % 4}"}
                for w in range(workers)
            ],
        )
    end = now // 60 * 60
    for m in range(1440):
        t = end - (m + 1) * 60
        with engine.begin() as conn:
            bulk_insert(
                conn,
                ShareSlice.__table__,  # type: ignore[arg-type]
                [
                    {
                        "node_id": 9,
                        "account_id": w // 4 + 1,
                        "worker_id": w + 1,
                        "slice_start": t,
                        "bits": 0x17034219,
                        "diff_num": str(65536 * 6),
                        "diff_den": "1",
                        "shares": 6,
                        "first_ms": t * 1000,
                        "last_ms": t * 1000,
                    }
                    for w in range(workers)
                ],
            )
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


async def measure(base: str, token: str, duration: float) -> dict[str, object]:
    lat: dict[str, list[float]] = {"statements_365": [], "pool": []}
    urls = {"statements_365": "/api/v1/holders/h0/statements?limit=365", "pool": "/api/v1/pool"}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for url in urls.values():  # warm the cache and the connection
            async with s.get(base + url) as r:
                assert r.status == 200, await r.text()
                await r.read()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            for name, url in urls.items():
                t = time.perf_counter()
                async with s.get(base + url) as r:
                    body = await r.read()
                    assert r.status == 200
                lat[name].append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.01)
    out: dict[str, object] = {}
    for name, xs in lat.items():
        xs.sort()
        out[name] = {
            "requests": len(xs),
            "p50_ms": round(xs[len(xs) // 2], 2),
            "p99_ms": round(xs[int(len(xs) * 0.99)], 2),
            "bytes": len(body) if name == "pool" else None,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--ingest-interval", type=float, default=5, help="the daemon's ledger passes")
    args = ap.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{PG}?options=-csearch_path%3D{schema}"
    try:
        engine = make_engine(url)
        migrate(engine)
        t = time.perf_counter()
        populate(engine, args.workers, int(time.time()))
        with engine.begin() as conn:
            fold(conn)  # the slices went in by COPY: count them into the sums, as ingest would
        load_s = time.perf_counter() - t
        token = create_token(engine, "admin")
        engine.dispose()
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            port, api_port = free_port(), free_port()
            # The Stratum benchmark's daemon, plus a PostgreSQL ledger and the API.
            cfg = poold_config(tmp, port)
            cfg.write_text(
                cfg.read_text()
                + f'[ledger]\nurl = "{url}"\ningest_interval_s = {args.ingest_interval}\n'
                + f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
            )
            proc = subprocess.Popen(
                [PY, "-m", "poold", "run", "--config", str(cfg)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=raise_nofile,
            )
            try:
                wait_port(port)
                wait_port(api_port)
                # The daemon's own threads (Stratum loop, API, group commit) on CPU 0; its
                # ledger process (started before the port opened) stays free to use CPU 1.
                subprocess.run(["taskset", "-a", "-p", "-c", "0", str(proc.pid)], check=True)
                load = subprocess.Popen(
                    [
                        PY,
                        str(ROOT / "bench" / "loadgen.py"),
                        "--port",
                        str(port),
                        "--connections",
                        "10000",
                        "--mode",
                        "open",
                        "--rate",
                        "20000",
                        "--duration",
                        str(args.duration + 10),
                        "--warmup",
                        "5",
                        "--cpu",
                        "1",
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                time.sleep(8)  # connections up, shares flowing
                api = asyncio.run(measure(f"http://127.0.0.1:{api_port}", token, args.duration))
                out, _ = load.communicate(timeout=600)
                stratum = json.loads(out.strip().splitlines()[-1])
            finally:
                stop(proc)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    report = {
        "workers_with_a_day_of_slices": args.workers,
        "slices": args.workers * 1440,
        "load_s": round(load_s, 1),
        "stratum_while_measuring": stratum,
        "api": api,
    }
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "results" / "api.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
