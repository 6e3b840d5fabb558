from __future__ import annotations

import os
from pathlib import Path

import pytest

from poold.shares.log import ShareLog, list_segments, read_log, segment_path
from tests.helpers import wait_for_sync


def records(directory: Path) -> list[dict]:
    return [r for _pos, r in read_log(directory)]


def test_append_flush_read(tmp_path: Path) -> None:
    log = ShareLog(tmp_path)
    log.open()
    for i in range(100):
        log.append({"t": "share", "n": i})
    assert records(tmp_path) == []  # nothing written before flush
    log.flush()
    assert [r["n"] for r in records(tmp_path)] == list(range(100))
    assert log.sync() is True and log.sync() is False
    log.close()
    log.close()  # idempotent


def test_torn_tail_is_truncated_on_open(tmp_path: Path) -> None:
    log = ShareLog(tmp_path)
    log.open()
    for i in range(10):
        log.append({"n": i})
    log.close()
    path = segment_path(tmp_path, 1)
    good_size = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(b"\x40\x00\x00\x00garbage")  # a frame header promising more than exists
    log2 = ShareLog(tmp_path)
    log2.open()
    assert path.stat().st_size == good_size
    log2.append({"n": 10})
    log2.close()
    assert [r["n"] for r in records(tmp_path)] == list(range(11))


def test_corrupt_record_stops_reading(tmp_path: Path) -> None:
    log = ShareLog(tmp_path)
    log.open()
    for i in range(3):
        log.append({"n": i})
    log.close()
    path = segment_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip a byte inside the last payload
    path.write_bytes(bytes(data))
    assert [r["n"] for r in records(tmp_path)] == [0, 1]


def test_segments_rotate_and_prune(tmp_path: Path) -> None:
    log = ShareLog(tmp_path, segment_bytes=4096, retention_s=3600)
    log.open()
    for i in range(2000):
        log.append({"n": i, "pad": "x" * 20})
        if i % 50 == 0:
            log.flush()
    log.flush()
    segs = list_segments(tmp_path)
    assert len(segs) > 3
    assert [r["n"] for r in records(tmp_path)] == list(range(2000))
    old = segment_path(tmp_path, segs[0])
    os.utime(old, (0, 0))
    assert log.prune(None) == []  # no consumer's checkpoint known yet: nothing goes
    assert log.prune(segs[0]) == []  # the consumer still needs the old segment
    removed = log.prune(segs[-1])
    assert removed == [old]
    assert log.prune(segs[-1]) == []  # recent segments and the open one stay
    log.close()


def test_group_commit_thread_fsyncs_without_being_asked(tmp_path: Path) -> None:

    log = ShareLog(tmp_path)
    log.open()
    log.start_group_commit(0.002)
    log.append({"n": 1})
    log.flush()
    wait_for_sync(lambda: log.syncs >= 1, "the group commit's first fsync")
    log.close()
    assert log._committer is None


def test_binary_share_records_roundtrip(tmp_path: Path) -> None:
    from poold.shares.format import encode_share

    log = ShareLog(tmp_path)
    log.open()
    fields = dict(
        ts_ms=1_800_000_000_123,
        node=3,
        account="bc1qxyz",
        worker="rig-ü",
        job="1f",
        height=840000,
        bits=0x17034219,
        diff_num=1,
        diff_den=2**32,
        en1=b"\x03\x00\x00\x01",
        en2=b"\xaa\xbb\xcc\xdd\xee",
        ntime=0x6543A1B2,
        nonce=0xDEADBEEF,
        version=0x20002000,
        block=True,
    )
    log.append_payloads([encode_share(**fields), encode_share(**{**fields, "nonce": 7})])
    log.append({"t": "block", "height": 840000})
    log.close()
    share, share2, block = records(tmp_path)
    assert share2 == {**share, "nonce": 7}
    assert share == {
        "t": "share",
        "ts": fields["ts_ms"],
        "node": 3,
        "account": "bc1qxyz",
        "worker": "rig-ü",
        "job": "1f",
        "height": 840000,
        "bits": 0x17034219,
        "diff_num": 1,
        "diff_den": 2**32,
        "en1": "03000001",
        "en2": "aabbccddee",
        "ntime": 0x6543A1B2,
        "nonce": 0xDEADBEEF,
        "version": 0x20002000,
        "block": True,
    }
    assert block == {"t": "block", "height": 840000}


def test_read_batch_reads_what_scan_from_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch readers see the same records and positions as the generic scanner: shares,
    JSON records, several segments, a corrupt frame ending an old segment, a torn tail, any
    start position and batch limit; `scan.read_arrays` (the Numba walk ingest uses) equals
    `read_batch` whatever its read chunk."""
    from poold.shares import scan
    from poold.shares.format import ShareFields, encode_share
    from poold.shares.log import (
        LogPosition,
        list_segments,
        scan_from,
        segment_path,
    )
    from poold.shares.reference import Mark, read_batch

    log = ShareLog(tmp_path, segment_bytes=2000)
    log.open()
    for i in range(150):
        if i % 17 == 0:
            log.append({"t": "block", "hash": f"{i:064x}"})
        log.append_payload(
            encode_share(
                1_800_000_000_000 + i,
                0,
                f"a{i % 3}",
                f"w{i % 5}",
                "1f",
                1,
                0x207FFFFF,
                i + 1,
                1 + i % 2,
                b"\0\0\0\1",
                i.to_bytes(4, "big"),
                1,
                i,
                2,
                False,
                i.to_bytes(32, "big") if i % 2 else b"",  # with and without header hashes
            )
        )
        if i % 7 == 0:
            log.flush()
    log.close()
    segs = list_segments(tmp_path)
    assert len(segs) > 3
    old = segment_path(tmp_path, segs[1])
    data = bytearray(old.read_bytes())
    data[300] ^= 0xFF  # corrupt a frame in the middle of a closed segment
    old.write_bytes(bytes(data))
    with segment_path(tmp_path, segs[-1]).open("ab") as fh:
        fh.write(b"\x50\x00\x00\x00torn")  # a frame header with half a payload

    def as_tuple(rec: object) -> object:
        if isinstance(rec, ShareFields):
            return (rec.ts_ms, rec.bits, rec.diff_num, rec.diff_den, rec.account, rec.worker)
        return rec

    everything = [(pos, as_tuple(rec)) for pos, rec in scan_from(tmp_path, LogPosition(segs[0], 0))]
    starts = [LogPosition(segs[0], 0), *(pos for pos, _rec in everything[::23])]
    for start in starts:
        want = [
            (p, r) for p, r in everything if (p.segment, p.offset) > (start.segment, start.offset)
        ]
        for limit in (1, 10, 1000):
            got = read_batch(tmp_path, start, limit)
            part = want[:limit]
            assert got.records == len(part)
            assert got.shares == [r for _p, r in part if isinstance(r, tuple)]
            assert got.others == [r for _p, r in part if isinstance(r, dict)]
            assert got.position == (part[-1][0] if part else start)
            assert (
                got.marks
                == [  # where each other record lies: ingest cuts batches there
                    Mark(i + 1, sum(isinstance(x, tuple) for _q, x in part[:i]), p)
                    for i, (p, r) in enumerate(part)
                    if isinstance(r, dict)
                ]
            )
            for chunk in (64, 1000, 1 << 21):  # the array reader, across its read chunks
                monkeypatch.setattr(scan, "_CHUNK_MIN", chunk)
                monkeypatch.setattr(scan, "_CHUNK_MAX", chunk)
                arr = scan.read_arrays(tmp_path, start, limit)
                assert (arr.records, arr.position, arr.others, arr.marks) == (
                    got.records,
                    got.position,
                    got.others,
                    got.marks,
                )
                columns = (arr.ts_ms, arr.bits, arr.diff_num, arr.diff_den, arr.group)
                rows = [
                    (*r[:4], *arr.names[r[4]])
                    for r in zip(*(c.tolist() for c in columns), strict=True)
                ]
                assert rows == got.shares
