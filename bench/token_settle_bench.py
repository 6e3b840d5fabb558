"""Daily token settlement for N holders end to end on PostgreSQL (or SQLite): gather the
period's inputs from the ledger, settle exactly, post the journal entry and N statements.
The Numba kernels are loaded first (`warm_up_s`), as the daemon's ledger process has them.

.venv/bin/python bench/token_settle_bench.py [--holders 100000] [--transfers 100000]
    [--backend postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poold.config import TokensConfig  # noqa: E402
from poold.ledger.db import make_engine, migrate  # noqa: E402
from poold.ledger.models import (  # noqa: E402
    Account,
    JournalEntry,
    JournalLine,
    ShareSlice,
    TokenTransfer,
    Worker,
)
from poold.tokens.settle import period_of, set_price, settle_period  # noqa: E402
from poold.tokens.transfers import Transfer  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DAY = 86400


def populate(engine: sa.Engine, holders: int, transfers: int, cfg: TokensConfig) -> int:
    start, _ = period_of(1_800_000_000, cfg)
    rng = random.Random(7)
    rows = []
    for h in range(holders):
        t = Transfer(f"mint:{h}", start - 1, None, f"holder{h:06d}", Fraction(rng.randint(1, 200)))
        rows.append(t)
    for i in range(transfers):
        a, b = rng.sample(range(holders), 2)
        t = Transfer(
            f"tx:{i}",
            start + rng.randrange(DAY),
            f"holder{a:06d}",
            f"holder{b:06d}",
            Fraction(1, 10),
        )
        rows.append(t)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(TokenTransfer),
            [
                {
                    "ext_id": t.ext_id,
                    "ts": t.ts_s,
                    "sender": t.sender,
                    "receiver": t.receiver,
                    "amount": str(t.amount),
                    "digest": t.digest,
                }
                for t in rows
            ],
        )
        conn.execute(sa.insert(Account).values(id=1, name="fleet"))
        conn.execute(sa.insert(Worker).values(id=1, account_id=1, name="rig"))
        # The fleet: ~500 PH/s for the day, one slice per minute; earnings credited to it.
        conn.execute(
            sa.insert(ShareSlice),
            [
                {
                    "node_id": 0,
                    "account_id": 1,
                    "worker_id": 1,
                    "slice_start": start + m * 60,
                    "bits": 0x17034219,
                    "diff_num": 7 * 10**12,
                    "diff_den": 1,
                    "shares": 1000,
                    "first_ms": (start + m * 60) * 1000,
                    "last_ms": (start + m * 60) * 1000,
                }
                for m in range(1440)
            ],
        )
        entry = conn.execute(
            sa.insert(JournalEntry)
            .values(kind="fpps_period", reference=str(start + 3600), created_ms=0)
            .returning(JournalEntry.id)
        ).scalar_one()
        conn.execute(
            sa.insert(JournalLine),
            [
                {"entry_id": entry, "account": "pool:fpps_paid", "amount_sat": 250_000_000_00},
                {
                    "entry_id": entry,
                    "account": "miner:fleet:spendable",
                    "amount_sat": -250_000_000_00,
                },
            ],
        )
    set_price(engine, start, Fraction(6543210, 100), cfg)
    return start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--holders", type=int, default=100_000)
    ap.add_argument("--transfers", type=int, default=100_000)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()
    cfg = TokensConfig(
        enabled=True,
        th_per_token=Fraction(1),
        w_per_th=Fraction(20),
        usd_per_kwh=Fraction(5, 100),
        service_usd_per_th_day=Fraction(1, 100),
        fleet_accounts=("fleet",),
    )
    schema = None
    if args.backend == "postgresql":
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine = make_engine(f"{PG}?options=-csearch_path%3D{schema}")
    else:
        engine = make_engine(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}")
    try:
        # The daemon's ledger process has the Numba kernels loaded long before a day is
        # settled: load them here too (a ten-holder period on a scratch ledger), timed apart.
        t = time.perf_counter()
        warm = make_engine(f"sqlite:///{Path(tempfile.mkdtemp()) / 'warm.db'}")
        migrate(warm)
        warm_start = populate(warm, 10, 10, cfg)
        assert settle_period(warm, cfg, warm_start, now=warm_start + 10 * DAY).settled
        warm.dispose()
        warm_s = time.perf_counter() - t
        migrate(engine)
        t = time.perf_counter()
        start = populate(engine, args.holders, args.transfers, cfg)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        result = settle_period(engine, cfg, start, now=start + 10 * DAY)
        settle_s = time.perf_counter() - t
        assert result.settled is not None, result.waiting
        again = time.perf_counter()
        assert settle_period(engine, cfg, start, now=start + 10 * DAY).settled is None
        again_s = time.perf_counter() - again
        report = {
            "backend": args.backend,
            "holders": args.holders,
            "transfers_in_period": args.transfers,
            "load_s": round(load_s, 1),
            "warm_up_s": round(warm_s, 2),
            "settle_s": round(settle_s, 3),
            "second_run_s": round(again_s, 3),
            "statements": len(result.settled.lines),
            "holders_pot_sat": result.settled.holders_pot_sat,
            "delivery_ratio": float(result.settled.delivery_ratio),
        }
    finally:
        engine.dispose()
        if schema is not None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "results" / f"token_settle_{args.backend}.json").write_text(
        json.dumps(report, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
