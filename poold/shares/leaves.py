"""Work-proof leaves per token period, in files beside the share log (never ledger rows).

Right after a period closes (a heartbeat of this log promises every share before its end is
written), `LeafKeeper.build_due` scans the log once from where the period's records begin and
writes `work/leaves-<period start>.bin`: the fleet's accepted shares of the period that
carry their header hash, sorted by header hash, each with what rebuilds its header (its job's
index in the file's job table, extranonces, ntime, nonce, version). Jobs logged shortly
before a period (their shares may fall in it) are carried to the next build in
`work/jobs-carry.json`. The keeper's state (`work/STATE.json`: where the next scan starts,
and the first segment of every period built but whose sample is not cut yet) gives the share
log's retention a hold (`hold()`): no segment of a period whose sample is not cut is ever
pruned, and the leaf file stays until `cut`.

File layout: magic `POLDLEAF`, version u8, node u8, start u64, end u64, then three sections
each `u32 count` + items — accounts (u16 length + UTF-8), jobs (u32 length + JSON of a job
record), leaves (`LEAF` records, 87 bytes each: hash (32, big-endian), weight (16, big-endian
expected hashes: difficulty x 2**32), account u16, job u32, en1 (4), en2 length u8, en2 (16,
zero-padded), ntime, nonce, version u32). Imports the share log, its format and NumPy; never
the ledger.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt
import orjson

from poold.shares.format import (
    FIELD_AT,
    FIELD_SIZE,
    FLAG_HASH,
    FRAME,
    SHARE,
    SHARE_TAG,
    Beat,
    JobRecord,
    ShareRecord,
    decode_share,
    share_header_hash,
    share_tuple,
)
from poold.shares.log import frames, fsync_dir, list_segments, segment_path
from poold.shares.scan import _CRC, LAYOUT, LIMIT, walk

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

MAGIC = b"POLDLEAF"
VERSION = 1
HEAD = struct.Struct("<8sBBQQ")
LEAF = np.dtype(
    [
        ("hash", "S32"),
        ("weight", "S16"),
        ("account", "<u2"),
        ("job", "<u4"),
        ("en1", "S4"),
        ("en2_len", "u1"),
        ("en2", "S16"),
        ("ntime", "<u4"),
        ("nonce", "<u4"),
        ("version", "<u4"),
    ]
)
assert LEAF.itemsize == 87
#: Jobs logged this long before a period ends are carried to the next period's build.
JOB_CARRY_MS = 3_600_000
_TS = FIELD_AT["ts_ms"]


class LeafError(ValueError):
    """A leaf file that does not read, or a period that cannot be built."""


def weight_of(diff_num: int, diff_den: int) -> int:
    """difficulty x 2**32: whole for every difficulty poold credits (see `jobs`/`chain`)."""
    w, rest = divmod(diff_num << 32, diff_den)
    if rest or w <= 0:
        raise LeafError(f"difficulty {diff_num}/{diff_den} x 2**32 is not a whole number")
    return w


@dataclass(frozen=True, slots=True)
class PeriodLeaves:
    """A period's leaf file as read back: the fleet accounts it names, its job table, and
    its leaves (a NumPy array of `LEAF`, sorted by hash)."""

    node: int
    start: int
    end: int
    accounts: tuple[str, ...]
    jobs: tuple[JobRecord, ...]
    leaves: npt.NDArray[np.void]

    def weight(self, i: int) -> int:
        return int.from_bytes(bytes(self.leaves[i]["weight"]).ljust(16, b"\0"), "big")

    def hash(self, i: int) -> bytes:
        return bytes(self.leaves[i]["hash"]).ljust(32, b"\0")

    def evidence(self, i: int) -> tuple[dict[str, object], dict[str, object]]:
        """The job and share fields of leaf `i`, as a work proof writes them."""
        row = self.leaves[i]
        job = self.jobs[int(row["job"])]
        en2 = bytes(row["en2"]).ljust(16, b"\0")[: int(row["en2_len"])]
        return (
            {
                "key": job.key,
                "prev_hash": job.prev_hash.hex(),
                "version": job.version,
                "bits": job.bits,
                "coinb1": job.coinb1.hex(),
                "coinb2": job.coinb2.hex(),
                "branch": [h.hex() for h in job.branch],
            },
            {
                "en1": bytes(row["en1"]).ljust(4, b"\0").hex(),
                "en2": en2.hex(),
                "ntime": int(row["ntime"]),
                "nonce": int(row["nonce"]),
                "version": int(row["version"]),
            },
        )


def write_leaves(
    path: Path,
    node: int,
    start: int,
    end: int,
    accounts: list[str],
    jobs: list[JobRecord],
    leaves: npt.NDArray[np.void],
) -> None:
    """Write a leaf file atomically (temp file, fsync, rename)."""
    keys = np.ascontiguousarray(leaves["hash"]).view(">u8").reshape(-1, 4)
    order = np.argsort(keys[:, 0], kind="stable")  # byte order: the first 8 bytes decide,
    head = keys[order, 0]
    if len(head) > 1 and bool(np.any(head[1:] == head[:-1])):  # unless two share them
        order = np.lexsort((keys[:, 3], keys[:, 2], keys[:, 1], keys[:, 0]))
    leaves, keys = leaves[order], keys[order]
    if len(keys) > 1 and not bool(np.all(np.any(keys[1:] != keys[:-1], axis=1))):
        raise LeafError(f"period {start}: a share's header hash is in the log twice")
    parts = [HEAD.pack(MAGIC, VERSION, node, start, end), struct.pack("<I", len(accounts))]
    for a in accounts:
        raw = a.encode()
        parts.append(struct.pack("<H", len(raw)) + raw)
    parts.append(struct.pack("<I", len(jobs)))
    for j in jobs:
        raw = orjson.dumps(j.to_json())
        parts.append(struct.pack("<I", len(raw)) + raw)
    parts.append(struct.pack("<I", len(leaves)))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(b"".join(parts))
        fh.write(leaves.tobytes())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_leaves(path: Path) -> PeriodLeaves:
    data = path.read_bytes()
    try:
        magic, version, node, start, end = HEAD.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise LeafError(f"{path} is not a version {VERSION} leaf file")
        pos = HEAD.size
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        accounts = []
        for _ in range(n):
            (size,) = struct.unpack_from("<H", data, pos)
            accounts.append(data[pos + 2 : pos + 2 + size].decode())
            pos += 2 + size
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        jobs = []
        for _ in range(n):
            (size,) = struct.unpack_from("<I", data, pos)
            jobs.append(JobRecord.from_json(orjson.loads(data[pos + 4 : pos + 4 + size])))
            pos += 4 + size
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
    except (struct.error, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise LeafError(f"{path} does not read: {exc}") from None
    if len(data) - pos != n * LEAF.itemsize:
        raise LeafError(f"{path} holds {len(data) - pos} bytes of leaves, not {n} leaves")
    leaves = np.frombuffer(data, dtype=LEAF, count=n, offset=pos)
    return PeriodLeaves(node, start, end, tuple(accounts), tuple(jobs), leaves)


@dataclass(slots=True)
class _Scan:
    rows: list[tuple[ShareRecord, str]]
    jobs: dict[str, JobRecord]
    next_from: int | None  # the first segment holding a record of a later period
    complete: bool  # a heartbeat promised every share before the period's end is read
    unprovable: int  # fleet shares without a header hash (logged before hashes)
    missing_job: int


def _scan(
    directory: Path,
    from_segment: int,
    start_ms: int,
    end_ms: int,
    fleet: frozenset[str],
    jobs: dict[str, JobRecord],
) -> _Scan:
    rows: list[tuple[ShareRecord, str]] = []
    out = _Scan(rows, dict(jobs), None, False, 0, 0)
    for seq in list_segments(directory):
        if seq < from_segment:
            continue
        for _start, _end, payload in frames(segment_path(directory, seq).read_bytes()):
            if payload[:1] == bytes((SHARE_TAG,)):
                ts = int.from_bytes(payload[_TS : _TS + 8], "little")
                if ts >= end_ms and out.next_from is None:
                    out.next_from = seq
                if not start_ms <= ts < end_ms:
                    continue
                account = share_tuple(payload)[4].decode()
                if account not in fleet:
                    continue
                if share_header_hash(payload) is None:
                    out.unprovable += 1
                    continue
                share = decode_share(payload)
                if share.job not in out.jobs:
                    out.missing_job += 1
                    continue
                assert share.hash is not None
                rows.append((share, account))
            elif payload.startswith(b'{"t":"job"'):
                job = JobRecord.from_json(orjson.loads(payload))
                out.jobs.setdefault(job.key, job)
            elif payload.startswith(b'{"t":"beat"'):
                beat = Beat.from_json(orjson.loads(payload))
                if beat.through_ms >= end_ms:
                    out.complete = True
                    if out.next_from is None:
                        out.next_from = seq
                    return out
    return out


def _rows(scan: _Scan, accounts: list[str], job_list: list[JobRecord]) -> npt.NDArray[np.void]:
    acct_at = {a: i for i, a in enumerate(accounts)}
    job_at: dict[str, int] = {}
    arr = np.zeros(len(scan.rows), dtype=LEAF)
    for i, (s, account) in enumerate(scan.rows):
        key = s.job
        if key not in job_at:
            job_at[key] = len(job_list)
            job_list.append(scan.jobs[key])
        assert s.hash is not None
        arr[i] = (
            s.hash[::-1],  # big-endian: byte order is numeric order
            weight_of(s.diff_num, s.diff_den).to_bytes(16, "big"),
            acct_at[account],
            job_at[key],
            s.en1,
            len(s.en2),
            s.en2,
            s.ntime,
            s.nonce,
            s.version,
        )
    return arr


# -- the scan as arrays: what `_scan` + `_rows` give (their oracle in the tests), with the
# frame walk in ingest's Numba kernel and each field gathered for all shares at once.

_HEAD = SHARE.size  # the fixed part; four u8 lengths follow (en2, job, account, worker)
_FIXED = {name: (FIELD_AT[name], FIELD_SIZE[name]) for name in FIELD_SIZE}
#: Records walked at a time: the walk's columns stay a few tens of MB for any segment size.
_ROUND = 1 << 18


@nb.njit(cache=True, nogil=True)
def _take(data: U8, at: I64, width: int) -> U8:
    out = np.empty((at.shape[0], width), np.uint8)
    for i in range(at.shape[0]):
        a = at[i]
        for j in range(width):
            out[i, j] = data[a + j]
    return out


def _gather(data: U8, at: I64, width: int) -> U8:
    """`width` bytes from each offset in `at` (n x width)."""
    out: U8 = _take(data, np.ascontiguousarray(at, dtype=np.int64), width)
    return out


def _uint(data: U8, at: I64, name: str) -> npt.NDArray[np.uint64]:
    off, width = _FIXED[name]
    raw = _gather(data, at + off, width)
    return np.ascontiguousarray(raw).view(f"<u{width}").ravel().astype(np.uint64)


def _ranges(data: U8, at: I64, length: npt.NDArray[np.int64], width: int) -> U8:
    """Each share's bytes [at, at + length) in `width` zero-padded columns (length <= width
    is the caller's; longer ranges are cut to `width`)."""
    out = _gather(data, at, width) if width else np.zeros((len(at), 0), np.uint8)
    out[np.arange(width)[None, :] >= length[:, None]] = 0
    return out


def _runs(rows: npt.NDArray[Any]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Runs of equal consecutive rows: the first row of each run, and each row's run."""
    change = np.r_[False, np.any(rows[1:] != rows[:-1], axis=1)]
    return np.flatnonzero(change | (np.arange(len(rows)) == 0)), np.cumsum(change)


def _texts(rows: U8, length: npt.NDArray[np.int64]) -> tuple[list[str], npt.NDArray[np.intp]]:
    """The distinct texts of fixed-width rows (with their lengths) and each row's index."""
    if not len(rows):
        return [], np.zeros(0, np.intp)
    # Shares come in runs of one name (one job): only each run's first row is decoded.
    starts, run_of = _runs(np.hstack([rows, length[:, None].astype(np.uint8)]))
    index: dict[str, int] = {}
    of_run = np.array(
        [index.setdefault(bytes(rows[i, : int(length[i])]).decode(), len(index))
         for i in starts.tolist()],
        dtype=np.intp,
    )  # fmt: skip
    return list(index), of_run[run_of]


def _scan_arrays(
    directory: Path,
    from_segment: int,
    start_ms: int,
    end_ms: int,
    accounts: list[str],
    carried: dict[str, JobRecord],
) -> tuple[_Scan, npt.NDArray[np.void], list[JobRecord]]:
    """`_scan` then `_rows`, as arrays: (the scan's jobs, next segment, completeness and
    counts, with no rows), the period's leaves in log order and the file's job table."""
    fleet_at = {a: i for i, a in enumerate(accounts)}
    out = _Scan([], dict(carried), None, False, 0, 0)
    known: dict[str, tuple[int, int]] = {k: (-1, -1) for k in carried}  # first (seq, offset)
    parts: list[dict[str, Any]] = []
    for seq in list_segments(directory):
        if seq < from_segment:
            continue
        raw = segment_path(directory, seq).read_bytes()
        data = np.frombuffer(raw, dtype=np.uint8)
        pos = 0
        while not out.complete:  # the walk's columns are bounded: a segment in rounds
            view = data[pos:]
            room = min(len(view) // FRAME.size + 1, _ROUND)
            cols = [np.empty(room, np.int64) for _ in range(8)]
            num, den, hsh = (np.empty(room, np.uint64) for _ in range(3))
            ts, bits, at, split, end, o_at, o_end, s_at = cols
            _n, k, m, stop, status = walk(
                view, room, _CRC, ts, bits, num, den, at, split, end, hsh, o_at, o_end, LAYOUT,
                s_at,
            )  # fmt: skip
            for col in (at, split, end, o_at, o_end, s_at):
                col += pos  # offsets in the segment
            cut = k  # shares before the beat that completes the period
            for j in range(m):
                payload = raw[o_at[j] : o_end[j]]
                if payload[:1] == bytes((SHARE_TAG,)):
                    raise LeafError(f"segment {seq}, offset {int(o_at[j]) - FRAME.size}: a "
                                    "share record whose lengths do not add up")  # fmt: skip
                if payload.startswith(b'{"t":"job"'):
                    job = JobRecord.from_json(orjson.loads(payload))
                    if job.key not in known:
                        known[job.key] = (seq, int(o_at[j]))
                    out.jobs.setdefault(job.key, job)
                elif payload.startswith(b'{"t":"beat"'):
                    beat = Beat.from_json(orjson.loads(payload))
                    if beat.through_ms >= end_ms:
                        cut = int(np.searchsorted(s_at[:k], o_at[j]))
                        out.complete = True
                        break
            ts_k, s_k = ts[:cut], s_at[:cut]
            if out.next_from is None and (bool(np.any(ts_k >= end_ms)) or out.complete):
                out.next_from = seq
            inside = np.flatnonzero((ts_k >= start_ms) & (ts_k < end_ms))
            if len(inside):
                a, b, st = at[inside], split[inside], s_k[inside]
                names, which = _texts(_ranges(data, a, b - a, int((b - a).max())), b - a)
                index = np.array([fleet_at.get(x, -1) for x in names], dtype=np.int64)[which]
                mine = index >= 0
                proven = (data[st[mine] + FIELD_AT["flags"]] & FLAG_HASH) != 0
                out.unprovable += int(np.count_nonzero(~proven))
                keep = inside[mine][proven]
                parts.append({"seq": seq, "data": data, "account": index[mine][proven],
                              "num": num[keep], "den": den[keep], "end": end[keep],
                              "start": s_at[keep]})  # fmt: skip
            pos += stop
            if status != LIMIT:
                break
        if out.complete:
            break
    return _assemble(parts, out, known)


def _assemble(
    parts: list[dict[str, Any]], out: _Scan, known: dict[str, tuple[int, int]]
) -> tuple[_Scan, npt.NDArray[np.void], list[JobRecord]]:
    chunks: list[npt.NDArray[np.void]] = []
    job_list: list[JobRecord] = []
    job_at: dict[str, int] = {}
    for p in parts:
        data, st = p["data"], p["start"]
        if not len(st):
            continue
        head = st + _HEAD
        lens = _gather(data, head, 4).astype(np.int64)
        en2_len, job_len = lens[:, 0], lens[:, 1]
        job_rows = _ranges(data, head + 4 + en2_len, job_len, int(job_len.max()))
        keys, which = _texts(job_rows, job_len)
        seen = [known.get(key, (1 << 62, 0)) for key in keys]
        # A share's job must be logged before it (or carried in): else it is missing.
        where = np.array([s for s, _o in seen], np.int64)[which]
        off = np.array([o for _s, o in seen], np.int64)[which]
        ok = (where < p["seq"]) | ((where == p["seq"]) & (off < st))
        out.missing_job += int(np.count_nonzero(~ok))
        sel = np.flatnonzero(ok)
        if not len(sel):
            continue
        st, which, en2_len = st[sel], which[sel], en2_len[sel]
        head = st + _HEAD
        key_index = np.empty(len(keys), np.int64)
        for key in (keys[i] for i in dict.fromkeys(which.tolist())):  # the file's job table:
            # jobs in the order the period's shares first use them
            if key not in job_at:
                job_at[key] = len(job_list)
                job_list.append(out.jobs[key])
        for i, key in enumerate(keys):
            key_index[i] = job_at.get(key, -1)
        pairs = np.stack([p["num"][sel], p["den"][sel]], axis=1)
        firsts, run_of = _runs(pairs)
        weights = np.frombuffer(  # a share's difficulty changes rarely: once per run
            b"".join(weight_of(int(n), int(d)).to_bytes(16, "big")
                     for n, d in pairs[firsts].tolist()),
            np.uint8,
        ).reshape(-1, 16)[run_of]  # fmt: skip
        arr = np.zeros(len(st), dtype=LEAF)
        arr["hash"] = _gather(data, p["end"][sel], 32)[:, ::-1].copy().view("S32").ravel()
        arr["weight"] = np.ascontiguousarray(weights).view("S16").ravel()
        arr["account"] = p["account"][sel]
        arr["job"] = key_index[which]
        arr["en1"] = _gather(data, st + FIELD_AT["en1"], 4).copy().view("S4").ravel()
        arr["en2_len"] = en2_len
        arr["en2"] = _ranges(data, head + 4, en2_len, 16).copy().view("S16").ravel()
        for name in ("ntime", "nonce", "version"):
            arr[name] = _uint(data, st, name)
        chunks.append(arr)
    leaves = np.concatenate(chunks) if chunks else np.zeros(0, dtype=LEAF)
    return out, leaves, job_list


@dataclass(frozen=True, slots=True)
class Built:
    start: int
    path: Path
    leaves: int
    unprovable: int
    missing_job: int

    def fields(self) -> dict[str, int | None]:
        """What a `work_leaves_built` event says of the build."""
        return {
            "period_start": self.start,
            "leaves": self.leaves,
            "unprovable": self.unprovable or None,
            "missing_job": self.missing_job or None,
        }


class LeafKeeper:
    """Builds each period's leaf file once it has closed, and holds the share log's segments
    (and the file) until the period's sample is cut."""

    def __init__(
        self,
        log_dir: Path,
        node: int,
        fleet: tuple[str, ...],
        period_of: Callable[[int], tuple[int, int]],
    ) -> None:
        self.log_dir = log_dir
        self.dir = log_dir / "work"
        self.node = node
        self.fleet = frozenset(fleet)
        self.period_of = period_of
        self.dir.mkdir(parents=True, exist_ok=True)
        self._state_path = self.dir / "STATE.json"
        self._carry_path = self.dir / "jobs-carry.json"
        state = json.loads(self._state_path.read_text()) if self._state_path.exists() else {}
        self.next_start: int | None = state.get("next_start")
        self.scan_from: int = int(state.get("scan_from", 1))
        self.held: dict[int, int] = {int(k): int(v) for k, v in state.get("held", {}).items()}

    def path(self, start: int) -> Path:
        return self.dir / f"leaves-{start}.bin"

    def _save(self) -> None:
        state = {"next_start": self.next_start, "scan_from": self.scan_from,
                 "held": {str(k): v for k, v in self.held.items()}}  # fmt: skip
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._state_path)

    def _carried(self) -> dict[str, JobRecord]:
        if not self._carry_path.exists():
            return {}
        return {
            j.key: j
            for j in (JobRecord.from_json(r) for r in json.loads(self._carry_path.read_text()))
        }

    def hold(self) -> int:
        """The oldest segment still needed: the next period's scan, or a period built whose
        sample is not cut yet (the share log's retention prunes nothing from here on)."""
        return min([self.scan_from, *self.held.values()])

    def build_due(self, now: float, *, closed: bool = False) -> list[Built]:
        """Build every closed period's leaf file not built yet, oldest first; stops at a
        period whose records are not all in the log (no heartbeat past its end yet). With
        `closed` the log gets no more records (a mirrored node that stopped or was
        excluded): a period it did not pass is built from what the log holds, if it holds
        shares of it, and the keeper stops there."""
        out: list[Built] = []
        if self.next_start is None:
            segs = list_segments(self.log_dir)
            first = _first_ts(self.log_dir, segs[0]) if segs else None
            if first is None:
                return out
            self.next_start = self.period_of(first // 1000)[0]
            self._save()
        while True:
            start, end = self.period_of(self.next_start)
            if now < end:
                return out
            accounts = sorted(self.fleet)
            scan, arr, jobs = _scan_arrays(
                self.log_dir, self.scan_from, start * 1000, end * 1000, accounts, self._carried()
            )
            if not scan.complete and (not closed or len(arr) == 0):
                return out
            write_leaves(self.path(start), self.node, start, end, accounts, jobs, arr)
            late = [j.to_json() for j in scan.jobs.values() if j.ts_ms >= end * 1000 - JOB_CARRY_MS]
            self._carry_path.write_text(json.dumps(late))
            self.held[start] = self.scan_from
            self.scan_from = scan.next_from if scan.next_from is not None else self.scan_from
            self.next_start = end
            self._save()
            out.append(Built(start, self.path(start), len(arr), scan.unprovable, scan.missing_job))

    def cut(self, start: int) -> None:
        """The period's sample is cut (published): release its segments and its leaf file."""
        if self.held.pop(start, None) is not None:
            self._save()
        self.path(start).unlink(missing_ok=True)

    def built(self) -> Iterator[int]:
        return iter(sorted(self.held))


def _first_ts(directory: Path, seq: int) -> int | None:
    for _start, _end, payload in frames(segment_path(directory, seq).read_bytes()):
        if payload[:1] == bytes((SHARE_TAG,)):
            return int.from_bytes(payload[_TS : _TS + 8], "little")
    return None


__all__ = ["LEAF", "Built", "LeafError", "LeafKeeper", "PeriodLeaves", "read_leaves"]
