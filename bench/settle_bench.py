"""PPLNS settlement of one block over a window of N share slices, end to end (window query,
exact split, journal write, commit), on SQLite and PostgreSQL.

.venv/bin/python bench/settle_bench.py [--slices 5000000] [--workers 10000] [--backend both]

The network difficulty is chosen so the window (factor 2) covers 99% of the slices: the
settlement's window really spans about N slices (read as per-account sums and the edge
minute's slices: poold/ledger/window.py). The slices are loaded by COPY and folded into the
sums once (`fold_all_s`, what ingest otherwise does as it goes). Best of 3 runs, each on a
fresh copy of the block.
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

from poold.chain.targets import bits_from_target, target_from_difficulty  # noqa: E402
from poold.ledger.db import make_engine, migrate  # noqa: E402
from poold.ledger.models import (  # noqa: E402
    Account,
    Block,
    JournalLine,
    Worker,
)
from poold.ledger.settle import settle_block  # noqa: E402
from poold.ledger.slices.sums import fold  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = 1_800_000_000


def total_work(slices: int, workers: int) -> Fraction:
    """The summed difficulty `populate` writes (so the network bits can be chosen first)."""
    total = Fraction(0)
    for m in range(slices // workers):
        for w in range(workers):
            total += Fraction(1 << (10 + (w + m) % 6), 1 if w % 3 else 4)
    return total


def populate(engine: sa.Engine, slices: int, workers: int, bits: int, t0: int = T0) -> int:
    """`slices` rows: every worker one slice per minute. Returns the last minute."""
    accounts = workers // 4
    minutes = slices // workers
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Account), [{"id": a + 1, "name": f"acct{a}"} for a in range(accounts)]
        )
        conn.execute(
            sa.insert(Worker),
            [
                {"id": w + 1, "account_id": w // 4 + 1, "name": f"rig{w % 4}"}
                for w in range(workers)
            ],
        )
    cols = (
        "node_id, account_id, worker_id, slice_start, bits, diff_num, diff_den, shares, "
        "first_ms, last_ms"
    )
    for m in range(minutes):
        t = t0 + m * 60
        rows = []
        for w in range(workers):
            num, den = (1 << (10 + (w + m) % 6)), 1 if w % 3 else 4
            rows.append((0, w // 4 + 1, w + 1, t, bits, num, den, 6, t * 1000, t * 1000 + 59_000))
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                raw = conn.connection.driver_connection
                with (
                    raw.cursor() as cur,
                    cur.copy(f"COPY share_slices ({cols}) FROM STDIN") as copy,
                ):
                    for r in rows:
                        copy.write_row((*r[:5], str(r[5]), str(r[6]), *r[7:]))
            else:
                conn.exec_driver_sql(
                    f"INSERT INTO share_slices ({cols}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(*r[:5], str(r[5]), str(r[6]), *r[7:]) for r in rows],
                )
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE share_slices")
        else:
            conn.exec_driver_sql("ANALYZE")
    return t0 + (minutes - 1) * 60


def run(engine: sa.Engine, slices: int, workers: int, offset_s: int = 0) -> dict[str, object]:
    # Window (factor 2) = 99% of all work: net = 0.99 x total / 2.
    total = total_work(slices, workers)
    bits = bits_from_target(target_from_difficulty(total * Fraction(99, 200)))
    t0 = time.perf_counter()
    last = populate(engine, slices, workers, bits, T0 + offset_s)
    load_s = time.perf_counter() - t0
    # The slices went in by COPY, not through ingest (which folds as it goes): fold them all
    # once, timed apart; settlement then finds nothing new to fold.
    t0 = time.perf_counter()
    with engine.begin() as conn:
        fold(conn)
    fold_s = time.perf_counter() - t0
    times = []
    result = None
    for i in range(RUNS):
        h = f"{i:064x}"
        with engine.begin() as conn:
            conn.execute(
                sa.insert(Block).values(
                    hash=h,
                    node_id=0,
                    height=1 + i,
                    account_id=1,
                    worker_id=1,
                    reward_sat=312_500_000 + 3_762_561_499,
                    bits=bits,
                    found_ms=last * 1000 + 30_000,
                    accepted=True,
                    status="pending",
                    reason=None,
                )
            )
        t = time.perf_counter()
        result = settle_block(engine, h, pool_fee=Fraction(1, 100))
        times.append(time.perf_counter() - t)
    assert result is not None
    with engine.connect() as conn:
        lines = conn.execute(sa.select(sa.func.count()).select_from(JournalLine)).scalar()
    return {
        "slices": slices,
        "workers": workers,
        "accounts": workers // 4,
        "offset_s": offset_s,
        "load_s": round(load_s, 1),
        "fold_all_s": round(fold_s, 2),
        "settle_s_median": round(statistics.median(times), 3),
        "settle_s_all": [round(x, 3) for x in times],
        "credited_accounts": len(result.credits),
        "unallocated_sat": result.unallocated_sat,
        "journal_lines": lines,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=5_000_000)
    ap.add_argument("--workers", type=int, default=10_000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument(
        "--offset-s",
        type=int,
        default=0,
        help="shift the first minute off the 10-minute grid (540: both of the window's ends "
        "fall mid-block, so it reads more minutes of slices)",
    )
    args = ap.parse_args()
    out: dict[str, object] = {"machine": machine()}
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as d:
            engine = make_engine(f"sqlite:///{Path(d) / 'bench.db'}")
            migrate(engine)
            out["sqlite"] = run(engine, args.slices, args.workers, args.offset_s)
            engine.dispose()
    if args.backend in ("postgresql", "both"):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            engine = make_engine(f"{PG}?options=-csearch_path%3D{schema}")
            migrate(engine)
            out["postgresql"] = run(engine, args.slices, args.workers, args.offset_s)
            engine.dispose()
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    print(json.dumps(out, indent=2))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "settle.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
