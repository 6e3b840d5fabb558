"""The share writer: the Stratum server's ShareSink, in front of the share log.

Every accepted share goes to the log before its `true` reply; a block is handed to the block
submitter at once; block records are written in order after their finding share. Heartbeats
(`format.Beat`) say how far the log is complete: one before the first share of each new
minute, one whenever the daemon calls `beat` (every second, so an idle node still
advances), a final one at a clean stop. A worker record (`format.WorkerInfo`: user agent,
best share) follows a worker's first share in this process and every share that beats its
best or comes with another agent: a handful per worker, whatever its share rate. At most once
a minute, a rejects record carries the shares rejected since the last one. Every job is
written once (`format.JobRecord`), in the same write as and before its first share here, and
every share record carries its header hash: any accepted share can be rebuilt into its
80-byte header from the log alone (the work proof samples them). Imports the
share log and its format, and the session's share type; never the ledger or the API.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable

import orjson
import structlog

from poold.jobs.job import Job
from poold.metrics import Metrics
from poold.shares.accepted import AcceptedShare
from poold.shares.format import Beat, BlockRecord, JobRecord, Rejects, WorkerInfo, encode_share
from poold.shares.log import LogPosition, ShareLog, ShareLogError

log = structlog.get_logger(__name__)

#: The error a miner gets instead of `true` when its share could not be recorded.
NOT_RECORDED = "share not recorded (pool storage error): not credited"
#: The error instead of `true` while the stream lags past `[stream] max_lag_s`.
NOT_SHIPPED = "share not recorded (pool replication behind): not credited"
#: Workers whose best share and agent one writer remembers (and worker records it holds).
MAX_WORKERS = 200_000
REJECTS_EVERY_MS = 60_000
#: Job keys one writer remembers as logged (a forgotten one is logged again: readers keep
#: the first record of a key, and every record of a key is the same job).
MAX_LOGGED_JOBS = 4096


class ShareWriter:
    """The ShareSink: every accepted share goes to the share log; blocks are submitted at once.

    Shares accepted during one loop iteration are encoded together by `flush()`, which the
    server calls before it sends their replies (one write() for the batch). Anything that
    writes to the share log goes through `flush()` so records keep their order.

    When the log cannot take a batch (disk full, I/O error, fsync failing) every share of it
    has its unsent `true` replaced by an error, so no miner is told a share was recorded that
    was not; block records are held and written by the next flush that succeeds.
    """

    def __init__(
        self,
        sharelog: ShareLog,
        metrics: Metrics,
        node_id: int,
        submit_block: Callable[[AcceptedShare, str], None],
    ) -> None:
        self.sharelog = sharelog
        self.metrics = metrics
        self.node_id = node_id
        self.submit_block = submit_block
        self._batch: list[AcceptedShare] = []
        # Block records the log has not taken yet, with when their blocks were found (ms).
        self._held: list[tuple[int, bytes]] = []
        self.failing: str | None = None  # why the last write failed (None: it succeeded)
        # When the oldest block whose record is not in the log was found (the block submitter
        # tells; the daemon wires it): no heartbeat may promise a time past it.
        self.unrecorded_since: Callable[[], int | None] = lambda: None
        self._minute_ms = 0  # start of the newest minute a written share or heartbeat reached
        # (account, worker) -> (best hash here so far, agent); worker records to write.
        self._workers: dict[tuple[str, str], tuple[int, str]] = {}
        self._info: list[bytes] = []
        # Rejected shares per account and reason already written to the log; when next due.
        self._rejects_written: dict[str, dict[str, int]] = {}
        self._rejects_due_ms = 0
        # Why shares must be refused right now (the daemon wires the stream's lag bound):
        # None lets them through. Asked once per batch.
        self.refusal: Callable[[], str | None] = lambda: None
        self.refused_batches = 0
        # `[sharelog] reply_after = "fsync"`: replies wait for the fsync covering their
        # batch; (log position the batch ends at, the send), oldest first.
        self.reply_after_fsync = False
        self._held_replies: deque[tuple[tuple[int, int], Callable[[], None]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Job keys whose record is in the log (or in the write being made).
        self._jobs_logged: set[str] = set()

    def share_accepted(self, share: AcceptedShare) -> None:
        self._batch.append(share)
        v = share.verdict
        key = (share.account, share.worker)
        known = self._workers.get(key)
        agent = share.session.agent
        if known is None or v.hash_int < known[0] or agent != known[1]:
            best = v.hash_int if known is None else min(v.hash_int, known[0])
            if len(self._workers) >= MAX_WORKERS:
                self._workers.clear()  # bounded: a forgotten worker is written once more
            self._workers[key] = (best, agent)
            info = WorkerInfo(
                int(share.time * 1000),
                self.node_id,
                share.account,
                share.worker,
                agent,
                best.to_bytes(32, "big").hex(),
            )
            if len(self._info) < MAX_WORKERS:  # held while the log fails: bounded too
                self._info.append(orjson.dumps(info.to_json()))
        if v.is_block:
            self.metrics.blocks_found += 1
            block = share.job.block(v.header, share.extranonce1, share.extranonce2)
            self.submit_block(share, block.hex())

    def record_block(self, record: BlockRecord) -> None:
        """Queue a block record; written by the next `flush()`, held until one succeeds."""
        self._held.append((record.ts_ms, orjson.dumps(record.to_json())))

    @property
    def held_blocks(self) -> int:
        """Block records waiting for the share log to take writes again."""
        return len(self._held)

    def oldest_held_ms(self) -> int | None:
        """When the oldest block whose record the log has not taken was found."""
        return min((found for found, _payload in self._held), default=None)

    def held_records(self) -> list[str]:
        return [payload.decode() for _found, payload in self._held]

    def _through(self, ms: int) -> int:
        unrecorded = self.unrecorded_since()
        return ms if unrecorded is None else min(ms, unrecorded)

    def _beat(self, ts_ms: int, through_ms: int, final: bool = False) -> bytes:
        return orjson.dumps(Beat(ts_ms, self.node_id, through_ms, final).to_json())

    def beat(self, now_ms: int, *, final: bool = False) -> None:
        """Write a heartbeat after everything accepted so far: every share and block before
        `now_ms` (or before the oldest block not recorded yet) is in the log before it."""
        if final or now_ms >= self._rejects_due_ms:
            self._rejects_due_ms = now_ms + REJECTS_EVERY_MS
            self._queue_rejects(now_ms)
        self.flush(beat=(now_ms, final))

    def _queue_rejects(self, now_ms: int) -> None:
        """Queue a record of the shares rejected since the last one (none: nothing)."""
        delta: dict[str, dict[str, int]] = {}
        for account, counts in self.metrics.rejected_by_account.items():
            done = self._rejects_written.setdefault(account, {})
            for reason, n in counts.items():
                if n > done.get(reason, 0):
                    delta.setdefault(account, {})[reason] = n - done.get(reason, 0)
                    done[reason] = n
        if delta:
            self._info.append(orjson.dumps(Rejects(now_ms, self.node_id, delta).to_json()))

    def flush(self, beat: tuple[int, bool] | None = None) -> None:
        """Encode the batch into the share log and write it (from here it survives kill -9)."""
        batch, self._batch = self._batch, []
        if batch and self.refusal() is not None:
            # Neither credited nor lost: the miner is told, nothing of them is logged.
            for share in batch:
                share.session.revoke(share, NOT_SHIPPED)
            self.refused_batches += 1
            batch = []
        encoded, batch = self._encode(batch) if batch else ([], batch)
        new_jobs = self._new_jobs(batch) if batch else []
        minute = self._minute_ms
        lead = 0  # heartbeats before the batch's first share
        if batch and int(batch[-1].time * 1000) // 60_000 * 60_000 > minute:
            # A share of a new minute: a heartbeat right before it closes the minutes before
            # (ingest writes closed minutes only, so no minute is written twice). Once a
            # minute, so a plain loop.
            merged: list[bytes] = []
            for payload, share in zip(encoded, batch, strict=True):
                ts = int(share.time * 1000)
                if ts // 60_000 * 60_000 > minute:
                    minute = ts // 60_000 * 60_000
                    if not merged:
                        lead = 1
                    merged.append(self._beat(ts, self._through(minute)))
                merged.append(payload)
            encoded = merged
        if new_jobs:
            # Jobs before their first shares (after a heartbeat that opens the batch).
            jobs = [orjson.dumps(self._job_record(j, t).to_json()) for j, t in new_jobs]
            encoded = encoded[:lead] + jobs + encoded[lead:]
        # A finding share, then its block; worker records after the shares they describe.
        payloads = encoded + [p for _found, p in self._held] + self._info
        if beat is not None:
            payloads.append(self._beat(beat[0], self._through(beat[0]), beat[1]))
            minute = max(minute, beat[0] // 60_000 * 60_000)
        if not payloads:
            return
        try:
            self.sharelog.append_payloads(payloads)
            self.sharelog.flush()
        except ShareLogError as exc:
            self._jobs_logged.difference_update(j.job_id for j, _t in new_jobs)
            for share in batch:
                share.session.revoke(share, NOT_RECORDED)
            if self.failing is None:
                log.error("sharelog_write_failed", error=str(exc), refused_shares=len(batch))
            self.failing = str(exc)
            self.metrics.sharelog_failed_batches += 1
            self.metrics.sharelog_ok = 0
            return
        self._held = []
        self._info = []
        self._minute_ms = minute
        if self.failing is not None:
            log.warning("sharelog_recovered", after=self.failing)
            self.failing = None
            self.metrics.sharelog_ok = 1

    def before_reply(self) -> Callable[[Callable[[], None]], None] | None:
        """The server's hook before it sends a loop iteration's replies: the batch is written
        (`flush`); in the fsync mode the server is handed where to leave the send, which
        runs once the group commit's fdatasync covers the batch."""
        self.flush()
        if not self.reply_after_fsync:
            return None
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._after_sync

    def _after_sync(self, send: Callable[[], None]) -> None:
        pos = self.sharelog.position
        key = (pos.segment, pos.offset)
        synced = self.sharelog.synced
        if not self._held_replies and (synced.segment, synced.offset) >= key:
            send()
            return
        self._held_replies.append((key, send))
        self.sharelog.request_sync()

    def on_synced(self, pos: LogPosition) -> None:
        """The share log's fsync covered `pos` (called from the syncing thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._release, (pos.segment, pos.offset))

    def _release(self, key: tuple[int, int]) -> None:
        held = self._held_replies
        while held and held[0][0] <= key:
            held.popleft()[1]()

    @property
    def replies_waiting(self) -> int:
        """Reply batches waiting for an fsync (the fsync mode)."""
        return len(self._held_replies)

    def _new_jobs(self, batch: list[AcceptedShare]) -> list[tuple[Job, float]]:
        """The jobs of `batch` whose record is not in the log yet, in order, with the time of
        their first share here (marked logged)."""
        logged: set[str] = self._jobs_logged
        new: list[tuple[Job, float]] = []
        last = None
        for s in batch:
            job = s.job
            if job is last:
                continue
            last = job
            if job.job_id not in logged:
                if len(logged) >= MAX_LOGGED_JOBS:
                    logged.clear()
                logged.add(job.job_id)
                new.append((job, s.time))
        return new

    def _job_record(self, job: Job, first: float) -> JobRecord:
        t, cb = job.template, job.coinbase
        return JobRecord(
            int(first * 1000),
            self.node_id,
            job.job_id,
            job.height,
            t.prev_hash,
            t.version,
            job.bits,
            job.ntime,
            cb.coinb1,
            cb.coinb2,
            job.branch,
        )

    def _encode(self, batch: list[AcceptedShare]) -> tuple[list[bytes], list[AcceptedShare]]:
        """The batch's records, and the shares they are (a share that cannot be encoded is a
        bug: it is logged and answered with an error, and the others are kept)."""
        node = self.node_id
        try:
            return [_encode(s, node) for s in batch], batch
        except (struct.error, ValueError):
            pass
        payloads, kept = [], []
        for s in batch:
            try:
                payloads.append(_encode(s, node))
            except (struct.error, ValueError):
                log.exception("share_not_encodable", account=s.account, worker=s.worker)
                s.session.revoke(s, NOT_RECORDED)
            else:
                kept.append(s)
        return payloads, kept


def _encode(s: AcceptedShare, node: int) -> bytes:
    return encode_share(  # positional, in encode_share's order: the hot path
        int(s.time * 1000),
        node,
        s.account,
        s.worker,
        s.job.job_id,
        s.job.height,
        s.job.bits,
        s.difficulty.numerator,
        s.difficulty.denominator,
        s.extranonce1,
        s.extranonce2,
        s.ntime,
        s.nonce,
        s.verdict.version,
        s.verdict.is_block,
        s.verdict.hash_int.to_bytes(32, "little"),
    )
