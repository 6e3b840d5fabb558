"""The stream holds what SHIPPED says, through the faults a NATS server really has: a retry
of another length, a duplicate answer for other bytes, a server killed -9 and restarted on
its store, restarted empty, one that lost its tail, one down at the daemon's start, and a
host lost after each and during an outage. Each runs its own nats-server (tests/nats_server.py).
"Acknowledged" here is what the share log holds (the daemon answers `true` only after it),
and "the host lost" is its log directory deleted: what the mirror rebuilds is all there is."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from poold.shares.log import ShareLog, read_log, segment_path
from poold.shares.stream import StreamConfig, StreamError, StreamShipper, message_id, mirror
from poold.shares.writer import NOT_SHIPPED
from tests.helpers import StratumClient, wait_for
from tests.ledger.test_nodes import shares, write
from tests.nats_server import NatsServer, nats_server
from tests.stratum.test_server import current_job, submit_params

__all__ = ["nats_server"]


def cfg_for(server: NatsServer, **kw: Any) -> StreamConfig:
    name = uuid.uuid4().hex[:8]
    return StreamConfig(url=server.url, stream=f"S{name}", subject=f"s{name}", timeout_s=2, **kw)


def new_log(path: Path, node: int) -> None:
    sl = ShareLog(path, segment_bytes=4096, node_id=node)
    sl.open()
    sl.close()


def log_bytes(path: Path) -> dict[int, bytes]:
    return {int(p.name[7:17]): p.read_bytes() for p in sorted(path.glob("shares-*.log"))}


async def rebuilt(cfg: StreamConfig, node: int, tmp: Path) -> dict[int, bytes]:
    """The host is lost: what the stream gives back, as a log directory's segments."""
    target = tmp / f"mirror-{uuid.uuid4().hex[:6]}"
    await mirror(cfg, node, target)
    return log_bytes(target)


async def publish_raw(cfg: StreamConfig, node: int, data: bytes, msg_id: str) -> None:
    import nats

    from poold.shares.stream import connect

    nc, js = await connect(cfg)
    try:
        await js.publish(
            f"{cfg.subject}.{node}",
            data,
            headers={"Nats-Msg-Id": msg_id, "node": str(node), "log": "L", "segment": "1",
                     "offset": "0"},
        )  # fmt: skip
    finally:
        await nc.close()
    del nats


async def test_a_retry_of_another_length_is_stored_not_taken_for_a_duplicate(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The reconnect replay the issue met: a short copy of the first chunk reached the
    stream under the id of its start; the longer chunk from the same start is stored too."""
    log = tmp_path / "log"
    new_log(log, 1)
    write(log, 1, shares("alice", 0, 3, 5))
    data = segment_path(log, 1).read_bytes()
    cfg = cfg_for(nats_server)
    short = data[: len(data) // 3]
    await publish_raw(cfg, 1, short, "L:1:0")  # the id a stale publish of this start had
    shipper = StreamShipper(cfg, log, 1, lambda: "L")
    await shipper.ship_once()
    await shipper.close()
    assert shipper.shipped.offset == len(data)
    shutil.rmtree(log)  # the host is lost
    assert (await rebuilt(cfg, 1, tmp_path))[1] == data


async def test_a_duplicate_answer_for_other_bytes_does_not_advance_shipped(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    new_log(log, 2)
    write(log, 2, shares("bob", 0, 1, 5))
    data = segment_path(log, 2 - 1).read_bytes()
    cfg = cfg_for(nats_server)
    from poold.shares.log import LogPosition

    stale = message_id("L", LogPosition(1, 0), LogPosition(1, len(data)))
    await publish_raw(cfg, 2, b"\x00" * len(data), stale)  # the same id, other bytes
    shipper = StreamShipper(cfg, log, 2, lambda: "L")
    with pytest.raises(StreamError, match="duplicate"):
        await shipper.ship_once()
    await shipper.close()
    assert shipper.shipped == LogPosition(1, 0) and shipper.duplicates == 1


async def test_killed_restarted_on_its_store_then_empty_then_host_lost(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """An outage (kill -9, restart on the store), then a restart on an empty store: after
    each the stream holds the whole log, so the lost host's log is rebuilt byte for byte."""
    log = tmp_path / "log"
    new_log(log, 3)
    cfg = cfg_for(nats_server)
    written = ShareLog(log, node_id=3)
    shipper = StreamShipper(cfg, log, 3, lambda: "L3", written=lambda: _end(log))
    write(log, 3, shares("carol", 0, 2, 10))
    with capture_logs() as events:
        assert await shipper.step()
        nats_server.kill()
        write(log, 3, shares("carol", 3, 4, 10))
        assert not await shipper.step()
        assert not await shipper.step()
        assert shipper.problem is not None and shipper.lag_s() >= 0
        nats_server.start()  # on its store
        assert await shipper.step(), shipper.problem
        assert log_bytes(log) == await rebuilt(cfg, 3, tmp_path)
        nats_server.kill()
        nats_server.wipe()
        nats_server.start()  # empty: no stream, nothing of the log
        write(log, 3, shares("carol", 5, 6, 10))
        assert await shipper.step(), shipper.problem
    await shipper.close()
    del written
    names = [e["event"] for e in events]
    assert names.count("stream_unreachable") == 1 and names.count("stream_recovered") == 1
    assert "stream_created" in names and shipper.rewinds == 1
    expect = log_bytes(log)
    shutil.rmtree(log)  # the host is lost
    assert await rebuilt(cfg, 3, tmp_path) == expect


async def test_a_stream_that_lost_its_tail_is_refilled(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    new_log(log, 4)
    cfg = cfg_for(nats_server, verify_interval_s=0.001)
    shipper = StreamShipper(cfg, log, 4, lambda: "L4")
    write(log, 4, shares("dave", 0, 1, 10))
    await shipper.ship_once()
    write(log, 4, shares("dave", 2, 3, 10))
    await shipper.ship_once()
    import nats

    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    last = await js.get_last_msg(cfg.stream, f"{cfg.subject}.4")
    await js.delete_msg(cfg.stream, last.seq)  # what a server's unsynced tail loses
    await nc.close()
    await shipper.ship_once()
    await shipper.close()
    assert shipper.rewinds == 1
    expect = log_bytes(log)
    shutil.rmtree(log)
    assert await rebuilt(cfg, 4, tmp_path) == expect


def _end(directory: Path) -> Any:
    from poold.shares.log import LogPosition, list_segments

    segs = list_segments(directory)
    return LogPosition(segs[-1], segment_path(directory, segs[-1]).stat().st_size)


async def test_down_at_start_then_an_outage_past_the_lag_bound_then_the_host_lost(
    nats_server: NatsServer, start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    """The stream is down when the daemon starts: not ready, one event, no endless retry.
    It comes up; then it goes down again and the daemon keeps answering `true` only until
    the lag bound, then error 20 (not logged). The host is lost during the outage: every
    share answered `true` before the outage, and none refused, is in the rebuilt log."""
    nats_server.kill()
    cfg = cfg_for(nats_server)
    config = config_factory(
        stream={
            "url": nats_server.url, "stream": cfg.stream, "subject": cfg.subject,
            "timeout_s": 1, "max_lag_s": 0.5, "mirror_path": str(tmp_path / "m"),
        },
        api={"listen": "127.0.0.1:0"},
    )  # fmt: skip
    with capture_logs() as events:
        rd = await start_daemon(config)
        daemon = rd.daemon
        assert "stream" in daemon.readiness()
        await wait_for(lambda: daemon.shipper.failures >= 3, "the shipper tried again")
        assert [e["event"] for e in events].count("stream_unreachable") == 1
        c = await StratumClient.connect(rd.address)
        await c.handshake("acct.w1")
        _diff, params = await current_job(c)
        nonce = 0

        async def submit() -> tuple[int, dict[str, Any]]:
            nonce_ = nonce
            reply = await c.request(
                "mining.submit", submit_params("acct.w1", params, bytes(4), nonce_)
            )
            return nonce_, reply

        nats_server.start()
        await wait_for(lambda: "stream" not in daemon.readiness(), "the stream is reached")
        answered: dict[int, bool] = {}
        for _ in range(5):
            nonce += 1
            n, reply = await submit()
            answered[n] = reply["result"] is True
        await wait_for(lambda: daemon.shipper.lag_s() == 0, "everything shipped")
        shipped_before = {n for n, ok in answered.items() if ok}
        assert len(shipped_before) == 5
        nats_server.kill()
        refused: dict[str, Any] = {}
        while not refused:  # the stream is down: true until the bound, then error 20
            nonce += 1
            n, reply = await submit()
            answered[n] = reply["result"] is True
            if reply["result"] is not True:
                refused = reply
            await asyncio.sleep(0.05)
        assert refused["error"] == [20, NOT_SHIPPED, None]
        nonce += 1
        n, reply = await submit()
        assert reply["result"] is None  # still refused while the stream is down
        answered[n] = False
        await wait_for(lambda: "stream_lag" in daemon.readiness(), "readyz says shares refused")
        await wait_for(
            lambda: "poold_stream_ok 0" in daemon.metrics.render_prometheus(), "metrics say so"
        )
        await c.close()
        await rd.shutdown()
    logged = {r["nonce"] for _p, r in read_log(config.sharelog.path) if r["t"] == "share"}
    assert logged == {n for n, ok in answered.items() if ok}  # refused: not logged
    names = [e["event"] for e in events]
    assert "stream_lag_exceeded" in names and names.count("stream_unreachable") == 2
    # The host is lost while the stream is down; it comes back on its store.
    shutil.rmtree(config.sharelog.path)
    nats_server.start()
    mirrored = tmp_path / "mirrored"
    await mirror(cfg, config.stratum.node_id, mirrored)
    kept = {r["nonce"] for _p, r in read_log(mirrored) if r["t"] == "share"}
    assert shipped_before <= kept  # lost at most what was answered within the lag bound


async def test_purge_drops_whole_ingested_segments_and_the_mirror_starts_at_one(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Retention follows the checkpoint: segments below it leave the stream whole, and a
    mirror built after the purge starts at a segment's first byte (no gap)."""
    log = tmp_path / "log"
    new_log(log, 5)
    cfg = cfg_for(nats_server)
    shipper = StreamShipper(cfg, log, 5, lambda: "L5")
    for batch in range(6):  # segments of 4 KiB: several of them
        small = ShareLog(log, segment_bytes=4096, node_id=5)
        small.open()
        for n in range(80):
            small.append({"t": "beat", "ts": batch * 1000 + n, "node": 5, "through": 0})
            small.flush()
        small.close()
        await shipper.ship_once()
    segments = sorted(log_bytes(log))
    assert len(segments) >= 4
    keep = segments[2]
    assert await shipper.purge_below(keep) == keep - segments[0]
    await shipper.close()
    expect = {s: b for s, b in log_bytes(log).items() if s >= keep}
    assert await rebuilt(cfg, 5, tmp_path) == expect
    # Reopened from SHIPPED (a restart): the purge point of the next segment is known.
    again = StreamShipper(cfg, log, 5, lambda: "L5")
    await again.ship_once()
    assert await again.purge_below(keep + 1) == 1
    await again.close()
    assert sorted(await rebuilt(cfg, 5, tmp_path)) == [s for s in segments if s > keep]


async def test_a_stream_keeping_fewer_replicas_than_the_minimum_is_not_shipped_to(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    new_log(log, 6)
    write(log, 6, shares("fay", 0, 1, 5))
    cfg = cfg_for(nats_server, min_replicas=3)
    shipper = StreamShipper(cfg, log, 6, lambda: "L6")
    with capture_logs() as events:
        assert not await shipper.step()
    await shipper.close()
    assert shipper.durability is not None and shipper.durability.replicas == 1
    assert shipper.durability.storage == "file"
    assert "min_replicas = 3" in (shipper.problem or "")
    assert shipper.shipped.offset == 0 and shipper.bytes_shipped == 0
    said = [e for e in events if e["event"] == "stream_durability"]
    assert said and said[0]["replicas"] == 1 and said[0]["min_replicas"] == 3
