"""Daily token settlement for N holders end to end on PostgreSQL (or SQLite): gather the
period's inputs from the ledger, settle exactly, post the journal entry and N statements.
The Numba kernels are loaded first (`warm_up_s`), as the daemon's ledger process has them.

.venv/bin/python bench/token_settle_bench.py [--holders 100000] [--transfers 100000]
    [--backend postgresql|sqlite] [--runs 5]

Each run settles a fresh ledger; the report gives the median settle time and every run's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import RUNS, machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poold.chain.subsidy import subsidy_sat  # noqa: E402
from poold.config import TokensConfig  # noqa: E402
from poold.ledger.db import make_engine, migrate  # noqa: E402
from poold.ledger.fpps import book_fpps  # noqa: E402
from poold.ledger.ingest import ingest  # noqa: E402
from poold.ledger.models import TokenTransfer  # noqa: E402
from poold.shares.format import encode_share  # noqa: E402
from poold.shares.log import ShareLog  # noqa: E402
from poold.tokens.settle import period_of, set_price, settle_period  # noqa: E402
from poold.tokens.transfers import Transfer  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DAY = 86400
MAINNET_BITS = 0x17023A04  # a mainnet target of late 2026 (network difficulty ~ 1.2e14)


def populate(
    engine: sa.Engine, holders: int, transfers: int, cfg: TokensConfig, log_dir: Path
) -> int:
    """The period's inputs, each through its production entry point: transfers as the
    importer writes them, the fleet's shares through a real share log and `ingest`, its
    earnings as an FPPS booking (`book_fpps`, which posts through the journal), a price."""
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
    # The fleet delivers a little more than the tokens promise: holders hold ~100.5 TH/s each
    # on average (1 TH/s per token), the fleet mines 1.05 x that, one share a minute whose
    # difficulty is a minute's work (hashes / 2**32), at mainnet's difficulty of late 2026.
    nominal_hs = sum(int(t.amount) for t in rows[:holders]) * 10**12
    work_per_min = nominal_hs * 105 // 100 * 60 // 2**32
    log = ShareLog(log_dir, node_id=0)
    log.open()
    for m in range(1440):
        ts_ms = (start + m * 60) * 1000 + 1
        log.append_payload(
            encode_share(
                ts_ms,
                0,
                "fleet",
                "rig",
                f"{m:x}",
                940_000,
                MAINNET_BITS,
                work_per_min,
                1,
                bytes(4),
                m.to_bytes(4, "big"),
                start + m * 60,
                m,
                0x20000000,
                False,
            )
        )
    log.append(
        {
            "t": "beat",
            "ts": (start + DAY) * 1000 + 1,
            "node": 0,
            "through": (start + DAY) * 1000 + 1,
        }
    )
    log.close()
    ingest(engine, log_dir, 0)
    booked = book_fpps(
        engine,
        period_end_s=start + DAY,
        subsidy_sat=subsidy_sat(940_000),
        avg_fees_sat=Fraction(4_000_000),
        pool_fee=Fraction(2, 100),
    )
    assert booked is not None and booked.credits.get("fleet", 0) > 0, booked
    set_price(engine, start, Fraction(6543210, 100), cfg)
    return start


def one_run(args: argparse.Namespace, cfg: TokensConfig) -> dict[str, Any]:
    """A fresh ledger (its own schema): load a day with real earnings, settle it, settle it
    again (nothing to do), drop it."""
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
        migrate(engine)
        t = time.perf_counter()
        start = populate(
            engine, args.holders, args.transfers, cfg, Path(tempfile.mkdtemp()) / "log"
        )
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        result = settle_period(engine, cfg, start, now=start + 10 * DAY)
        settle_s = time.perf_counter() - t
        assert result.settled is not None, result.waiting
        again = time.perf_counter()
        assert settle_period(engine, cfg, start, now=start + 10 * DAY).settled is None
        again_s = time.perf_counter() - again
        settled = result.settled
        return {
            "load_s": load_s,
            "settle_s": settle_s,
            "second_run_s": again_s,
            "figures": {
                "statements": len(settled.lines),
                "fleet_earnings_sat": settled.holders_pot_sat + settled.operator_retained_sat,
                "holders_pot_sat": settled.holders_pot_sat,
                "operator_retained_sat": settled.operator_retained_sat,
                "delivery_ratio": str(settled.delivery_ratio),
                "paid_sat": sum(line.paid_sat for line in settled.lines.values()),
                "electricity_sat": sum(line.electricity_sat for line in settled.lines.values()),
            },
        }
    finally:
        engine.dispose()
        if schema is not None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--holders", type=int, default=100_000)
    ap.add_argument("--transfers", type=int, default=100_000)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--runs", type=int, default=RUNS, help="fresh ledgers settled; median")
    args = ap.parse_args()
    cfg = TokensConfig(
        enabled=True,
        th_per_token=Fraction(1),
        w_per_th=Fraction(15),
        usd_per_kwh=Fraction(4, 100),
        service_usd_per_th_day=Fraction(5, 1000),
        fleet_accounts=("fleet",),
    )
    figures = machine()
    # The daemon's ledger process has the Numba kernels loaded long before a day is settled:
    # load them here too (a ten-holder period on a scratch ledger), timed apart.
    t = time.perf_counter()
    warm = make_engine(f"sqlite:///{Path(tempfile.mkdtemp()) / 'warm.db'}")
    migrate(warm)
    warm_start = populate(warm, 10, 10, cfg, Path(tempfile.mkdtemp()) / "warm-log")
    assert settle_period(warm, cfg, warm_start, now=warm_start + 10 * DAY).settled
    warm.dispose()
    warm_s = time.perf_counter() - t
    runs = [one_run(args, cfg) for _ in range(args.runs)]
    report = {
        "machine": figures,
        "backend": args.backend,
        "holders": args.holders,
        "transfers_in_period": args.transfers,
        "runs": args.runs,
        "settle_s_median": round(statistics.median(r["settle_s"] for r in runs), 3),
        "settle_s_each": [round(r["settle_s"], 3) for r in runs],
        "load_s_median": round(statistics.median(r["load_s"] for r in runs), 1),
        "warm_up_s": round(warm_s, 2),
        "second_run_s_max": round(max(r["second_run_s"] for r in runs), 3),
        **runs[-1]["figures"],
    }
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "results" / f"token_settle_{args.backend}.json").write_text(
        json.dumps(report, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
