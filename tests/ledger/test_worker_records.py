"""What miners see beyond their shares, from real sessions through the share writer and the
log into the ledger: each worker's user agent, best share and last seen; rejected shares per
reason counted once, across a restart of the writer and over two nodes; the writer writes a
handful of worker records, not one per share; a bad record stops ingest with its name."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from poold.chain.targets import difficulty_from_target
from poold.ledger.db import LedgerError
from poold.ledger.ingest import ingest
from poold.ledger.models import RejectCount, Worker
from poold.ledger.queries import account_rejects, share_counters
from poold.metrics import Metrics
from poold.shares.log import ShareLog, read_log
from poold.shares.writer import ShareWriter
from poold.stratum import protocol as p
from tests.stratum.test_session import NOW, jobs, make_session

__all__ = ["jobs"]


def run_node(jobs: Any, path: Path, node: int, agent: str, shares: int, bad: int) -> list[int]:
    """One writer's life: a session with `agent` submits `shares` good shares and `bad`
    duplicates, the writer beats (writing the rejects record), then stops. Returns the good
    shares' hashes."""
    log = ShareLog(path)
    log.open()
    metrics = Metrics()
    writer = ShareWriter(log, metrics, node, lambda share, hex_: None)
    hashes: list[int] = []
    original = writer.share_accepted

    def spy(share: Any) -> None:
        hashes.append(share.verdict.hash_int)
        original(share)

    writer.share_accepted = spy  # type: ignore[method-assign]
    s = make_session(jobs, writer)  # type: ignore[arg-type]
    s.metrics = metrics  # the writer reads the rejects the session counts
    s.vardiff.reset(Fraction(1, 2**32), NOW)
    s.handle(p.Subscribe(1, agent, None), NOW)
    s.handle(p.Authorize(2, "acct.rig", "x"), NOW)
    job = jobs.current()
    base = node * 1000  # nonces of their own: the nodes share the job here
    for n in range(shares):
        s.submit(
            p.Submit(10 + n, "acct.rig", job.job_id, bytes(4), job.ntime, base + n, None), NOW + 1
        )
    for n in range(bad):  # the same nonce again: a duplicate
        s.submit(
            p.Submit(900 + n, "acct.rig", job.job_id, bytes(4), job.ntime, base, None), NOW + 2
        )
    writer.flush()
    writer.beat(int(NOW * 1000) + 5000, final=True)
    log.close()
    return hashes


def test_worker_agent_best_share_and_rejects_reach_the_ledger_once(
    ledger: sa.Engine, jobs: Any, tmp_path: Path
) -> None:
    first = run_node(jobs, tmp_path / "a", 0, "cgminer/4.12", 40, 3)
    records = [r for _p, r in read_log(tmp_path / "a")]
    workers = [r for r in records if r["t"] == "worker"]
    # The first share, then only shares that beat the best so far: far fewer than 40.
    assert 1 <= len(workers) < 15 and workers[0]["agent"] == "cgminer/4.12"
    rejects = [r for r in records if r["t"] == "rejects"]
    assert rejects and sum(n for r in rejects for n in r["counts"]["acct"].values()) == 3

    ingest(ledger, tmp_path / "a", 0)
    ingest(ledger, tmp_path / "a", 0)  # nothing new: nothing counted twice
    # A second node (a restarted writer on another log) with another agent and more rejects.
    second = run_node(jobs, tmp_path / "b", 1, "bosminer/23", 10, 2)
    ingest(ledger, tmp_path / "b", 1)
    with ledger.connect() as conn:
        agent, best, seen = conn.execute(
            sa.select(Worker.user_agent, Worker.best_hash, Worker.seen_ms)
        ).one()
        rejected = account_rejects(conn, "acct")
        accepted, by_reason = share_counters(conn)
        rows = conn.execute(sa.select(sa.func.count()).select_from(RejectCount)).scalar()
    assert int(best, 16) == min(first + second)  # the best of both nodes
    assert agent == "bosminer/23" and seen == int((NOW + 1) * 1000)
    assert rejected == by_reason == {"duplicate": 5} and rows == 1
    assert accepted == 50
    assert difficulty_from_target(int(best, 16)) > 0


def test_a_worker_record_that_does_not_decode_stops_ingest_naming_it(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    log = ShareLog(tmp_path)
    log.open()
    log.append({"t": "worker", "ts": 1, "node": 0, "account": "a", "worker": "w", "agent": "x",
                "best": "zz"})  # fmt: skip
    log.close()
    with pytest.raises(LedgerError, match="'best' is 'zz'"):
        ingest(ledger, tmp_path, 0)
