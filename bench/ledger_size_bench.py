"""Ledger size after a simulated day: W workers, one share each every S seconds, written to a
real share log hour by hour and ingested; old segments are deleted as retention would.
Reports rows and bytes per table: the ledger must grow with slices, not with shares.

.venv/bin/python bench/ledger_size_bench.py [--workers 10000] [--interval 10] [--hours 24]
    [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from common import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poold.ledger.db import make_engine, migrate  # noqa: E402
from poold.ledger.ingest import ingest  # noqa: E402
from poold.shares.format import encode_share  # noqa: E402
from poold.shares.log import ShareLog, list_segments, segment_path  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = 1_800_000_000
TABLES = (
    "share_slices",
    "slice_sums",
    "accounts",
    "workers",
    "blocks",
    "ingest_checkpoints",
    "journal_lines",
)


def write_seconds(log_dir: Path, first: int, last: int, workers: int, interval: int) -> int:
    """Every share of seconds [first, last): worker w submits when second = w (mod interval)."""
    log = ShareLog(log_dir, segment_bytes=256 << 20)
    log.open()
    names = [(f"acct{w // 4}", f"rig{w % 4}") for w in range(workers)]
    n = 0
    for second in range(first, last):
        ts = (T0 + second) * 1000
        for w in range(second % interval, workers, interval):
            a, r = names[w]
            log.append_payload(
                encode_share(
                    ts,
                    0,
                    a,
                    r,
                    "1f",
                    900_000,
                    0x17034219,
                    1 << 16,
                    1,
                    b"\0\0\0\1",
                    n.to_bytes(8, "little")[:4],
                    T0,
                    n & 0xFFFFFFFF,
                    0x20000000,
                    False,
                )
            )
            n += 1
        log.flush()
    log.close()
    return n


def sizes(engine: sa.Engine, db_path: Path | None) -> dict[str, object]:
    out: dict[str, object] = {}
    with engine.connect() as conn:
        rows = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}
        out["rows"] = rows
        if engine.dialect.name == "postgresql":
            out["bytes"] = {
                t: conn.execute(sa.text(f"SELECT pg_total_relation_size('{t}')")).scalar()
                for t in TABLES
            }
            out["total_bytes"] = sum(out["bytes"].values())  # type: ignore[union-attr]
        else:
            assert db_path is not None
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            out["total_bytes"] = db_path.stat().st_size
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=10_000)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="poold-size-"))
    schema = None
    if args.backend == "postgresql":
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine = make_engine(f"{PG}?options=-csearch_path%3D{schema}")
        db_path = None
    else:
        db_path = tmp / "ledger.db"
        engine = make_engine(f"sqlite:///{db_path}")
    migrate(engine)
    log_dir = tmp / "sharelog"
    shares = 0
    write_s = ingest_s = 0.0
    hours = max(1, round(args.hours)) if args.hours >= 1 else 1
    for hour in range(hours):
        t = time.perf_counter()
        seconds = 3600 if args.hours >= 1 else int(args.hours * 3600)
        first = hour * 3600
        shares += write_seconds(log_dir, first, first + seconds, args.workers, args.interval)
        write_s += time.perf_counter() - t
        t = time.perf_counter()
        ingest(engine, log_dir, 0)
        ingest_s += time.perf_counter() - t
        for seq in list_segments(log_dir)[:-1]:  # retention: the ledger has them now
            segment_path(log_dir, seq).unlink()
        print(f"hour {hour + 1}: {shares} shares", file=sys.stderr, flush=True)
    report = {
        "machine": machine(),
        "backend": args.backend,
        "workers": args.workers,
        "share_interval_s": args.interval,
        "hours": args.hours,
        "shares": shares,
        "write_s": round(write_s, 1),
        "ingest_s": round(ingest_s, 1),
        "ingest_shares_per_s": round(shares / ingest_s),
        **sizes(engine, db_path),
    }
    report["bytes_per_share"] = round(int(report["total_bytes"]) / shares, 2)  # type: ignore[call-overload]
    rows = report["rows"]
    assert isinstance(rows, dict)
    report["slices_per_share"] = round(rows["share_slices"] / shares, 4)
    engine.dispose()
    if schema is not None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    print(json.dumps(report, indent=2))
    out = ROOT / "bench" / "results" / f"ledger_size_{args.backend}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
