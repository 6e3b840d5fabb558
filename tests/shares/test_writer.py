"""The share writer when the share log fails: no `true` for a share that was not recorded."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson

from poold.metrics import Metrics
from poold.shares.log import ShareLog, read_log
from poold.shares.writer import NOT_RECORDED, ShareWriter
from poold.stratum import protocol as p
from simulation.faults import SimDisk
from tests.helpers import StratumClient, wait_for
from tests.stratum.test_server import current_job, submit_params
from tests.stratum.test_session import NOW, jobs, make_session

__all__ = ["jobs"]


def test_unencodable_share_is_refused_and_the_rest_kept(jobs: Any, tmp_path: Path) -> None:
    log = ShareLog(tmp_path)
    log.open()
    blocks: list[object] = []
    writer = ShareWriter(log, Metrics(), 3, lambda share, hex_: blocks.append(hex_))
    s = make_session(jobs, writer)  # type: ignore[arg-type]
    s.vardiff.reset(Fraction(1, 2**32), NOW)  # every hash is a share
    s.handle(p.Subscribe(1, "x", None), NOW)
    s.handle(p.Authorize(2, "acct.w", "x"), NOW)
    job = jobs.current()
    for n in range(4):
        s.submit(p.Submit(10 + n, "acct.w", job.job_id, bytes(4), job.ntime, n, None), NOW)
    # A difficulty no record can hold: the bug the issue met through a config float.
    writer._batch[1].difficulty = Fraction(7378697629483821, 2**66)
    writer.flush()
    replies = {m["id"]: m for m in map(orjson.loads, s.outbox) if m.get("method") is None}
    assert [replies[i]["result"] for i in (10, 11, 12, 13)] == [True, None, True, True]
    assert replies[11]["error"] == [20, NOT_RECORDED, None]
    log.close()
    assert [r["nonce"] for _pos, r in read_log(tmp_path) if r["t"] == "share"] == [0, 2, 3]
    assert s.accepted == 3 and s.metrics.shares_rejected["not_logged"] == 1


async def test_full_disk_answers_errors_then_recovers(
    start_daemon: Any, config_factory: Any
) -> None:
    rd = await start_daemon(config_factory())
    daemon = rd.daemon
    c = await StratumClient.connect(rd.address)
    await c.handshake("acct.w1")
    _diff, params = await current_job(c)

    async def submit(nonce: int) -> dict[str, Any]:
        return await c.request("mining.submit", submit_params("acct.w1", params, bytes(4), nonce))

    assert (await submit(1))["result"] is True
    disk = SimDisk()
    disk.full = True
    daemon.sharelog.ops = disk
    refused = await submit(2)
    assert refused["result"] is None and refused["error"] == [20, NOT_RECORDED, None]
    assert c.writer.transport is not None and not c.writer.transport.is_closing()
    assert "No space left" in daemon.readiness()["sharelog"]
    assert daemon.metrics.shares_rejected["not_logged"] == 1
    assert "poold_sharelog_ok 0" in daemon.metrics.render_prometheus()
    disk.full = False  # space returns
    assert (await submit(3))["result"] is True
    assert "sharelog" not in daemon.readiness()
    assert "poold_sharelog_ok 1" in daemon.metrics.render_prometheus()
    await c.close()
    await rd.shutdown()
    logged = [r["nonce"] for _pos, r in read_log(daemon.cfg.sharelog.path) if r["t"] == "share"]
    assert logged == [1, 3]
    assert daemon.metrics.shares_accepted == 2


class GatedDisk(SimDisk):
    """fdatasync waits until the test lets it through (the committer thread blocks)."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.gate = threading.Event()
        self.syncs = 0

    def fdatasync(self, fd: int) -> None:
        self.gate.wait()
        super().fdatasync(fd)
        self.syncs += 1


async def test_fsync_mode_answers_only_after_the_fsync_covering_the_share(
    start_daemon: Any, config_factory: Any
) -> None:
    """`[sharelog] reply_after = "fsync"`: the share is written, but its `true` waits for
    the group commit's fdatasync (a power cut before it loses the share, not a promise)."""
    disk = GatedDisk()
    disk.gate.set()
    rd = await start_daemon(config_factory(sharelog={"reply_after": "fsync"}), disk=disk)
    daemon = rd.daemon
    c = await StratumClient.connect(rd.address)
    await c.handshake("acct.w1")
    _diff, params = await current_job(c)
    disk.gate.clear()  # fsyncs stall from here
    reply = asyncio.ensure_future(
        c.request("mining.submit", submit_params("acct.w1", params, bytes(4), 7))
    )
    await wait_for(lambda: daemon.writer.replies_waiting == 1, "the reply waits for an fsync")
    logged = [r["nonce"] for _p, r in read_log(daemon.cfg.sharelog.path) if r["t"] == "share"]
    assert logged == [7] and not reply.done()  # written, not yet answered
    written = daemon.sharelog.position
    synced = disk.syncs
    disk.gate.set()
    assert (await reply)["result"] is True
    covered = daemon.sharelog.synced
    assert disk.syncs > synced and (covered.segment, covered.offset) >= (
        written.segment,
        written.offset,
    )
    await c.close()
    await rd.shutdown()
