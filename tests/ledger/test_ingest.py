from __future__ import annotations

import itertools
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from poold.ledger.db import LedgerError, check_schema, make_engine, migrate
from poold.ledger.ingest import ingest
from poold.ledger.models import Account, Block, IngestCheckpoint, ShareSlice
from poold.shares.format import encode_share
from poold.shares.log import ShareLog, read_log

T0 = 1_800_000_000_000  # ms


def write_shares(
    path: Path, n: int, *, start: int = 0, segment_bytes: int = 1 << 20, node: int = 0
) -> None:
    log = ShareLog(path, segment_bytes=segment_bytes)
    log.open()
    for i in range(start, start + n):
        diff = Fraction(1, 2 ** (i % 5)) if i % 3 else Fraction(1000 + i)
        log.append_payload(
            encode_share(
                T0 + i * 250,
                node,
                f"acct{i % 7}",
                f"rig{i % 3}",
                f"{i // 500:x}",
                100 + i // 2000,
                0x1D00FFFF if i < 3000 else 0x1C00FFFF,
                diff.numerator,
                diff.denominator,
                b"\x00\x00\x00\x01",
                i.to_bytes(4, "big"),
                1_800_000_000,
                i,
                0x20000000,
                i % 997 == 0,
            )
        )
        if i % 997 == 0:
            log.append(
                {
                    "t": "block",
                    "ts": T0 + i * 250,
                    "node": node,
                    "height": 100 + i,
                    "hash": f"{node:02x}{i:062x}",
                    "accepted": i % 2 == 0,
                    "reason": None,
                    "account": f"acct{i % 7}",
                    "worker": f"rig{i % 3}",
                    "reward_sat": 312_500_000,
                    "bits": 0x1D00FFFF,
                }
            )
        if i % 100 == 0:
            log.flush()
    log.close()


def log_totals(path: Path) -> dict[str, Fraction]:
    """An independent count straight from the share log."""
    out: dict[str, Fraction] = defaultdict(Fraction)
    for _pos, r in read_log(path):
        if r["t"] == "share":
            out[str(r["account"])] += Fraction(int(r["diff_num"]), int(r["diff_den"]))
    return dict(out)


def ledger_totals(engine: sa.Engine) -> dict[str, Fraction]:
    out: dict[str, Fraction] = defaultdict(Fraction)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Account.name, ShareSlice.diff_num, ShareSlice.diff_den).join(
                Account, ShareSlice.account_id == Account.id
            )
        )
        for name, num, den in rows:
            out[name] += Fraction(num, den)
    return dict(out)


def count(engine: sa.Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(model)).scalar_one())


def test_ingest_is_exactly_once(ledger: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "sharelog"
    write_shares(log, 5000, segment_bytes=64 * 1024)  # several segments
    first = ingest(ledger, log, node_id=0, batch_records=1200)
    assert first.shares == 5000 and first.blocks == 6
    assert ledger_totals(ledger) == log_totals(log)
    # Rows grow with slices, not shares (each of the 6 blocks cuts its minute's slices in two).
    assert count(ledger, ShareSlice) < 5000 / 8
    again = ingest(ledger, log, node_id=0)
    assert again.records == 0 and ledger_totals(ledger) == log_totals(log)
    write_shares(log, 700, start=5000)
    ingest(ledger, log, node_id=0)
    assert ledger_totals(ledger) == log_totals(log)
    assert count(ledger, Block) == 6  # i % 997 == 0 for i < 5700
    with ledger.connect() as conn:
        cp = conn.execute(sa.select(IngestCheckpoint.records)).scalar_one()
    assert cp == 5700 + 6  # share records + block records


def test_crash_before_commit_keeps_nothing_and_rerun_counts_once(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    log = tmp_path / "sharelog"
    write_shares(log, 3000)
    calls = {"n": 0}

    def crash() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        ingest(ledger, log, node_id=0, batch_records=1000, before_commit=crash)
    partial = ledger_totals(ledger)  # only the first batch committed
    assert partial and partial != log_totals(log)
    ingest(ledger, log, node_id=0, batch_records=1000)
    assert ledger_totals(ledger) == log_totals(log)


def test_two_nodes_share_one_ledger(ledger: sa.Engine, tmp_path: Path) -> None:
    write_shares(tmp_path / "a", 800)
    write_shares(tmp_path / "b", 900)
    ingest(ledger, tmp_path / "a", node_id=1)
    ingest(ledger, tmp_path / "b", node_id=2)
    ingest(ledger, tmp_path / "a", node_id=1)
    want = log_totals(tmp_path / "a")
    for k, v in log_totals(tmp_path / "b").items():
        want[k] = want.get(k, Fraction(0)) + v
    assert ledger_totals(ledger) == want


def test_schema_check_and_migrate_are_idempotent(ledger_url: str) -> None:
    engine = make_engine(ledger_url)
    with pytest.raises(LedgerError, match="run `poold migrate`"):
        check_schema(engine)
    migrate(engine)
    migrate(engine)  # again: nothing to do
    check_schema(engine)
    engine.dispose()


def test_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="cannot connect to the ledger at postgresql"):
        make_engine("postgresql://nobody:secret@127.0.0.1:9/none")
    with pytest.raises(LedgerError) as exc:
        make_engine("postgresql://nobody:secret@127.0.0.1:9/none")
    assert "secret" not in str(exc.value)
    with pytest.raises(LedgerError, match="not usable"):
        make_engine("nosuchdb://x")


def test_a_share_log_that_does_not_match_the_checkpoint_is_refused(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    write_shares(tmp_path / "a", 1200, segment_bytes=20_000)
    ingest(ledger, tmp_path / "a", 0)
    write_shares(tmp_path / "b", 50)  # a fresh log (say, a new [sharelog] path), one segment
    with pytest.raises(LedgerError, match="does not match the ledger's checkpoint for node 0"):
        ingest(ledger, tmp_path / "b", 0)
    assert ingest(ledger, tmp_path / "b", 1).shares == 50  # as another node's log: fine


def test_migrations_build_exactly_the_models(ledger: sa.Engine) -> None:
    """The schema the migrations create is the one models.py declares (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from poold.ledger.models import Base

    with ledger.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_ingest_without_the_array_path_writes_the_same_slices(
    ledger: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain-loop fallback (taken when a batch's sort key would pass 64 bits) writes the
    same slice rows as the array path (the same log ingested as node 0, then as node 1)."""
    write_shares(tmp_path, 2500, segment_bytes=30_000)
    assert ingest(ledger, tmp_path, 0, batch_records=700).shares == 2500
    monkeypatch.setattr("poold.ledger.ingest.slices_from_arrays", lambda *_a: None)
    assert ingest(ledger, tmp_path, 1, batch_records=700).shares == 2500
    cols = [c for c in ShareSlice.__table__.columns if c.name not in ("id", "node_id")]

    def rows(node: int) -> list[tuple[object, ...]]:
        with ledger.connect() as conn:
            got = conn.execute(sa.select(*cols).where(ShareSlice.node_id == node)).all()
        return sorted(tuple(r) for r in got)

    assert rows(0) == rows(1) and len(rows(0)) > 100
    assert ledger_totals(ledger) == {a: 2 * v for a, v in log_totals(tmp_path).items()}


def test_a_record_that_does_not_decode_stops_ingest_clearly(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    """A CRC-valid binary record with lengths that do not add up (a writer bug) is never
    skipped or half-read: ingest stops before it, naming where it is."""
    write_shares(tmp_path, 300)
    log = ShareLog(tmp_path)
    log.open()
    log.append_payload(b"\x01" + bytes(60))  # the share tag, then nothing that fits
    log.close()
    with pytest.raises(LedgerError, match=r"does not decode \(segment 1, offset \d+: "):
        ingest(ledger, tmp_path, 0, batch_records=1000)
    assert count(ledger, ShareSlice) == 0  # the whole batch was refused
    with pytest.raises(LedgerError, match="does not decode"):
        ingest(ledger, tmp_path, 0, batch_records=100)
    records = [r for _p, r in itertools.islice(read_log(tmp_path), 300)]  # 3 whole batches
    before = sum(1 for r in records if r["t"] == "share")
    with ledger.connect() as conn:
        got = conn.execute(sa.select(sa.func.sum(ShareSlice.shares))).scalar_one()
    assert got == before  # the batches before the bad record were ingested, then it stopped
