"""The share log under write faults: full disk, short writes, fsync errors, retention, gaps.

Faults come from the simulator's `SimDisk` (one fault-injecting FileOps for both)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from poold.shares.log import (
    OS_FILE_OPS,
    ShareLog,
    ShareLogError,
    ShareLogGap,
    check_contiguous,
    list_segments,
    read_log,
    segment_path,
)
from simulation.faults import SimDisk
from tests.helpers import wait_for_sync


def numbers(directory: Path) -> list[int]:
    return [int(str(r["n"])) for _pos, r in read_log(directory)]


def test_short_write_then_enospc_leaves_whole_records(tmp_path: Path) -> None:
    ops = SimDisk()
    log = ShareLog(tmp_path, ops=ops)
    log.open()
    for i in range(3):
        log.append({"n": i})
    log.flush()
    good = segment_path(tmp_path, 1).stat().st_size
    for i in range(3, 6):
        log.append({"n": i})
    ops.short_next = 10  # part of the first record reaches the file, then the disk is full
    with pytest.raises(ShareLogError, match="No space left"):
        log.flush()
    assert segment_path(tmp_path, 1).stat().st_size == good  # cut back to the last whole record
    assert log.error is not None and log.write_errors == 1
    assert log.pending_bytes == 0  # the failed records are the caller's to answer, not retried
    ops.full = False  # space returns
    for i in range(6, 9):
        log.append({"n": i})
    log.flush()
    assert log.error is None
    log.close()
    assert numbers(tmp_path) == [0, 1, 2, 6, 7, 8]
    reopened = ShareLog(tmp_path)
    reopened.open()  # nothing torn: a restart keeps every record
    reopened.close()
    assert numbers(tmp_path) == [0, 1, 2, 6, 7, 8]


def test_fsync_error_keeps_the_thread_and_refuses_writes(tmp_path: Path) -> None:
    ops = SimDisk()
    log = ShareLog(tmp_path, ops=ops)
    log.open()
    ops.fsync_fails = 3
    log.start_group_commit(0.005)
    log.append({"n": 0})
    log.flush()
    wait_for_sync(lambda: log.sync_errors >= 1, "a failed fsync")
    wait_for_sync(lambda: log.syncs >= 1, "an fsync that works")
    # The thread lived through three failed fsyncs and then made one that worked.
    assert log.syncs >= 1 and log.sync_errors == 3 and log.error is None
    ops.fsync_fails = 10**9
    log.append({"n": 1})
    log.flush()
    wait_for_sync(lambda: log.sync_error is not None, "fsync failing again")
    log.append({"n": 2})
    with pytest.raises(ShareLogError, match="fsync"):
        log.flush()  # not acknowledged while fsync fails
    ops.fsync_fails = 0
    wait_for_sync(lambda: log.sync_error is None, "fsync working again")
    log.append({"n": 3})
    log.flush()
    log.close()
    assert numbers(tmp_path) == [0, 1, 3]


def test_gap_in_segments_is_named(tmp_path: Path) -> None:
    check_contiguous(tmp_path, [1, 2, 3], 1)
    check_contiguous(tmp_path, [3, 4], 3)
    with pytest.raises(ShareLogGap, match=r"segment\(s\) 2 \(shares-0000000002.log\)"):
        check_contiguous(tmp_path, [1, 3], 1)
    with pytest.raises(ShareLogGap, match=r"segment\(s\) 1..2"):
        check_contiguous(tmp_path, [3, 4], 1)
    check_contiguous(tmp_path, [1, 2, 5], 5)  # a reader past the gap does not need it


def test_prune_never_passes_the_consumer(tmp_path: Path) -> None:
    log = ShareLog(tmp_path, segment_bytes=4096, retention_s=60)
    log.open()
    for i in range(600):
        log.append({"n": i, "pad": "x" * 20})
        log.flush()
    segs = list_segments(tmp_path)
    for seq in segs:
        os.utime(segment_path(tmp_path, seq), (0, 0))  # every segment past retention
    assert log.prune(None) == []  # before the first ingest: nothing is known to be safe
    removed = log.prune(segs[2])
    assert removed == [segment_path(tmp_path, s) for s in segs[:2]]
    assert list_segments(tmp_path) == segs[2:]
    assert log.prune(10**9)[-1] == segment_path(tmp_path, segs[-2])  # never the open one
    log.close()


# -- a real full disk: a small tmpfs (needs root and mount, as CI has) -------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_disk_then_freed(small_fs: Path) -> None:
    directory = small_fs / "log"
    log = ShareLog(directory)
    log.open()
    filler = small_fs / "filler"
    acked: list[int] = []
    refused: list[int] = []
    n = 0
    with filler.open("wb") as fh:
        fh.write(b"\0" * (200 << 10))
    while len(refused) < 20:  # fill the disk, then go on past it
        log.append({"n": n, "pad": "y" * 300})
        try:
            log.flush()
            acked.append(n)
        except ShareLogError as exc:
            assert "No space left" in str(exc)
            refused.append(n)
        n += 1
    assert acked and log.error is not None
    filler.unlink()  # the operator frees space
    for _ in range(20):
        log.append({"n": n, "pad": "y" * 300})
        log.flush()
        acked.append(n)
        n += 1
    log.close()
    assert numbers(directory) == acked  # every acknowledged record, once, readable
    again = ShareLog(directory)
    again.open()  # a restart truncates nothing acknowledged
    again.close()
    assert numbers(directory) == acked


def test_default_ops_are_os() -> None:
    assert OS_FILE_OPS.write is os.write and OS_FILE_OPS.fdatasync is os.fdatasync


def test_ingest_and_the_stream_read_nothing_past_the_fsync(tmp_path: Path) -> None:
    """What a power cut can take back (written, not fsynced) is never ingested or shipped:
    otherwise the ledger would hold shares the log lost, at offsets the log then reuses."""
    from poold.ledger.db import make_engine, migrate
    from poold.ledger.ingest import ingest
    from poold.shares.stream import next_chunk
    from tests.ledger.test_nodes import MIN, T0, shares, write

    log_dir = tmp_path / "log"
    write(log_dir, 1, [*shares("ann", 0, 1, 5), ("beat", T0 + 2 * MIN, T0 + 2 * MIN)])
    sl = ShareLog(log_dir, node_id=None)
    sl.open()  # fsyncs what an earlier process left: all of it counts as synced
    synced = sl.synced
    assert synced == sl.position
    sl.close()
    write(log_dir, 1, [*shares("ann", 2, 3, 5), ("beat", T0 + 4 * MIN, T0 + 4 * MIN)])
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    migrate(engine)
    assert ingest(engine, log_dir, 1, until=synced).shares == 10
    _start, data, after = next_chunk(log_dir, synced.__class__(1, 0), synced)
    assert after == synced and len(data) == synced.offset
    assert ingest(engine, log_dir, 1).shares == 10  # the rest, once it counts
    engine.dispose()
