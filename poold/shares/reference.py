"""The plain-Python reference of the share log's fast reader: `read_batch` reads exactly what
`shares.scan.read_arrays` reads (same records, checks and positions) one record at a time.
The tests hold the Numba reader to it; nothing in the daemon calls it.
Imports the share log and its format only.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from poold.shares.format import FRAME, MAX_RECORD, ShareTuple, decode_payload, share_tuple
from poold.shares.log import SHARE_PREFIX, LogPosition, list_segments, segment_path


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a non-share record lies in a batch: `records` read through it, `shares` read
    before it, and the log position just past it."""

    records: int
    shares: int
    position: LogPosition


@dataclass(slots=True)
class RecordBatch:
    """What `read_batch` found: shares as tuples in log order, other records as dicts (in log
        order among themselves), how many records in all, the position just past the last, and
    where each other record lies (`marks`)."""

    shares: list[ShareTuple]
    others: list[dict[str, object]]
    records: int
    position: LogPosition
    marks: list[Mark]


def read_batch(directory: Path, start: LogPosition, limit: int) -> RecordBatch:
    """Up to `limit` intact records after `start`: the same records, checks and positions as
    `scan_from` (a torn or corrupt frame ends its segment), in one loop with no object per
    share. The plain-Python reference of `shares.scan.read_arrays`, which ingest uses."""
    shares: list[ShareTuple] = []
    others: list[dict[str, object]] = []
    marks: list[Mark] = []
    add = shares.append
    frame, crc32 = FRAME.unpack_from, zlib.crc32
    fsize = FRAME.size
    n = 0
    last_seq, last_end = start.segment, start.offset  # just past the last record read
    for seq in list_segments(directory):
        if seq < start.segment:
            continue
        base = start.offset if seq == start.segment else 0
        with open(segment_path(directory, seq), "rb") as fh:
            fh.seek(base)
            data = fh.read()
        pos, end = 0, len(data)
        while n < limit and pos + fsize <= end:
            length, crc = frame(data, pos)
            stop = pos + fsize + length
            if length > MAX_RECORD or stop > end:
                break
            payload = data[pos + fsize : stop]
            if crc32(payload) != crc:
                break
            if payload[:1] == SHARE_PREFIX:
                add(share_tuple(payload))
            else:
                record = decode_payload(payload)
                if record is not None:
                    others.append(record)
                    marks.append(Mark(n + 1, len(shares), LogPosition(seq, base + stop)))
            n += 1
            pos = stop
            last_seq, last_end = seq, base + stop
        if n >= limit:
            break
    return RecordBatch(shares, others, n, LogPosition(last_seq, last_end), marks)
