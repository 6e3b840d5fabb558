"""Every accepted share can be rebuilt into its 80-byte header from the share log alone: its
job's record (written once, before its first share, under a key unique across restarts and
nodes) and its own fields; the rebuilt header hashes to the hash the share logged."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from poold.chain.targets import target_from_difficulty
from poold.metrics import Metrics
from poold.shares.format import JobRecord, ShareRecord
from poold.shares.log import LogPosition, ShareLog, read_log
from poold.shares.work import WorkError, prove, proven_shares, sha256d
from poold.shares.writer import ShareWriter
from poold.stratum import protocol as p
from tests.helpers import StratumClient
from tests.stratum.test_server import current_job, submit_params
from tests.stratum.test_session import NOW, jobs, make_session

__all__ = ["jobs"]


async def _mine(rd: Any, user: str, nonces: range) -> int:
    c = await StratumClient.connect(rd.address)
    await c.handshake(user)
    _diff, params = await current_job(c)
    ok = 0
    for n in nonces:
        reply = await c.request("mining.submit", submit_params(user, params, bytes(4), n))
        ok += reply["result"] is True
    await c.close()
    return ok


async def test_shares_rebuild_into_their_headers_across_restarts(
    start_daemon: Any, config_factory: Any
) -> None:
    cfg = config_factory()
    accepted = 0
    for run in range(2):  # job counters restart at 1 with each run: keys must not
        rd = await start_daemon(cfg)
        accepted += await _mine(rd, f"acct.w{run}", range(run * 100, run * 100 + 20))
        await rd.shutdown()
    log = cfg.sharelog.path
    proven = list(proven_shares(log))
    assert len(proven) == accepted == 40
    for ps in proven:
        assert len(ps.header) == 80 and sha256d(ps.header) == ps.share.hash == ps.hash
        d = ps.share.diff_num, ps.share.diff_den
        target = target_from_difficulty(Fraction(*d))
        assert int.from_bytes(ps.hash, "little") <= target
    jobs_logged = [r for _p, r in read_log(log) if r["t"] == "job"]
    keys = [r["key"] for r in jobs_logged]
    assert len(keys) == len(set(keys)) == 2  # once per job, and distinct across restarts
    assert {ps.job.key for ps in proven} == set(keys)
    # Each job record lies before the first share of its job.
    order = [
        (r["t"], r.get("key", r.get("job")))
        for _p, r in read_log(log)
        if r["t"] in ("job", "share")
    ]
    for key in keys:
        assert order.index(("job", key)) < order.index(("share", key))


def test_a_share_without_its_job_or_with_a_wrong_hash_is_named(jobs: Any, tmp_path: Path) -> None:
    log = ShareLog(tmp_path)
    log.open()
    writer = ShareWriter(log, Metrics(), 3, lambda share, hex_: None)
    s = make_session(jobs, writer)  # type: ignore[arg-type]
    s.vardiff.reset(Fraction(1, 2**32), NOW)  # every hash is a share
    s.handle(p.Subscribe(1, "x", None), NOW)
    s.handle(p.Authorize(2, "acct.w", "x"), NOW)
    job = jobs.current()
    for n in range(3):
        s.submit(p.Submit(10 + n, "acct.w", job.job_id, bytes(4), job.ntime, n, None), NOW)
    writer.flush()
    s.submit(p.Submit(20, "acct.w", job.job_id, bytes(4), job.ntime, 9, None), NOW)
    writer.flush()  # same job again: not logged a second time
    log.close()
    recs = [r for _p, r in read_log(tmp_path)]
    assert [r["t"] for r in recs if r["t"] in ("job", "share")] == ["job"] + ["share"] * 4
    proven = list(proven_shares(tmp_path))
    assert [ps.share.nonce for ps in proven] == [0, 1, 2, 9]
    ps = proven[0]
    at = LogPosition(1, 0)
    with pytest.raises(WorkError, match=r"acct\.w\): no record of its job"):
        prove(at, ps.share, None)
    other = JobRecord(**{**{k: getattr(ps.job, k) for k in JobRecord.__slots__}, "bits": 1})
    with pytest.raises(WorkError, match="does not hash to the hash it logged"):
        prove(at, ps.share, other)
    fields = {k: getattr(ps.share, k) for k in ShareRecord.__slots__}
    with pytest.raises(WorkError, match="carries no header hash"):
        prove(at, ShareRecord(**{**fields, "hash": None}), ps.job)
