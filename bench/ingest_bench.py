"""Share-log ingest throughput into SQLite and PostgreSQL (shares/s, rows written).

.venv/bin/python bench/ingest_bench.py [--shares N]

10,000 workers, shares 1 ms apart, default batches (100,000 records); both ledgers fresh, so the
first batch also creates every account and worker. The Numba kernels are loaded (compiled, on a
fresh checkout) before the clock starts; `kernel_load_s` reports that once-per-process cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa
from common import RUNS, machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poold.ledger.db import make_engine, migrate  # noqa: E402
from poold.ledger.ingest import ingest  # noqa: E402
from poold.ledger.models import ShareSlice  # noqa: E402
from poold.shares.format import encode_share  # noqa: E402
from poold.shares.log import ShareLog  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def write_log(path: Path, n: int, workers: int = 10_000) -> None:
    log = ShareLog(path)
    log.open()
    t0 = 1_800_000_000_000
    for i in range(n):
        w = i % workers
        diff = Fraction(1 << (10 + i % 8))
        log.append_payload(
            encode_share(
                t0 + i,
                0,
                f"acct{w // 4}",
                f"rig{w % 4}",
                "1f",
                900_000,
                0x17034219,
                diff.numerator,
                diff.denominator,
                b"\0\0\0\1",
                i.to_bytes(4, "big"),
                1,
                i,
                0x20000000,
                False,
            )
        )
        if i % 10_000 == 0:
            log.flush()
    log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shares", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=RUNS, help="fresh ledgers per backend; median")
    a = ap.parse_args()
    out: dict[str, object] = {"machine": machine(), "shares": a.shares, "runs": a.runs}
    with tempfile.TemporaryDirectory() as td:
        log = Path(td) / "log"
        write_log(log, a.shares)
        out["log_bytes"] = sum(p.stat().st_size for p in log.iterdir())
        # Load (or on a fresh checkout, compile) the Numba kernels first: the daemon's ledger
        # worker does this once at start, not per batch.
        warm = Path(td) / "warm"
        write_log(warm, 100, workers=10)
        t = time.perf_counter()
        warm_db = make_engine(f"sqlite:///{td}/warm.db")
        migrate(warm_db)
        ingest(warm_db, warm, 0)
        out["kernel_load_s"] = round(time.perf_counter() - t, 2)
        for name in ("sqlite", "postgresql"):
            seconds, rows = [], 0
            for run in range(a.runs):
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                admin = sa.create_engine(PG)
                with admin.begin() as c:
                    c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                url = (
                    f"sqlite:///{td}/ledger{run}.db"
                    if name == "sqlite"
                    else f"{PG}?options=-csearch_path%3D{schema}"
                )
                try:
                    eng = make_engine(url)
                    migrate(eng)
                    t = time.perf_counter()
                    ingest(eng, log, 0)
                    seconds.append(time.perf_counter() - t)
                    with eng.connect() as c:
                        rows = c.execute(
                            sa.select(sa.func.count()).select_from(ShareSlice)
                        ).scalar_one()
                    eng.dispose()
                finally:
                    with admin.begin() as c:
                        c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                    admin.dispose()
            dt = statistics.median(seconds)
            out[name] = {
                "shares_per_s": round(a.shares / dt),
                "seconds_median": round(dt, 2),
                "seconds_each": [round(x, 2) for x in seconds],
                "slice_rows": rows,
            }
    res = ROOT / "bench" / "results" / "ingest.json"
    res.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
