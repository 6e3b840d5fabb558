"""Slice sums: the block decomposition covers each minute once, folds count every slice
exactly once (across ingest batches, and on PostgreSQL after an ingest still in flight), and
verify notices sums that do not add up."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from poold.ledger.ingest import ingest
from poold.ledger.models import Account, ShareSlice, SliceRollup, SliceSum, Worker
from poold.ledger.settle import verify
from poold.ledger.slices import sums as slice_sums
from tests.helpers import PATIENCE_S, wait_for_sync
from tests.ledger.test_ingest import write_shares

M0 = 1_800_000_000 // 86400 * 86400  # a day boundary


@given(st.integers(-3000, 3000), st.integers(0, 4000))
def test_blocks_cover_each_minute_once(after_min: int, length: int) -> None:
    after = M0 + after_min * 60
    last = after + length * 60
    covered: list[int] = []
    for span, first, final in slice_sums.blocks(after, last):
        assert span in slice_sums.SPANS and first % span == 0 and (final - first) % span == 0
        for start in range(first, final + 1, span):
            covered += range(start, start + span, 60)
    assert covered == list(range(after + 60, last + 1, 60))
    # as few blocks as greed allows: never a smaller span where a larger one fitted
    assert len(slice_sums.blocks(after, last)) <= 2 * len(slice_sums.SPANS) + 1


@given(st.integers(-3000, 3000), st.integers(0, 4000))
def test_cover_counts_each_minute_once_reading_few_slices(after_min: int, length: int) -> None:
    """Blocks added, minus minutes subtracted, plus minutes added: exactly the minutes in
    (after, last], each once; at most five minutes read from slices per ragged block."""
    after = M0 + after_min * 60
    last = after + length * 60
    whole, plus, minus = slice_sums.cover(after, last)
    count: dict[int, int] = {}
    for span, first, final in whole:
        for start in range(first, final + 1, span):
            for m in range(start, start + span, 60):
                count[m] = count.get(m, 0) + 1
    for ranges, sign in ((plus, 1), (minus, -1)):
        for a, b in ranges:
            assert a // 600 == b // 600  # each range inside one 10-minute block
            for m in range(a, b + 60, 60):
                count[m] = count.get(m, 0) + sign
    assert {m for m, c in count.items() if c} == set(range(after + 60, last + 1, 60))
    assert all(c in (0, 1) for c in count.values())
    per_block: dict[int, int] = {}
    for a, b in plus + minus:
        per_block[a // 600] = per_block.get(a // 600, 0) + (b - a) // 60 + 1
    assert all(n <= 5 for n in per_block.values())


def test_folds_count_every_ingested_slice_once(ledger: sa.Engine, tmp_path: Path) -> None:
    """Each ingest run ends with a fold; the sums then hold every slice exactly once."""
    log = tmp_path / "log"
    write_shares(log, 3000, segment_bytes=40_000)
    ingest(ledger, log, 0, batch_records=500)
    with ledger.begin() as conn:
        assert slice_sums.fold(conn) is False  # ingest folded what it wrote
    write_shares(log, 2000, start=3000, segment_bytes=40_000)
    ingest(ledger, log, 0, batch_records=700)
    with ledger.begin() as conn:
        slice_sums.fold(conn)
        assert slice_sums.check(conn) == []
        folded = conn.execute(sa.select(SliceRollup.folded_id)).scalar_one()
        top = conn.execute(sa.select(sa.func.max(ShareSlice.id))).scalar_one()
        pool_shares = conn.execute(
            sa.select(sa.func.sum(SliceSum.shares)).where(
                SliceSum.span == 86400, SliceSum.account_id == slice_sums.POOL
            )
        ).scalar_one()
    assert folded == top and pool_shares == 5000
    assert verify(ledger) == []


def test_verify_notices_a_sum_that_does_not_add_up(ledger: sa.Engine, tmp_path: Path) -> None:
    write_shares(tmp_path, 500)
    ingest(ledger, tmp_path, 0)
    with ledger.begin() as conn:
        slice_sums.fold(conn)
        conn.execute(
            sa.update(SliceSum)
            .where(SliceSum.span == 3600, SliceSum.account_id != slice_sums.POOL)
            .values(diff_num=SliceSum.diff_num + "0")
        )
    assert verify(ledger) == [
        "slice sums of span 3600 s differ from the slices per account "
        "(`poold ledger refold` rebuilds them)"
    ]
    with ledger.begin() as conn:
        slice_sums.rebuild(conn)  # what `poold ledger refold` runs
    assert verify(ledger) == []


def test_a_fold_waits_for_an_ingest_in_flight(ledger: sa.Engine) -> None:
    """PostgreSQL: a fold started while a slice insert is uncommitted waits for it, then counts
    it; a later fold has nothing left (on SQLite the one write lock orders them the same way)."""
    with ledger.begin() as conn:
        conn.execute(sa.insert(Account).values(id=1, name="a"))
        conn.execute(sa.insert(Worker).values(id=1, account_id=1, name="w"))
    slice_row = {
        "node_id": 0,
        "account_id": 1,
        "worker_id": 1,
        "slice_start": M0,
        "bits": 0x1D00FFFF,
        "diff_num": 7,
        "diff_den": 1,
        "shares": 1,
        "first_ms": M0 * 1000,
        "last_ms": M0 * 1000,
    }
    if ledger.dialect.name != "postgresql":
        with ledger.begin() as conn:
            conn.execute(sa.insert(ShareSlice).values(**slice_row))
            assert slice_sums.fold(conn) is True
        return
    inserting = ledger.connect()
    tx = inserting.begin()
    inserting.execute(sa.insert(ShareSlice).values(**slice_row))
    done: list[bool] = []

    def fold() -> None:
        with ledger.begin() as conn:
            done.append(slice_sums.fold(conn))

    def lock_waiters() -> int:
        """Sessions of this database waiting for a lock right now (the folder's, soon)."""
        pid = inserting.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with ledger.connect() as watch:
            return int(
                watch.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database() AND pid <> :pid"
                    ),
                    {"pid": pid},
                ).scalar_one()
            )

    folder = threading.Thread(target=fold)
    folder.start()
    wait_for_sync(lambda: lock_waiters() >= 1, "the fold to wait on the uncommitted insert")
    assert folder.is_alive() and not done
    tx.commit()
    inserting.close()
    folder.join(PATIENCE_S)
    assert done == [True]
    with ledger.begin() as conn:
        assert slice_sums.fold(conn) is False
        assert slice_sums.check(conn) == []
        got = conn.execute(
            sa.select(SliceSum.diff_num).where(SliceSum.span == 600, SliceSum.account_id == 1)
        ).scalar_one()
    assert got == 7
