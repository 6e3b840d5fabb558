"""The share log read into arrays: ingest's fast reader of binary share records.

`read_arrays` returns what `reference.read_batch` returns (same records, same checks, same position;
`read_batch` is its oracle in the tests) with the shares as NumPy columns instead of tuples, so
a million shares cost a few array passes instead of a million Python objects. The frame walk
(length, CRC-32, record layout) is one Numba kernel; each share's (account, worker) name pair is
a byte range of the segment plus a 64-bit FNV-1a hash, and the hashes become name groups
checked byte for byte (a hash collision can never merge two names). A CRC-valid record that
does not decode is a ValueError naming where it is (a writer bug: never skipped). Imports
numpy, numba and the share log (`shares.format`, `shares.log`); must not import asyncio or
anything from the ledger.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt

from poold.shares.format import (
    FIELD_AT,
    FIELD_SIZE,
    FLAG_HASH,
    FRAME,
    HASH_SIZE,
    MAX_RECORD,
    SHARE,
    SHARE_TAG,
    RecordError,
    decode_payload,
)
from poold.shares.log import LogPosition, list_segments, segment_path
from poold.shares.reference import Mark

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


def _crc_tables() -> npt.NDArray[np.uint32]:
    """Slicing-by-8 tables of the CRC-32 that zlib computes (reflected 0xEDB88320)."""
    t = np.zeros((8, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            prev = int(t[k - 1, i])
            t[k, i] = (prev >> 8) ^ int(t[0, prev & 0xFF])
    return t


_CRC = _crc_tables()
LIMIT, INCOMPLETE, CORRUPT = 0, 1, 2  # why `walk` stopped
#: The record layout the kernel reads, from `shares.format` (passed in, never compiled in:
#: Numba's on-disk cache would not notice a changed constant in another module).
LAYOUT = np.array(
    [
        FRAME.size,
        MAX_RECORD,
        SHARE_TAG,
        SHARE.size,  # the fixed part; the four u8 lengths follow
        FIELD_AT["ts_ms"],
        FIELD_SIZE["ts_ms"],
        FIELD_AT["bits"],
        FIELD_SIZE["bits"],
        FIELD_AT["diff_num"],
        FIELD_SIZE["diff_num"],
        FIELD_AT["diff_den"],
        FIELD_SIZE["diff_den"],
        FIELD_AT["flags"],
        FLAG_HASH,
        HASH_SIZE,
    ],
    dtype=np.int64,
)


@nb.njit(cache=True, nogil=True)
def _crc32(data: U8, start: int, stop: int, tab: npt.NDArray[np.uint32]) -> int:
    crc = np.uint32(0xFFFFFFFF)
    i = start
    while i + 8 <= stop:
        lo = crc ^ (
            np.uint32(data[i])
            | (np.uint32(data[i + 1]) << 8)
            | (np.uint32(data[i + 2]) << 16)
            | (np.uint32(data[i + 3]) << 24)
        )
        crc = (
            tab[7, lo & 0xFF]
            ^ tab[6, (lo >> 8) & 0xFF]
            ^ tab[5, (lo >> 16) & 0xFF]
            ^ tab[4, lo >> 24]
            ^ tab[3, data[i + 4]]
            ^ tab[2, data[i + 5]]
            ^ tab[1, data[i + 6]]
            ^ tab[0, data[i + 7]]
        )
        i += 8
    while i < stop:
        crc = tab[0, (crc ^ np.uint32(data[i])) & 0xFF] ^ (crc >> 8)
        i += 1
    return int(crc ^ np.uint32(0xFFFFFFFF))


@nb.njit(cache=True, nogil=True)
def _u(data: U8, at: int, size: int) -> np.uint64:
    """Little-endian unsigned integer of `size` bytes (<= 8) at `at`."""
    v = np.uint64(0)
    for k in range(size - 1, -1, -1):
        v = (v << np.uint64(8)) | np.uint64(data[at + k])
    return v


@nb.njit(cache=True, nogil=True)
def walk(
    data: U8,
    limit: int,
    tab: npt.NDArray[np.uint32],
    ts: I64,
    bits: I64,
    num: U64,
    den: U64,
    name_at: I64,
    name_split: I64,
    name_end: I64,
    name_hash: U64,
    other_at: I64,
    other_end: I64,
    layout: I64,
    share_at: I64,
) -> tuple[int, int, int, int, int]:
    """Walk intact frames of `data` from 0, at most `limit` records, filling one row of the
    share columns per binary share (and its payload's start in `share_at`) and one (payload
    start, end) per other record.

    Returns (records, shares, others, end of the last intact record, status): status LIMIT,
    INCOMPLETE (the next frame runs past `data`: torn, or not read yet) or CORRUPT (a length
    over 1 MiB or a CRC mismatch), where `log.frames` stops too. A share record whose
    lengths do not add up is an "other" record: the Python decoder rejects it loudly.
    `layout` is `LAYOUT`: frame size, largest record, share tag, fixed part, then offset and
    width of ts_ms, bits, diff_num and diff_den, then the flags' offset, the header-hash flag
    and the hash's size (a record with the flag ends with the hash, after the names)."""
    fsize, max_record, tag, head = layout[0], layout[1], layout[2], layout[3]
    ts_at, ts_w, bits_at, bits_w = layout[4], layout[5], layout[6], layout[7]
    num_at, num_w, den_at, den_w = layout[8], layout[9], layout[10], layout[11]
    flags_at, hash_flag, hash_size = layout[12], layout[13], layout[14]
    n = shares = others = 0
    pos = 0
    end = data.shape[0]
    while True:
        if n >= limit:
            return n, shares, others, pos, LIMIT
        if pos + fsize > end:
            return n, shares, others, pos, INCOMPLETE
        length = int(_u(data, pos, 4))
        crc = int(_u(data, pos + 4, 4))
        start = pos + fsize
        stop = start + length
        if length > max_record:
            return n, shares, others, pos, CORRUPT
        if stop > end:
            return n, shares, others, pos, INCOMPLETE
        if _crc32(data, start, stop, tab) != crc:
            return n, shares, others, pos, CORRUPT
        good = False
        if length >= head + 4 and data[start] == tag:
            h = start + head
            a = h + 4 + int(data[h]) + int(data[h + 1])  # int(): no uint8 arithmetic
            b = a + int(data[h + 2])
            e = b + int(data[h + 3])
            tail = hash_size if int(data[start + flags_at]) & hash_flag else 0
            if e + tail == stop:
                good = True
                ts[shares] = np.int64(_u(data, start + ts_at, ts_w))
                bits[shares] = np.int64(_u(data, start + bits_at, bits_w))
                num[shares] = _u(data, start + num_at, num_w)
                den[shares] = _u(data, start + den_at, den_w)
                name_at[shares] = a
                name_split[shares] = b
                name_end[shares] = e
                x = np.uint64(14695981039346656037)
                for k in range(a, e):
                    x = (x ^ np.uint64(data[k])) * np.uint64(1099511628211)
                    if k == b - 1:
                        x = (x ^ np.uint64(0x1FF)) * np.uint64(1099511628211)
                name_hash[shares] = x ^ np.uint64(b - a)
                share_at[shares] = start
                shares += 1
        if not good:
            other_at[others] = start
            other_end[others] = stop
            others += 1
        n += 1
        pos = stop


@nb.njit(cache=True, nogil=True)
def _same_names(data: U8, at: I64, split: I64, end: I64, rep: I64) -> bool:
    """Every share's name bytes equal those of its group's representative share."""
    for i in range(at.shape[0]):
        r = rep[i]
        if r == i:
            continue
        if split[i] - at[i] != split[r] - at[r] or end[i] - at[i] != end[r] - at[r]:
            return False
        for k in range(end[i] - at[i]):
            if data[at[i] + k] != data[at[r] + k]:
                return False
    return True


@dataclass(slots=True)
class ArrayBatch:
    """Shares as columns in log order, others as dicts (in log order among themselves).

    `group` gives each share's index into `names` ((account, worker) as bytes; one name pair
    may own several groups, one per chunk read). `marks[i]` says where `others[i]` lies: the
    records read through it, the shares read before it, the position just past it (ingest
    cuts a batch there)."""

    ts_ms: I64
    bits: I64
    diff_num: U64
    diff_den: U64
    group: I64
    names: list[tuple[bytes, bytes]]
    others: list[dict[str, object]]
    records: int
    position: LogPosition
    marks: list[Mark]


_CHUNK_MIN, _CHUNK_MAX = 2 << 20, 64 << 20  # bytes read at a time (> one largest frame)


class _Columns:
    def __init__(self) -> None:
        self.parts: dict[str, list[npt.NDArray[np.int64] | npt.NDArray[np.uint64]]] = {
            k: [] for k in ("ts", "bits", "num", "den", "group")
        }
        self.names: list[tuple[bytes, bytes]] = []
        self.others: list[dict[str, object]] = []
        self.marks: list[Mark] = []
        self.records = self.shares = 0  # read by earlier chunks

    def walk(self, raw: bytes, limit: int, seq: int, offset: int) -> tuple[int, int, int]:
        """Walk one chunk, read from `offset` of segment `seq`: (records, bytes consumed,
        walk status)."""
        data = np.frombuffer(raw, dtype=np.uint8)
        room = max(0, min(limit, len(raw) // FRAME.size + 1))
        ts, bits, at, split, end, o_at, o_end, s_at = (np.empty(room, np.int64) for _ in range(8))
        num, den, hsh = (np.empty(room, np.uint64) for _ in range(3))
        got, k, m, stop, status = walk(
            data, room, _CRC, ts, bits, num, den, at, split, end, hsh, o_at, o_end, LAYOUT, s_at
        )
        for j in range(m):
            try:
                record = decode_payload(raw[o_at[j] : o_end[j]])
            except (RecordError, struct.error) as exc:
                where = offset + int(o_at[j]) - FRAME.size
                raise ValueError(f"segment {seq}, offset {where}: {exc}") from None
            if record is not None:
                # Shares lie in log order, so those before this record are those that start
                # before it.
                before = int(np.searchsorted(at[:k], o_at[j]))
                self.others.append(record)
                self.marks.append(
                    Mark(
                        self.records + before + j + 1,
                        self.shares + before,
                        LogPosition(seq, offset + int(o_end[j])),
                    )
                )
        self.records += got
        self.shares += k
        if k:
            _h, first, inverse = np.unique(hsh[:k], return_index=True, return_inverse=True)
            if not _same_names(data, at[:k], split[:k], end[:k], first[inverse]):
                first, inverse = _groups_by_bytes(raw, at[:k], split[:k], end[:k])
            self.parts["group"].append(inverse.astype(np.int64) + len(self.names))
            self.names += [(raw[at[f] : split[f]], raw[split[f] : end[f]]) for f in first.tolist()]
            for key, arr in (("ts", ts), ("bits", bits), ("num", num), ("den", den)):
                self.parts[key].append(arr[:k])
        if got == room and room < limit:
            status = INCOMPLETE  # the room was sized to the chunk: there may be more
        return got, stop, status

    def column(self, key: str, dtype: type[np.int64] | type[np.uint64]) -> npt.NDArray[Any]:
        parts = self.parts[key]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)


def read_arrays(
    directory: Path, start: LogPosition, limit: int, until: LogPosition | None = None
) -> ArrayBatch:
    """Up to `limit` intact records after `start` (see `reference.read_batch`), as columns;
    none past `until` (what the writer has fsynced: a power cut cannot take it back)."""
    cols = _Columns()
    n = 0
    last = start
    for seq in list_segments(directory):
        if seq < start.segment or n >= limit:
            continue
        if until is not None and seq > until.segment:
            break
        offset = start.offset if seq == start.segment else 0
        with open(segment_path(directory, seq), "rb") as fh:
            grow = 1
            while n < limit:
                # About what `limit` records need, not the whole rest of a 64 MiB segment.
                want = max(_CHUNK_MIN, min((limit - n) * 192, _CHUNK_MAX)) * grow
                fh.seek(offset)
                raw = fh.read(want)
                if until is not None and seq == until.segment:
                    raw = raw[: max(0, until.offset - offset)]
                got, stop, status = cols.walk(raw, limit - n, seq, offset)
                n += got
                offset += stop
                if got:
                    last = LogPosition(seq, offset)
                if status != INCOMPLETE or len(raw) < want:
                    break  # the limit, a corrupt frame, or the end of this segment
                grow = 1 if got else grow * 2  # a frame larger than the chunk: read more
    return ArrayBatch(
        cols.column("ts", np.int64),
        cols.column("bits", np.int64),
        cols.column("num", np.uint64),
        cols.column("den", np.uint64),
        cols.column("group", np.int64),
        cols.names,
        cols.others,
        n,
        last,
        cols.marks,
    )


def _groups_by_bytes(raw: bytes, at: I64, split: I64, end: I64) -> tuple[I64, I64]:
    """(first index of each group, group of each share) keyed by the name bytes themselves:
    the path taken when two different name pairs share a 64-bit hash."""
    seen: dict[tuple[bytes, bytes], int] = {}
    first: list[int] = []
    inverse = np.empty(at.shape[0], np.int64)
    for i, (a, b, e) in enumerate(zip(at.tolist(), split.tolist(), end.tolist(), strict=True)):
        key = (raw[a:b], raw[b:e])
        g = seen.get(key)
        if g is None:
            g = seen[key] = len(first)
            first.append(i)
        inverse[i] = g
    return np.array(first, np.int64), inverse
