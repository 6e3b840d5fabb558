"""Work-proof leaf files per token period, beside the share log: built once a heartbeat
closes the period, the fleet's shares only, sorted by header hash, each rebuilt into the
header it hashes to; a job logged in one period serves its shares in the next; the log's
retention keeps every segment of a period whose sample is not cut, and the file goes with
the cut."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from accounting import work_proof as wp
from poold.metrics import Metrics
from poold.shares.leaves import LeafKeeper, read_leaves
from poold.shares.log import ShareLog, list_segments, read_log
from poold.shares.work import proven_shares, sha256d
from poold.shares.writer import ShareWriter
from poold.stratum import protocol as p
from tests.stratum.test_session import NOW, jobs, make_session

__all__ = ["jobs"]
PERIOD = 600
T0 = int(NOW) // PERIOD * PERIOD


def period_of(t: int) -> tuple[int, int]:
    start = t // PERIOD * PERIOD
    return start, start + PERIOD


def same_as_the_reference(keeper: LeafKeeper, start: int) -> None:
    """The array scan the keeper runs gives what the object scan (its oracle) gives."""
    from poold.shares.leaves import _rows, _scan, _scan_arrays

    s, e = period_of(start)
    accounts, carried = sorted(keeper.fleet), keeper._carried()
    ref = _scan(keeper.log_dir, keeper.scan_from, s * 1000, e * 1000, keeper.fleet, carried)
    ref_jobs: list[Any] = []
    ref_rows = _rows(ref, accounts, ref_jobs)
    import poold.shares.leaves as leaves_module

    for records_a_round in (leaves_module._ROUND, 2):  # a segment walked in several rounds too
        saved, leaves_module._ROUND = leaves_module._ROUND, records_a_round
        try:
            got, rows, got_jobs = _scan_arrays(
                keeper.log_dir, keeper.scan_from, s * 1000, e * 1000, accounts, carried
            )
        finally:
            leaves_module._ROUND = saved
        assert len(rows) == len(ref_rows) and rows.tobytes() == ref_rows.tobytes()
        assert [j.key for j in got_jobs] == [j.key for j in ref_jobs]
        assert (got.next_from, got.complete, got.unprovable, got.missing_job) == (
            ref.next_from, ref.complete, ref.unprovable, ref.missing_job
        )  # fmt: skip
        assert got.jobs.keys() == ref.jobs.keys()


def test_leaf_files_per_period_and_the_retention_hold(jobs: Any, tmp_path: Path) -> None:
    log = ShareLog(tmp_path, segment_bytes=1024, retention_s=0)
    log.open()
    writer = ShareWriter(log, Metrics(), 3, lambda share, hex_: None)
    sessions = {}
    for user in ("fleet.w", "other.w"):
        s = make_session(jobs, writer)  # type: ignore[arg-type]
        s.vardiff.reset(Fraction(1, 2**32), NOW)
        s.handle(p.Subscribe(1, "x", None), NOW)
        s.handle(p.Authorize(2, user, "x"), NOW)
        sessions[user] = s
    job = jobs.current()
    n = 0

    def submit(user: str, at: float, count: int) -> None:
        nonlocal n
        for _ in range(count):
            n += 1
            en2 = n.to_bytes(4, "big")
            sessions[user].submit(p.Submit(n, user, job.job_id, en2, job.ntime, n, None), at)
        writer.flush()

    a = T0 + PERIOD  # period A = [a, a + PERIOD)
    submit("fleet.w", a - 5, 3)  # before A
    writer.beat(int((a + 1) * 1000))
    submit("fleet.w", a + 10, 40)
    submit("other.w", a + 20, 7)  # not the fleet's
    keeper = LeafKeeper(tmp_path, 3, ("fleet",), period_of)
    log.hold = keeper.hold
    # The period before A is closed (a heartbeat past its end); A waits for one past its own.
    same_as_the_reference(keeper, a - PERIOD)
    same_as_the_reference(keeper, a)  # not complete yet
    (before,) = keeper.build_due(a + PERIOD + 5)
    assert (before.start, before.leaves) == (a - PERIOD, 3)
    submit("fleet.w", a + PERIOD + 1, 5)  # B, same job: its record lies in an earlier period
    writer.beat(int((a + PERIOD + 2) * 1000))
    same_as_the_reference(keeper, a)
    (built,) = keeper.build_due(a + PERIOD + 5)
    assert (built.start, built.leaves) == (a, 40)
    leaves = read_leaves(keeper.path(a))
    assert (leaves.start, leaves.end, leaves.accounts) == (a, a + PERIOD, ("fleet",))
    hashes = [leaves.hash(i) for i in range(len(leaves.leaves))]
    assert hashes == sorted(hashes) and len(set(hashes)) == 40
    # The committed root from the files' columns is the object tree's, over one or two files.
    from poold.tokens.work import columns_root, merged

    salt, earlier = b"\x05" * 16, read_leaves(keeper.path(a - PERIOD))
    for files in ([leaves], [leaves, earlier], [earlier, leaves]):
        want = wp.stream_root(lf for lf, _n, _i in merged(files, salt))
        assert columns_root(files, salt) == want and want.work > 0
    logged = {ps.hash[::-1]: ps.share for ps in proven_shares(tmp_path)}
    for i, h in enumerate(hashes):
        job_doc, share = leaves.evidence(i)
        rec = leaves.jobs[int(leaves.leaves[i]["job"])]
        assert rec.key == job_doc["key"] and rec.prev_hash.hex() == job_doc["prev_hash"]
        header = rec.header(
            bytes.fromhex(str(share["en1"])), bytes.fromhex(str(share["en2"])),
            int(share["ntime"]), int(share["nonce"]), int(share["version"]),  # type: ignore[call-overload]
        )  # fmt: skip
        assert sha256d(header)[::-1] == h
        d = logged[h]  # weight = the share's own difficulty x 2**32
        assert leaves.weight(i) == d.diff_num * 2**32 // d.diff_den
        assert wp.meets_weight(h, leaves.weight(i))
    # Retention: every segment is past the retention time (0 s) and ingested, but A's
    # sample is not cut, so nothing of A (nor after) is pruned.
    segs = list_segments(tmp_path)
    first_of_a = keeper.held[a]
    assert len(segs) > 3
    log.prune(keep_from=segs[-1], now=a + 10**6)
    assert list_segments(tmp_path)[0] <= first_of_a
    keeper.cut(a - PERIOD)
    keeper.cut(a)
    assert not keeper.path(a).exists()
    log.prune(keep_from=segs[-1], now=a + 10**6)
    assert list_segments(tmp_path)[0] == keeper.hold() > first_of_a
    # B closes later, and its shares' job comes from the carried job records.
    writer.beat(int((a + 2 * PERIOD + 1) * 1000))
    same_as_the_reference(keeper, a + PERIOD)
    (b,) = keeper.build_due(a + 2 * PERIOD + 5)
    in_b = [  # the job's record was pruned with A's segments: the carried copy serves
        r
        for _p, r in read_log(tmp_path)
        if r["t"] == "share" and a + PERIOD <= int(r["ts"]) // 1000 < a + 2 * PERIOD  # type: ignore[call-overload]
    ]
    assert (b.start, b.leaves, b.missing_job) == (a + PERIOD, len(in_b), 0) and len(in_b) >= 3
    # A new keeper on the same directory carries on from its state.
    again = LeafKeeper(tmp_path, 3, ("fleet",), period_of)
    assert (again.next_start, again.held) == (a + 2 * PERIOD, {a + PERIOD: keeper.held[a + PERIOD]})
    log.close()


async def test_the_daemon_builds_leaves_and_holds_its_log(
    start_daemon: Any, config_factory: Any
) -> None:
    import time

    from tests.helpers import StratumClient
    from tests.stratum.test_server import current_job, submit_params

    cfg = config_factory(tokens={"enabled": True, "fleet_accounts": ["acct"], "period_s": 60})
    rd = await start_daemon(cfg)
    daemon = rd.daemon
    assert daemon.leaves is not None and daemon.sharelog.hold == daemon.leaves.hold
    assert daemon.sharelog.hold is not None and daemon.sharelog.hold() == daemon.leaves.hold()
    c = await StratumClient.connect(rd.address)
    await c.handshake("acct.w1")
    _diff, params = await current_job(c)
    ok = 0
    for nonce in range(12):
        reply = await c.request("mining.submit", submit_params("acct.w1", params, bytes(4), nonce))
        ok += reply["result"] is True
    await c.close()
    later = time.time() + 130  # two periods on: a heartbeat then closes every period so far
    await daemon.housekeep(later, prune=False)
    built = sorted(daemon.leaves.dir.glob("leaves-*.bin"))
    assert built and sum(len(read_leaves(p).leaves) for p in built) == ok == 12
    await rd.shutdown()


def test_leaves_are_written_in_byte_order_even_past_the_first_eight_bytes(tmp_path: Path) -> None:
    """Hashes sharing their first 8 bytes (small hashes start with zeros) are still ordered
    by every byte, and a hash twice is refused."""
    import numpy as np
    import pytest

    from poold.shares.leaves import LEAF, LeafError, write_leaves

    hashes = [bytes(8) + bytes([9]) + bytes(23), bytes(8) + bytes([3]) + bytes(23), b"\x01" * 32]
    arr = np.zeros(3, dtype=LEAF)
    arr["hash"] = hashes
    write_leaves(tmp_path / "a.bin", 0, 0, 60, [], [], arr)
    got = read_leaves(tmp_path / "a.bin")
    assert [got.hash(i) for i in range(3)] == sorted(hashes)
    arr["hash"] = [hashes[0], hashes[1], hashes[0]]
    with pytest.raises(LeafError, match="in the log twice"):
        write_leaves(tmp_path / "b.bin", 0, 0, 60, [], [], arr)
