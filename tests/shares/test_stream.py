"""The share log shipped to the real NATS JetStream on this machine, and rebuilt from it:
ingest from the mirror and from the node's own log together count every record once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from poold.ledger.db import make_engine, migrate
from poold.ledger.ingest import ingest
from poold.shares.log import ShareLog, segment_path
from poold.shares.stream import StreamConfig, StreamShipper, mirror
from tests.helpers import PATIENCE_S
from tests.ledger.test_nodes import MIN, T0, shares, write

NATS_URL = "nats://127.0.0.1:4222"


def stream_config() -> StreamConfig:
    name = uuid.uuid4().hex[:10]  # a stream per test: tests run in parallel
    return StreamConfig(url=NATS_URL, stream=f"T{name}", subject=f"t{name}", timeout_s=5)


async def drop(cfg: StreamConfig) -> None:
    import nats

    nc = await nats.connect(cfg.url)
    try:
        await nc.jetstream().delete_stream(cfg.stream)
    finally:
        await nc.close()


@pytest.fixture
async def stream_cfg() -> StreamConfig:
    import nats

    try:
        nc = await asyncio.wait_for(nats.connect(NATS_URL, connect_timeout=2), PATIENCE_S)
    except Exception as exc:
        pytest.fail(f"NATS with JetStream must run on 127.0.0.1:4222 (see README): {exc!r}")
    await nc.close()
    cfg = stream_config()
    yield cfg
    await drop(cfg)


async def test_the_mirror_is_the_log_byte_for_byte(
    stream_cfg: StreamConfig, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    sl = ShareLog(log, segment_bytes=4096, node_id=7)
    sl.open()
    sl.close()
    write(log, 7, shares("alice", 0, 30, 5))
    shipper = StreamShipper(stream_cfg, log, 7, lambda: "the-log")
    shipped = await shipper.ship_once()
    assert shipped == segment_path(log, 1).stat().st_size
    assert await shipper.ship_once() == 0  # nothing new
    # A crash between the ack and the saved position: the same chunk is sent again.
    (log / "SHIPPED").unlink()
    again = StreamShipper(stream_cfg, log, 7, lambda: "the-log")
    await again.ship_once()
    await shipper.close()
    await again.close()
    _read, added = await mirror(stream_cfg, 7, tmp_path / "mirror")
    assert added >= 1
    assert segment_path(tmp_path / "mirror", 1).read_bytes() == segment_path(log, 1).read_bytes()


async def test_a_followed_mirror_reads_each_message_once_and_names_a_gap(
    stream_cfg: StreamConfig, tmp_path: Path
) -> None:
    """The leader mirrors every node on every pass: each call reads on from the sequence
    the last one read through (`MIRRORED`), and a record the mirror needs that the stream no
    longer holds is a `StreamGap` (that log cannot be rebuilt), not a passing failure."""
    from poold.shares.stream import MIRRORED, StreamGap

    log, out = tmp_path / "log", tmp_path / "mirror"
    sl = ShareLog(log, segment_bytes=4096, node_id=3)
    sl.open()
    sl.close()
    write(log, 3, shares("alice", 0, 10, 5))
    shipper = StreamShipper(stream_cfg, log, 3, lambda: "the-log")
    await shipper.ship_once()
    first, added = await mirror(stream_cfg, 3, out)
    assert first >= 1 and added >= 1
    seen = int((out / MIRRORED).read_text())
    assert await mirror(stream_cfg, 3, out) == (0, 0)  # nothing new: nothing read
    write(log, 3, shares("alice", 10, 20, 5))
    await shipper.ship_once()
    await shipper.close()
    read, added = await mirror(stream_cfg, 3, out)
    assert read == added >= 1 and int((out / MIRRORED).read_text()) > seen
    assert segment_path(out, 1).read_bytes() == segment_path(log, 1).read_bytes()
    # A mirror that lost its tail, reading on from where it stopped: the next chunk does not
    # join what it holds, so the whole stream is read once more and joins again.
    data = segment_path(out, 1).read_bytes()
    segment_path(out, 1).write_bytes(data[: len(data) // 2])
    (out / MIRRORED).write_text(str(seen + 1))
    write(log, 3, shares("alice", 20, 25, 5))
    again = StreamShipper(stream_cfg, log, 3, lambda: "the-log")
    await again.ship_once()
    await again.close()
    await mirror(stream_cfg, 3, out)
    assert segment_path(out, 1).read_bytes() == segment_path(log, 1).read_bytes()
    # Records gone from the stream (a node's log mirrored only from a later segment on):
    # the mirror cannot be joined, and says so with its own exception.
    with pytest.raises(StreamGap, match="the stream lacks node 3's records"):
        from poold.shares.stream import write_chunk

        write_chunk(tmp_path / "gap", 3, {"segment": "1", "offset": "100"}, b"x")


async def test_records_ingested_from_the_log_and_then_the_stream_count_once(
    stream_cfg: StreamConfig, tmp_path: Path
) -> None:
    """The node's host is lost after part of its log was ingested: the rest comes from the
    stream, and every share is in the ledger exactly once."""
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    migrate(engine)
    log = tmp_path / "log"
    write(log, 3, shares("bob", 0, 4, 10))
    assert ingest(engine, log, 3).shares == 50  # the node ingested this much itself
    write(log, 3, [*shares("bob", 5, 9, 10), ("beat", T0 + 10 * MIN, T0 + 10 * MIN)])
    shipper = StreamShipper(stream_cfg, log, 3, lambda: "log-3")
    await shipper.ship_once()
    await shipper.close()
    import shutil

    shutil.rmtree(log)  # the host is gone
    await mirror(stream_cfg, 3, tmp_path / "mirror")
    done = ingest(engine, tmp_path / "mirror", 3)
    assert done.shares == 50 and done.through_ms == T0 + 10 * MIN
    import sqlalchemy as sa

    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT sum(shares) FROM share_slices")).scalar()
    assert total == 100
    assert ingest(engine, tmp_path / "mirror", 3).shares == 0  # nothing twice
    engine.dispose()
