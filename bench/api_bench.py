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
from fractions import Fraction
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from common import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stratum_bench import PY, free_port, poold_config, raise_nofile, stop, wait_port  # noqa: E402

from poold.api.auth import create_token  # noqa: E402
from poold.chain.subsidy import subsidy_sat  # noqa: E402
from poold.config import TokensConfig  # noqa: E402
from poold.ledger.db import make_engine, migrate  # noqa: E402
from poold.ledger.fpps import book_fpps  # noqa: E402
from poold.ledger.ingest import ingest  # noqa: E402
from poold.shares.format import encode_share  # noqa: E402
from poold.shares.log import ShareLog  # noqa: E402
from poold.tokens.settle import set_prices, settle_due  # noqa: E402
from poold.tokens.transfers import Transfer, import_transfers  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DAY = 86400
BITS = 0x17034219
TOKENS = TokensConfig(
    enabled=True,
    th_per_token=Fraction(1),
    w_per_th=Fraction(15),
    usd_per_kwh=Fraction(4, 100),
    service_usd_per_th_day=Fraction(5, 1000),
    fleet_accounts=("fleet",),
)


def populate(engine: sa.Engine, workers: int, now: int, log_dir: Path) -> int:
    """A year of one holder's daily statements and a day of `workers` workers' slices, each
    through the production entry points: the holder's tokens as the importer takes them;
    shares (the fleet's one every ten minutes for a year, each worker's one a minute for the
    last 24 h) through a real share log and `ingest`, a day at a time; each day's earnings an
    FPPS booking (`book_fpps`); prices; then `settle_due` posts the 365 periods through the
    journal. Returns the shares written."""
    today = now // DAY * DAY
    first = today - 365 * DAY
    end = now // 60 * 60
    mint = Transfer("mint", first, None, "h0", Fraction(100))
    assert import_transfers(engine, [mint])
    set_prices(engine, [(first + d * DAY, Fraction(65000)) for d in range(365)], TOKENS)
    # 100 TH/s of work: a ten-minute share of that difficulty.
    fleet_work = 100 * 10**12 * 600 // 2**32
    log = ShareLog(log_dir, node_id=9)
    written = 0
    day = first
    while day < end:
        log.open()
        payloads = []
        for m in range(day // 60, min(day + DAY, end) // 60):
            t = m * 60
            if t < today and t % 600 == 0:
                payloads.append(
                    encode_share(
                        t * 1000 + 1,
                        9,
                        "fleet",
                        "rig",
                        f"{m:x}",
                        900_000,
                        BITS,
                        fleet_work,
                        1,
                        bytes(4),
                        m.to_bytes(4, "big"),
                        t,
                        m,
                        0x20000000,
                        False,
                    )
                )
            if t >= end - DAY:
                for w in range(workers):
                    payloads.append(
                        encode_share(
                            t * 1000 + 2,
                            9,
                            f"acct{w // 4}",
                            f"rig{w % 4}",
                            f"{m:x}",
                            900_000,
                            BITS,
                            65536 * 6,
                            1,
                            w.to_bytes(4, "big"),
                            m.to_bytes(4, "big"),
                            t,
                            w,
                            0x20000000,
                            False,
                        )
                    )
        log.append_payloads(payloads)
        written += len(payloads)
        through = min(day + DAY, end) * 1000
        log.append({"t": "beat", "ts": through, "node": 9, "through": through})
        log.close()
        ingest(engine, log_dir, 9)
        book_fpps(
            engine,
            period_end_s=min(day + DAY, end),
            subsidy_sat=subsidy_sat(900_000),
            avg_fees_sat=Fraction(4_000_000),
            pool_fee=Fraction(2, 100),
        )
        day += DAY
    settled = [r for r in settle_due(engine, TOKENS, now=now) if r.settled is not None]
    assert len(settled) == 365, [r.waiting for r in settle_due(engine, TOKENS, now=now)]
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return written


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
    figures = machine()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{PG}?options=-csearch_path%3D{schema}"
    try:
        engine = make_engine(url)
        migrate(engine)
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            t = time.perf_counter()
            shares = populate(engine, args.workers, int(time.time()), tmp / "history")
            load_s = time.perf_counter() - t
            token = create_token(engine, "admin")
            engine.dispose()
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
        "machine": figures,
        "workers_with_a_day_of_slices": args.workers,
        "slices": args.workers * 1440,
        "shares_loaded": shares,
        "load_s": round(load_s, 1),
        "stratum_while_measuring": stratum,
        "api": api,
    }
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "results" / "api.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
