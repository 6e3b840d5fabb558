"""The daemon's ledger process: a real spawned worker ingests, settles and reads for the event
loop; database trouble reaches the daemon as LedgerError (which it retries), never as a driver
exception."""

from __future__ import annotations

import asyncio
import os
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from poold.ledger import queries
from poold.ledger import worker as ledger_worker
from poold.ledger.db import LedgerError, make_engine, migrate
from poold.ledger.models import ShareSlice
from poold.shares.format import encode_share
from poold.shares.log import ShareLog


def write_shares(directory: Path, n: int) -> None:
    log = ShareLog(directory)
    log.open()
    for i in range(n):
        log.append_payload(
            encode_share(
                1_800_000_000_000 + i * 1000,
                0,
                "acct",
                f"rig{i % 2}",
                "1f",
                1,
                0x207FFFFF,
                1,
                1 + i % 3,
                b"\0\0\0\1",
                i.to_bytes(4, "big"),
                1,
                i,
                2,
                False,
            )
        )
    log.close()


def test_a_spawned_worker_ingests_settles_and_reads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate(make_engine(url))
    write_shares(tmp_path / "log", 500)

    async def run() -> tuple[int, int, list[object], int | None]:
        worker = ledger_worker.LedgerWorker(url, nice=0)
        try:
            await worker.start()
            first = await worker.ingest(tmp_path / "log", 0)
            again = await worker.ingest(tmp_path / "log", 0)  # exactly once
            settled = await worker.settle_blocks(Fraction(0), "pplns")
            newest = await worker.read(queries.newest_period)
            return first.shares, again.shares, list(settled), newest
        finally:
            worker.close()

    first, again, settled, newest = asyncio.run(run())
    assert (first, again, settled, newest) == (500, 0, [], None)
    with make_engine(url).connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(ShareSlice.shares))).scalar() == 500


def test_database_trouble_is_a_ledger_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the worker process: the ledger file turned into something that is not a database."""
    path = tmp_path / "ledger.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    path.write_bytes(b"not a database" * 1000)
    monkeypatch.setattr(ledger_worker, "_engine", engine)
    with pytest.raises(LedgerError, match="ledger database failed"):
        ledger_worker._settle_blocks(Fraction(0), "pplns")
    with pytest.raises(LedgerError, match="ledger database failed"):
        ledger_worker._read(queries.newest_period, ())


def test_the_worker_dies_with_its_parent(tmp_path: Path) -> None:
    """init() arms the parent-death signal, and refuses to run if the parent is already gone."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate(make_engine(url))
    pid = os.fork()
    if pid == 0:  # child: pretend our parent is someone else, as if it had died and we were adopted
        try:
            ledger_worker.init(url, os.getppid() + 1_000_000, 0)
        finally:
            os._exit(0)  # not reached: init exits with 1 first
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
