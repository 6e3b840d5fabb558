"""The durable, append-only share log: every accepted share and found block, in rotating segments.

Durability contract: `flush()` hands records to the kernel with one write() (they survive kill -9
of the daemon from that moment); `sync()` fsyncs them (they survive power loss) and reports the
position it covered (`synced`, and `on_synced` from the syncing thread). A group-commit thread
(`start_group_commit`) calls `sync()` every few milliseconds, off the event loop and without
waking it; `request_sync()` makes it sync now (the `reply_after = "fsync"` mode, where replies
wait for the fsync that covers their shares). The daemon calls `flush()` before it sends the
`true` replies for the shares in the batch.

The record format (framing, the binary share record, the block record) is `shares.format`:
binary share records are ~80 bytes instead of ~250 of JSON (shares are the volume). Readers
get records as dicts (`read_log`) or share fields (`scan_from`). A torn tail
(crash mid-write) is detected by length/CRC on open and truncated.

A write that fails (ENOSPC, EIO, a short write then an error) raises `ShareLogError` after the
segment is cut back to its last whole record, so nothing half-written ever precedes the next
record; the failed records are dropped here and their owner decides (the writer answers an
error instead of `true`). An fsync error is kept in `error` until an fsync succeeds, and the
log refuses writes meanwhile. Segments are removed only below the oldest segment a consumer
still needs (`prune`), and a missing segment is an error that names it (`check_contiguous`).

A log has an identity (`LOG_ID`: a random id and the node id it belongs to, written when
the directory is first opened) and one writer at a time (an exclusive `flock` on `LOCK`,
released by the kernel even after kill -9): a second daemon on the same directory, or a
daemon whose node id is not the log's, is refused at open. Must not import asyncio or
anything from the ledger.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from poold.shares.format import (
    FRAME,
    MAX_RECORD,
    SHARE_TAG,
    ShareFields,
    decode_payload,
    share_tuple,
)

_PREFIX, _SUFFIX = "shares-", ".log"
SHARE_PREFIX = bytes((SHARE_TAG,))


class ShareLogError(RuntimeError):
    """The share log cannot be opened or written."""


class ShareLogGap(ShareLogError):
    """Segments a reader needs are missing (deleted by hand, or by a retention bug)."""


class FileOps(Protocol):
    """The syscalls the writer makes: `os` itself, or a fault-injecting stand-in (tests, sim)."""

    def write(self, fd: int, data: bytes | bytearray | memoryview, /) -> int: ...
    def fdatasync(self, fd: int, /) -> None: ...
    def fsync(self, fd: int, /) -> None: ...
    def ftruncate(self, fd: int, length: int, /) -> None: ...
    def open(self, path: str, flags: int, mode: int, /) -> int: ...
    def fsync_dir(self, directory: Path, /) -> None: ...


class _Os:
    write = staticmethod(os.write)
    fdatasync = staticmethod(os.fdatasync)
    fsync = staticmethod(os.fsync)
    ftruncate = staticmethod(os.ftruncate)
    open = staticmethod(os.open)

    @staticmethod
    def fsync_dir(directory: Path) -> None:
        fsync_dir(directory)


OS_FILE_OPS: FileOps = _Os()


@dataclass(frozen=True, slots=True)
class LogPosition:
    segment: int
    offset: int


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"{_PREFIX}{seq:010d}{_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """Sequence numbers of the segments in `directory`, oldest first."""
    seqs = []
    for p in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        stem = p.name[len(_PREFIX) : -len(_SUFFIX)]
        if stem.isdigit():
            seqs.append(int(stem))
    return sorted(seqs)


def check_contiguous(directory: Path, segs: list[int], start_segment: int) -> None:
    """Raise `ShareLogGap` naming what is missing when the segments a reader at
    `start_segment` needs are not all there (a log always starts at segment 1)."""
    need = [s for s in segs if s >= start_segment]
    expect = start_segment
    for seq in need:
        if seq != expect:
            missing = f"{expect}" if seq == expect + 1 else f"{expect}..{seq - 1}"
            raise ShareLogGap(
                f"share log {directory} is missing segment(s) {missing} "
                f"({segment_path(directory, expect).name}): their records were never read; "
                "restore them or move the reader past them on purpose"
            )
        expect += 1


def prune_segments(directory: Path, *, below_segment: int, older_than: float) -> list[Path]:
    """Delete segments numbered below `below_segment` (every consumer is past them) whose
    mtime is before `older_than`, oldest first, stopping at the first one kept: the log
    never gets a hole. Returns what was removed."""
    removed = []
    for seq in list_segments(directory):
        path = segment_path(directory, seq)
        if seq >= below_segment or path.stat().st_mtime >= older_than:
            break
        path.unlink()
        removed.append(path)
    if removed:
        fsync_dir(directory)
    return removed


def frames(data: bytes, pos: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, payload) of each intact frame from `pos` (a frame boundary); stops at the
    first torn or corrupt one."""
    while pos + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, pos)
        end = pos + FRAME.size + length
        if length > MAX_RECORD or end > len(data):
            return
        payload = data[pos + FRAME.size : end]
        if zlib.crc32(payload) != crc:
            return
        yield pos, end, payload
        pos = end


def read_segment(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (offset, record) for every intact record of one segment."""
    for start, _end, payload in frames(path.read_bytes()):
        record = decode_payload(payload)
        if record is not None:
            yield start, record


def _valid_length(path: Path) -> int:
    return max((end for _start, end, _payload in frames(path.read_bytes())), default=0)


def _payloads_from(directory: Path, start: LogPosition) -> Iterator[tuple[LogPosition, bytes]]:
    """Intact payloads after `start`, each with the position just past it (what a reader
    checkpoints). Stops at the first torn record of the newest segment: the writer may still
    be adding it."""
    for seq in list_segments(directory):
        if seq < start.segment:
            continue
        data = segment_path(directory, seq).read_bytes()
        first = start.offset if seq == start.segment else 0
        for _start, end, payload in frames(data, first):
            yield LogPosition(seq, end), payload


def scan_from(
    directory: Path, start: LogPosition
) -> Iterator[tuple[LogPosition, ShareFields | dict[str, object]]]:
    """Records after `start`, each with the position just past it: binary share records as
    `ShareFields` (no dict per share: ingest reads millions), others as dicts."""
    for pos, payload in _payloads_from(directory, start):
        if payload[:1] == SHARE_PREFIX:
            yield pos, ShareFields(*share_tuple(payload))
        else:
            record = decode_payload(payload)
            if record is not None:
                yield pos, record


def read_log(directory: Path) -> Iterator[tuple[LogPosition, dict[str, object]]]:
    """Every intact record of every segment, in append order."""
    for seq in list_segments(directory):
        for offset, record in read_segment(segment_path(directory, seq)):
            yield LogPosition(seq, offset), record


def log_identity(directory: Path, node_id: int) -> str:
    """The log's id, created with `node_id` on first use; a log of another node is refused."""
    path = directory / "LOG_ID"
    if not path.exists():
        tmp = directory / "LOG_ID.tmp"
        tmp.write_bytes(orjson.dumps({"log_id": uuid.uuid4().hex, "node_id": node_id}))
        os.replace(tmp, path)
        fsync_dir(directory)
    try:
        data = orjson.loads(path.read_bytes())
        log_id, owner = str(data["log_id"]), int(data["node_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ShareLogError(f"{path} does not parse ({exc}): restore it or move the log") from None
    if owner != node_id:
        raise ShareLogError(
            f"the share log in {directory} belongs to node {owner}, but this daemon is node "
            f"{node_id}: check [stratum] node_id and [sharelog] path"
        )
    return log_id


def next_start(directory: Path) -> int:
    """This opening's number (1, 2, ...), counted in `STARTS` and durable before it is used:
    with the node id it makes job keys unique across restarts (`jobs.manager`), so work done
    for a job before a crash can never be submitted again against a job after it."""
    path = directory / "STARTS"
    try:
        last = int(path.read_text().strip() or "0") if path.exists() else 0
    except ValueError:
        raise ShareLogError(f"{path} does not hold a number: restore it or move the log") from None
    tmp = directory / "STARTS.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{last + 1}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)
    return last + 1


def read_identity(directory: Path) -> tuple[str, int] | None:
    """(log id, node id) of a log directory, or None for a log from before identities."""
    try:
        data = orjson.loads((directory / "LOG_ID").read_bytes())
        return str(data["log_id"]), int(data["node_id"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class ShareLog:
    """Append-only segmented log with group commit. Not thread-safe except `sync()`."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 << 20,
        retention_s: float = 7 * 86400,
        ops: FileOps = OS_FILE_OPS,
        node_id: int | None = None,
    ) -> None:
        self.directory = directory
        self.node_id = node_id  # checked against (or written to) LOG_ID at open
        self.log_id: str | None = None  # the log's identity, once open
        self.start_number = 0  # which opening of this log this is (1, 2, ...), once open
        self._lock_fd = -1
        self.ops = ops
        self.segment_bytes = segment_bytes
        self.retention_s = retention_s
        # The oldest segment something beside the consumers still needs (the work-proof
        # leaves of a period whose sample is not cut: `shares.leaves.LeafKeeper.hold`).
        self.hold: Callable[[], int | None] | None = None
        self._pending = bytearray()
        self._fd = -1
        self._seq = 0
        self._size = 0
        self._lock = threading.Lock()  # guards fd swaps against a concurrent fsync
        self._dirty = False
        self._committer: threading.Thread | None = None
        self._stop_commit = threading.Event()
        self._wake = threading.Event()  # request_sync(): the committer syncs now
        # Everything before this position is fsynced; told to `on_synced` (from the thread
        # that synced) after each fsync that succeeded.
        self.synced = LogPosition(0, 0)
        self.on_synced: Callable[[LogPosition], None] | None = None
        self.records_appended = 0
        self.bytes_written = 0
        self.syncs = 0
        self.write_errors = 0
        self.sync_errors = 0
        self.write_error: str | None = None  # the last write failed (cleared by a good one)
        self.sync_error: str | None = None  # the last fsync failed (cleared by a good one)
        self._torn = False  # a failed write's tail is not cut back yet

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating the directory), truncating a torn tail left by a crash."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            try:
                if self.node_id is not None:
                    self.log_id = log_identity(self.directory, self.node_id)
                self.start_number = next_start(self.directory)
            except ShareLogError:
                self._release_lock()
                raise
            seqs = list_segments(self.directory)
            self._seq = seqs[-1] if seqs else 1
            path = segment_path(self.directory, self._seq)
            if path.exists():
                good = _valid_length(path)
                if good != path.stat().st_size:
                    os.truncate(path, good)
            self._fd = self.ops.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._size = os.fstat(self._fd).st_size
            self.ops.fsync_dir(self.directory)
            # What an earlier process wrote and the kernel still holds is made durable before
            # anything is read past it (ingest and the stream read only up to `synced`); if
            # that fsync fails, nothing of this segment counts as synced until one succeeds
            # (and writes are refused meanwhile, as after any fsync error).
            self.synced = LogPosition(self._seq, 0)
            self._dirty = True
            try:
                self.ops.fsync(self._fd)
            except OSError as exc:
                self.sync_errors += 1
                self.sync_error = f"fsync failed: {exc.strerror or exc} (errno {exc.errno})"
            else:
                self._dirty = False
                self.synced = LogPosition(self._seq, self._size)
        except OSError as exc:
            raise ShareLogError(f"cannot open share log in {self.directory}: {exc}") from exc

    def _take_lock(self) -> None:
        if self._lock_fd >= 0:
            return
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ShareLogError(
                f"the share log in {self.directory} is in use by another process: two daemons "
                "(or two workers) must never share a [sharelog] path"
            ) from None
        self._lock_fd = fd

    def start_group_commit(self, interval_s: float) -> None:
        """fsync flushed records every `interval_s` from a background thread."""

        def run() -> None:
            while not self._stop_commit.is_set():
                self._wake.wait(interval_s)
                self._wake.clear()
                if self._stop_commit.is_set():
                    break
                # An fsync error must not end this thread: it is kept in `sync_error` (writes
                # are refused meanwhile) and the fsync is tried again next interval.
                with contextlib.suppress(ShareLogError):
                    self.sync()

        self._stop_commit.clear()
        self._committer = threading.Thread(target=run, name="sharelog-fsync", daemon=True)
        self._committer.start()

    def close(self) -> None:
        """Stop group commit, flush, fsync and close. Safe to call twice."""
        if self._committer is not None:
            self._stop_commit.set()
            self._wake.set()
            self._committer.join()
            self._committer = None
        if self._fd < 0:
            self._release_lock()
            return
        self.flush()
        self.sync()
        with self._lock:
            os.close(self._fd)
            self._fd = -1
        self._release_lock()

    def abandon(self) -> None:
        """Drop the log as a kill -9 would (simulators): nothing more is flushed or synced;
        the file and the lock are closed, as the kernel closes them for a dead process."""
        self._stop_commit.set()
        self._pending.clear()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    # -- writing -----------------------------------------------------------------------------

    def append(self, record: Mapping[str, object]) -> None:
        """Queue one JSON record; it is written by the next `flush()`."""
        self.append_payload(orjson.dumps(record))

    def append_payload(self, payload: bytes) -> None:
        """Queue one encoded record (e.g. from `encode_share`)."""
        self.append_payloads([payload])

    def append_payloads(self, payloads: list[bytes]) -> None:
        """Queue several encoded records at once (the same framing as `append_payload`)."""
        pack, crc = FRAME.pack, zlib.crc32
        self._pending += b"".join([pack(len(p), crc(p)) + p for p in payloads])
        self.records_appended += len(payloads)

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    @property
    def error(self) -> str | None:
        """Why the log cannot take records right now (None: it can)."""
        return self.write_error or self.sync_error

    def flush(self) -> None:
        """Write queued records with one write(): from here they survive a kill -9.

        On failure raises `ShareLogError`: none of the queued records count (the segment is
        cut back to its last whole record) and the queue is empty."""
        if not self._pending:
            return
        if self._fd < 0:
            raise ShareLogError("share log is not open")
        pending, self._pending = self._pending, bytearray()
        if self.sync_error is not None:
            raise ShareLogError(f"share log fsync is failing: {self.sync_error}")
        size = len(pending)
        try:
            if self._torn:
                self._cut_tail()
            n = self.ops.write(self._fd, pending)
            if n < size:
                with memoryview(pending) as view:
                    while n < size:
                        n += self.ops.write(self._fd, view[n:])
        except OSError as exc:
            self.write_errors += 1
            self.write_error = f"{exc.strerror or exc} (errno {exc.errno})"
            self._torn = True
            with contextlib.suppress(OSError):
                self._cut_tail()
            raise ShareLogError(f"share log write failed: {self.write_error}") from exc
        self.write_error = None
        self._size += size
        self.bytes_written += size
        self._dirty = True
        if self._size >= self.segment_bytes:
            try:
                self._rotate()
            except OSError as exc:  # the records are written; rotation is tried again
                self.sync_error = f"cannot start a new segment: {exc}"
                self.sync_errors += 1

    def request_sync(self) -> None:
        """Ask the group-commit thread to fsync now, not at its next interval."""
        self._wake.set()

    def _cut_tail(self) -> None:
        """Cut the segment back to the end of its last whole record (after a failed write)."""
        self.ops.ftruncate(self._fd, self._size)
        self._torn = False

    def sync(self) -> bool:
        """fsync what was flushed. Thread-safe; returns False when there was nothing to do.

        Raises `ShareLogError` when the fsync fails; it is retried by the next call."""
        with self._lock:
            if not self._dirty or self._fd < 0:
                return False
            # Written before this fsync (the loop thread counts a write after it is made).
            covers = LogPosition(self._seq, self._size)
            try:
                self.ops.fdatasync(self._fd)  # data and the size that finds it; not the mtime
            except OSError as exc:
                self.sync_errors += 1
                self.sync_error = f"fsync failed: {exc.strerror or exc} (errno {exc.errno})"
                raise ShareLogError(f"share log {self.sync_error}") from exc
            self._dirty = False
            self.sync_error = None
            self.syncs += 1
            self.synced = covers
        if self.on_synced is not None:
            self.on_synced(covers)
        return True

    def _rotate(self) -> None:
        """Start the next segment: the old one is fsynced first, and nothing changes unless
        both that and opening the new one succeed."""
        with self._lock:
            self.ops.fsync(self._fd)
            self.synced = LogPosition(self._seq, self._size)
            path = segment_path(self.directory, self._seq + 1)
            fd = self.ops.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.close(self._fd)
            self._fd = fd
            self._dirty = False
            self._seq += 1
            self._size = 0
            self.sync_error = None
        self.ops.fsync_dir(self.directory)
        if self.on_synced is not None:
            self.on_synced(self.synced)

    def prune(self, keep_from: int | None, now: float | None = None) -> list[Path]:
        """Delete closed segments older than the retention period that every consumer is
        past: `keep_from` is the oldest segment still needed (the ingest checkpoint's); None
        (not known yet) deletes nothing. Nothing from the segment `hold` names on is deleted
        either. Returns what was removed."""
        if keep_from is None:
            return []
        held = self.hold() if self.hold is not None else None
        if held is not None:
            keep_from = min(keep_from, held)
        cutoff = (time.time() if now is None else now) - self.retention_s
        return prune_segments(
            self.directory, below_segment=min(keep_from, self._seq), older_than=cutoff
        )

    @property
    def position(self) -> LogPosition:
        return LogPosition(self._seq, self._size)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
