"""Replay against the ledger, on SQLite and PostgreSQL: agreement when all is well, and each kind
of damage (a slice altered or lost, credits moved between miners) named precisely."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa

from poold.ledger.ingest import ingest
from poold.ledger.models import JournalLine, ShareSlice
from poold.ledger.replay import replay
from poold.ledger.settle import settle_pending, verify
from poold.ledger.slices import sums as slice_sums
from poold.shares.log import list_segments, segment_path
from tests.e2e.test_durability import write_config
from tests.helpers import PATIENCE_S
from tests.ledger.test_settle import mine

FEE = Fraction(1, 100)


def test_replay_agrees_then_names_each_kind_of_damage(ledger: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "log"
    mine(log, 40, {30: True, 35: False, 39: True})
    ingest(ledger, log, 0, batch_records=7)  # small batches: one slice key in several rows
    settle_pending(ledger, pool_fee=FEE)
    seen: list[tuple[int, int]] = []
    report = replay(ledger, log, 0, pool_fee=FEE, progress=lambda d, t: seen.append((d, t)))
    assert report.ok, report.problems
    assert (report.shares, report.blocks_checked) == (40, 2)
    size = segment_path(log, list_segments(log)[0]).stat().st_size
    assert seen[-1] == (size, size) and [d for d, _ in seen] == sorted(d for d, _ in seen)

    with ledger.begin() as conn:  # one slice altered
        sid = conn.execute(sa.select(sa.func.min(ShareSlice.id))).scalar()
        conn.execute(sa.update(ShareSlice).where(ShareSlice.id == sid).values(diff_num=12345))
    altered = replay(ledger, log, 0, pool_fee=FEE)
    assert (
        len(altered.problems) == 1
        and "the ledger 1 shares of difficulty 12345" in (altered.problems[0])
    )
    with ledger.begin() as conn:  # ... and then lost
        conn.execute(sa.delete(ShareSlice).where(ShareSlice.id == sid))
    lost = replay(ledger, log, 0, pool_fee=FEE)
    assert len(lost.problems) == 1 and lost.problems[0].endswith("the ledger nothing")
    # verify sees it too: the slice sums no longer add up to the slices; refold to go on
    assert verify(ledger) and all("slice sums of span" in p for p in verify(ledger))
    with ledger.begin() as conn:
        slice_sums.rebuild(conn)

    with ledger.begin() as conn:  # a satoshi moved between two miners: still balanced
        rows = conn.execute(
            sa.select(JournalLine.id, JournalLine.amount_sat)
            .where(JournalLine.account.like("miner:%"))
            .order_by(JournalLine.id)
            .limit(2)
        ).all()
        conn.execute(
            sa.update(JournalLine)
            .where(JournalLine.id == rows[0][0])
            .values(amount_sat=rows[0][1] - 1)
        )
        conn.execute(
            sa.update(JournalLine)
            .where(JournalLine.id == rows[1][0])
            .values(amount_sat=rows[1][1] + 1)
        )
    # The journal balances; the block's committed credit lines and the replay both see it.
    problems = verify(ledger)
    assert len(problems) == 1 and "differ from its credit lines" in problems[0], problems
    moved = replay(ledger, log, 0, pool_fee=FEE)
    assert any("journal credits differ from the replay" in p for p in moved.problems)


def test_a_pruned_log_checks_only_what_it_still_holds(ledger: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "log"
    mine(log, 40, {30: True, 39: True}, segment_bytes=1000)
    ingest(ledger, log, 0)
    settle_pending(ledger, pool_fee=FEE)
    segments = list_segments(log)
    assert len(segments) >= 4

    segment_path(log, segments[0]).unlink()  # retention deleted the oldest segment
    report = replay(ledger, log, 0, pool_fee=FEE)
    assert report.ok, report.problems
    assert 0 < report.shares < 40 and report.blocks_checked == 2

    for seq in segments[1:-1]:  # now only the newest segment is left
        segment_path(log, seq).unlink()
    tail = replay(ledger, log, 0, pool_fee=FEE)
    assert tail.ok, tail.problems
    assert f"{30:064x}" in tail.blocks_not_checkable  # its window reaches into deleted data


def test_replay_cli(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + f'\n[ledger]\nurl = "sqlite:///{tmp_path / "l.db"}"\n')
    mine(tmp_path / "sharelog", 20, {19: True})

    def poold(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "poold", *args, "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=PATIENCE_S,
        )

    assert poold("migrate").returncode == 0
    assert poold("ingest").returncode == 0
    assert poold("settle").returncode == 0
    out = poold("replay")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["shares"] == 20 and summary["problems"] == 0
    assert summary["blocks_checked"] == 1
    assert "\x1b[" not in out.stderr  # not a terminal: no progress bar
