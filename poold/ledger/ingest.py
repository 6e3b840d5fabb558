"""Share log -> share slices, exactly once.

Each batch aggregates records into slices (worker x minute x network bits) in memory and
writes them, the blocks it saw, and the new log position in ONE transaction: a crash before
the commit leaves the checkpoint where it was, so the batch is read again and nothing is
counted twice; a crash after it leaves nothing to redo. One checkpoint row per node id, so
several stratum daemons can feed one PostgreSQL ledger. Bulk writes (COPY on PostgreSQL,
executemany on SQLite), one commit per batch, never one per share.

The checkpoint also keeps the node's watermark: the `through` time of the newest heartbeat
ingested (every share and block of the node before it is in the ledger). `closed_only`
(the daemon's mode) writes closed minutes only: a batch that reached the end of the log
is cut at the first heartbeat that closed the newest minute, so each (worker, minute)
becomes one slice row rather than one per ingest pass. Must not import the Stratum or node
packages: it only reads the share log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from poold.ledger.db import LedgerError, copy_columns, insert_new, ledger_entry
from poold.ledger.models import (
    Account,
    Block,
    IngestCheckpoint,
    RejectCount,
    ShareSlice,
    Worker,
)
from poold.ledger.slices import sums as slice_sums
from poold.ledger.slices.build import SliceColumns, slices_from_arrays, slices_from_tuples
from poold.shares.format import Beat, BlockRecord, RecordError, Rejects, WorkerInfo
from poold.shares.log import (
    LogPosition,
    ShareLogGap,
    check_contiguous,
    list_segments,
    segment_path,
)
from poold.shares.scan import ArrayBatch, read_arrays


@dataclass(frozen=True)
class IngestResult:
    records: int
    shares: int
    slices: int
    blocks: int
    position: LogPosition
    through_ms: int = 0  # the node's watermark after this run


def _worker_infos(
    conn: Connection, infos: list[WorkerInfo], ids: dict[tuple[str, str], tuple[int, int]]
) -> None:
    """Fold worker records into `workers`: the newest user agent, the best share ever (the
    smallest hash), when last heard of. Idempotent: replaying a record changes nothing."""
    merged: dict[int, tuple[int, str, str]] = {}  # worker id -> (seen ms, agent, best hash)
    for i in sorted(infos, key=lambda i: i.ts_ms):
        wid = ids[(i.account, i.worker)][0]
        had = merged.get(wid)
        merged[wid] = (i.ts_ms, i.agent[:128], i.best if had is None else min(had[2], i.best))
    wids = list(merged)
    current: dict[int, tuple[int | None, str | None, str | None]] = {}
    for k in range(0, len(wids), 5_000):
        for wid, seen, agent, best in conn.execute(
            select(Worker.id, Worker.seen_ms, Worker.user_agent, Worker.best_hash).where(
                Worker.id.in_(wids[k : k + 5_000])
            )
        ):
            current[int(wid)] = (seen, agent, best)
    rows = []
    for wid, (seen, agent, best) in merged.items():
        old_seen, old_agent, old_best = current.get(wid, (None, None, None))
        newer = old_seen is None or seen >= old_seen
        rows.append(
            {
                "wid": wid,
                "v_seen": seen if newer else old_seen,
                "v_agent": agent if newer else old_agent,
                "v_best": best if old_best is None else min(best, old_best),
            }
        )
    conn.execute(
        update(Worker)
        .where(Worker.id == bindparam("wid"))
        .values(
            seen_ms=bindparam("v_seen"),
            user_agent=bindparam("v_agent"),
            best_hash=bindparam("v_best"),
        ),
        rows,
    )


def _add_rejects(conn: Connection, records: list[Rejects]) -> None:
    """Add the batch's rejected-share counts (exactly once: in the checkpoint's transaction)."""
    added: dict[tuple[str, str], int] = {}
    for rec in records:
        for account, counts in rec.counts.items():
            for reason, n in counts.items():
                key = (account[:128], reason[:32])
                added[key] = added.get(key, 0) + n
    names = sorted({a for a, _r in added})
    have: set[tuple[str, str]] = set()
    for i in range(0, len(names), 5_000):  # PostgreSQL takes at most 65,535 parameters
        have |= {
            (a, r)
            for a, r in conn.execute(
                select(RejectCount.account, RejectCount.reason).where(
                    RejectCount.account.in_(names[i : i + 5_000])
                )
            )
        }
    for (account, reason), n in added.items():
        if (account, reason) in have:
            conn.execute(
                update(RejectCount)
                .where(RejectCount.account == account, RejectCount.reason == reason)
                .values(count=RejectCount.count + n)
            )
        else:
            conn.execute(insert(RejectCount).values(account=account, reason=reason, count=n))


def _beats(batch: ArrayBatch) -> list[tuple[int, Beat]]:
    """(index into `others`, heartbeat) of every heartbeat in the batch."""
    try:
        return [
            (i, Beat.from_json(rec)) for i, rec in enumerate(batch.others) if rec.get("t") == "beat"
        ]
    except RecordError as exc:
        raise LedgerError(f"a heartbeat in the share log does not decode ({exc})") from None


def _cut(batch: ArrayBatch, through_ms: int) -> ArrayBatch | None:
    """The batch up to and including the first heartbeat that closed its newest minute;
    None if no heartbeat in it closes a minute past `through_ms`'s (nothing to write yet)."""
    beats = _beats(batch)
    newest = max((b.through_ms // 60_000 for _i, b in beats), default=-1)
    if newest <= through_ms // 60_000:
        return None
    j = next(i for i, b in beats if b.through_ms // 60_000 == newest)
    mark = batch.marks[j]
    k = mark.shares
    return ArrayBatch(
        batch.ts_ms[:k],
        batch.bits[:k],
        batch.diff_num[:k],
        batch.diff_den[:k],
        batch.group[:k],
        batch.names,
        batch.others[: j + 1],
        mark.records,
        mark.position,
        batch.marks[: j + 1],
    )


def _block_status(accepted: bool | None) -> str:
    """pending (bitcoind took it), rejected, or unknown (the submission got no answer: block
    following asks the chain)."""
    if accepted is None:
        return "unknown"
    return "pending" if accepted else "rejected"


class _Names:
    """(account, worker) -> (worker id, account id) for one ingest run.

    Loaded once; names new in a batch are inserted in that batch's transaction and only
    remembered after it commits (a rolled-back batch must not leave ids behind)."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], tuple[int, int]] = {}
        self.loaded = False

    def resolve(
        self, conn: Connection, pairs: set[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, int]]:
        if not self.loaded:
            rows = conn.execute(
                select(Account.name, Worker.name, Worker.id, Account.id).join(
                    Account, Worker.account_id == Account.id
                )
            ).all()
            self.known = {(a, w): (wid, aid) for a, w, wid, aid in rows}
            self.loaded = True
        missing = sorted(pairs - self.known.keys())
        if not missing:
            return {}
        accounts = {a for a, _ in missing}
        have = {
            name: aid
            for name, aid in conn.execute(
                select(Account.name, Account.id).where(Account.name.in_(accounts))
            ).all()
        }
        new_accounts = sorted(accounts - have.keys())
        if new_accounts:  # another daemon may be adding the same names right now
            insert_new(conn, Account.__table__, [{"name": a} for a in new_accounts])  # type: ignore[arg-type]
            have.update(
                {
                    name: aid
                    for name, aid in conn.execute(
                        select(Account.name, Account.id).where(Account.name.in_(new_accounts))
                    ).all()
                }
            )
        insert_new(
            conn,
            Worker.__table__,  # type: ignore[arg-type]
            [{"account_id": have[a], "name": w} for a, w in missing],
        )
        added: dict[tuple[str, str], tuple[int, int]] = {}
        rows = conn.execute(
            select(Account.name, Worker.name, Worker.id, Account.id)
            .join(Account, Worker.account_id == Account.id)
            .where(Account.name.in_(accounts))
        ).all()
        wanted = set(missing)
        for a, w, wid, aid in rows:
            if (a, w) in wanted:
                added[(a, w)] = (wid, aid)
        return added


def _block_times(conn: Connection, batch: ArrayBatch, blocks: list[BlockRecord]) -> list[int]:
    """Where the batch's slices are cut: the times of the blocks found in its span, its own
    block records and those other nodes' ingests have already brought to the ledger. (A block
    of another node not in the ledger yet cuts nothing here: its slice counts in the round of
    its last share; see `slices.window.round_effort`.)"""
    if batch.ts_ms.shape[0] == 0:
        return []
    low, high = int(batch.ts_ms.min()), int(batch.ts_ms.max())
    known = conn.execute(
        select(Block.found_ms).where(Block.found_ms >= low, Block.found_ms < high)
    ).scalars()
    return sorted({int(t) for t in known} | {b.ts_ms for b in blocks if low <= b.ts_ms < high})


def _write_slices(
    conn: Connection,
    node_id: int,
    batch: ArrayBatch,
    group_ids: list[tuple[int, int]],
    cuts: list[int],
) -> int:
    """Aggregate the batch's shares into slices cut at `cuts` (block times, unix ms) and
    bulk-insert them; returns the row count."""
    ids = np.array(group_ids, dtype=np.int64).reshape(-1, 2)
    cols = slices_from_arrays(batch, ids[:, 0], ids[:, 1], cuts)
    if cols is None:  # a sort key wider than 64 bits: the plain loop
        by_name = dict(zip(batch.names, group_ids, strict=True))
        shares = [
            (t, b, x, d, *batch.names[g])
            for t, b, x, d, g in zip(
                batch.ts_ms.tolist(),
                batch.bits.tolist(),
                batch.diff_num.tolist(),
                batch.diff_den.tolist(),
                batch.group.tolist(),
                strict=True,
            )
        ]
        cols = SliceColumns.from_tuples(slices_from_tuples(shares, by_name, cuts))
    if len(cols):
        # The credited difficulty is NULL (equal to the difficulty) unless a share was over
        # the network difficulty: never on mainnet, so those columns are sent only if needed.
        credited = (
            [("credit_num", "text", cols.credit_num), ("credit_den", "text", cols.credit_den)]
            if any(c is not None for c in cols.credit_num)
            else []
        )
        copy_columns(
            conn,
            ShareSlice.__table__,  # type: ignore[arg-type]
            [
                *credited,
                ("node_id", "int4", np.full(len(cols), node_id, np.int64)),
                ("account_id", "int4", cols.account_id),
                ("worker_id", "int4", cols.worker_id),
                ("slice_start", "int8", cols.slice_start),
                ("bits", "int8", cols.bits),
                ("diff_num", "text", cols.diff_num),
                ("diff_den", "text", cols.diff_den),
                ("shares", "int4", cols.shares),
                ("first_ms", "int8", cols.first_ms),
                ("last_ms", "int8", cols.last_ms),
            ],
        )
    return len(cols)


def _check_position(sharelog: Path, segs: list[int], cp: LogPosition, node_id: int) -> None:
    """The ledger's checkpoint must lie inside this share log: otherwise the log was replaced
    or belongs to another node, and reading on from the checkpoint would skip its shares."""
    newest = segs[-1] if segs else 0
    size = segment_path(sharelog, cp.segment).stat().st_size if cp.segment in segs else None
    if cp.segment > newest or (size is not None and size < cp.offset):
        raise LedgerError(
            f"the share log at {sharelog} does not match the ledger's checkpoint for node "
            f"{node_id} (segment {cp.segment}, offset {cp.offset}; the log ends at segment "
            f"{newest}): is [sharelog] path or [stratum] node_id wrong? Nothing was ingested."
        )


@ledger_entry
def ingest(
    engine: Engine,
    sharelog: Path,
    node_id: int,
    *,
    batch_records: int = 100_000,
    before_commit: Callable[[], None] | None = None,
    closed_only: bool = False,
    until: LogPosition | None = None,
) -> IngestResult:
    """Ingest everything new in `sharelog` for `node_id` (with `closed_only`, everything up to
    the newest closed minute; never past `until`, the writer's fsynced position, when given);
    safe to run again at any time."""
    total = IngestResult(0, 0, 0, 0, LogPosition(0, 0))
    cache = _Names()
    while True:
        done = _ingest_batch(
            engine, sharelog, node_id, batch_records, before_commit, cache, closed_only, until
        )
        total = IngestResult(
            total.records + done.records,
            total.shares + done.shares,
            total.slices + done.slices,
            total.blocks + done.blocks,
            done.position,
            done.through_ms,
        )
        if done.records < batch_records:
            break
    # Fold the new slices into the window's sums now, in their own transaction, so a
    # settlement's fold stays small. The batches above are committed whatever happens here,
    # and any fold (the next ingest's, a settlement's) catches up what this one did not do.
    try:
        with engine.begin() as conn:
            slice_sums.fold(conn)
    except SQLAlchemyError as exc:
        raise LedgerError(
            f"ingest committed its batches, but folding slice sums failed: {exc}"
        ) from None
    return total


def _ingest_batch(
    engine: Engine,
    sharelog: Path,
    node_id: int,
    batch_records: int,
    before_commit: Callable[[], None] | None,
    cache: _Names,
    closed_only: bool,
    until: LogPosition | None = None,
) -> IngestResult:
    try:
        with engine.begin() as conn:
            # FOR UPDATE: two ingesters of one node serialize here (PostgreSQL; SQLite has one
            # writer anyway).
            cp = conn.execute(
                select(
                    IngestCheckpoint.segment,
                    IngestCheckpoint.offset,
                    IngestCheckpoint.records,
                    IngestCheckpoint.through_ms,
                )
                .where(IngestCheckpoint.node_id == node_id)
                .with_for_update()
            ).first()
            segs = list_segments(sharelog) if sharelog.exists() else []
            if cp is None:
                start, seen, through = LogPosition(1, 0), 0, 0  # every log starts at segment 1
            else:
                start, seen, through = LogPosition(cp[0], cp[1]), cp[2], cp[3]
                _check_position(sharelog, segs, start, node_id)
            if segs:
                try:  # a missing segment would be skipped in silence: its shares lost
                    check_contiguous(sharelog, segs, start.segment)
                except ShareLogGap as exc:
                    raise LedgerError(f"{exc}; nothing was ingested") from None
            try:
                batch = read_arrays(sharelog, start, batch_records, until)
                text = [(a.decode(), w.decode()) for a, w in batch.names]
            except ValueError as exc:  # a CRC-valid record that does not decode: a writer bug
                raise LedgerError(
                    f"the share log at {sharelog} has a record that does not decode ({exc}); "
                    "nothing from this batch was ingested"
                ) from None
            if closed_only and batch.records < batch_records:  # the end of the log: cut it
                cut = _cut(batch, through)
                if cut is None:
                    return IngestResult(0, 0, 0, 0, start, through)
                batch = cut
            beats = _beats(batch)
            n, pos, shares = batch.records, batch.position, len(batch.ts_ms)
            try:
                blocks = [
                    BlockRecord.from_json(rec) for rec in batch.others if rec.get("t") == "block"
                ]
                infos = [
                    WorkerInfo.from_json(rec) for rec in batch.others if rec.get("t") == "worker"
                ]
                rejects = [
                    Rejects.from_json(rec) for rec in batch.others if rec.get("t") == "rejects"
                ]
            except RecordError as exc:
                raise LedgerError(
                    f"the share log at {sharelog} has a record that does not decode "
                    f"({exc}); nothing from this batch was ingested"
                ) from None
            if n == 0:
                return IngestResult(0, 0, 0, 0, start, through)
            names = set(text) | {(b.account, b.worker) for b in blocks}
            names |= {(i.account, i.worker) for i in infos}
            added = cache.resolve(conn, names)
            ids = {**cache.known, **added}  # (account, worker) -> (worker id, account id)
            cuts = _block_times(conn, batch, blocks)
            n_slices = _write_slices(conn, node_id, batch, [ids[t] for t in text], cuts)
            fresh = [
                b
                for b in blocks
                if not conn.execute(select(Block.id).where(Block.hash == b.hash)).first()
            ]
            if fresh:
                conn.execute(
                    insert(Block),
                    [
                        {
                            "hash": b.hash,
                            "node_id": node_id,
                            "height": b.height,
                            "account_id": ids[(b.account, b.worker)][1],
                            "worker_id": ids[(b.account, b.worker)][0],
                            "reward_sat": b.reward_sat,
                            "bits": b.bits,
                            "found_ms": b.ts_ms,
                            "accepted": b.accepted is True,
                            "status": _block_status(b.accepted),
                            "reason": None if b.reason is None else b.reason[:200],
                            "commitment": b.commitment,
                            "credit_commitment": b.credit_commitment,
                        }
                        for b in fresh
                    ],
                )
            if infos:
                _worker_infos(conn, infos, ids)
            if rejects:
                _add_rejects(conn, rejects)
            row: dict[str, object] = {
                "segment": pos.segment,
                "offset": pos.offset,
                "records": seen + n,
            }
            if beats:
                through = max(through, *(b.through_ms for _i, b in beats))
                at, last = beats[-1]
                row |= {
                    "through_ms": through,
                    "beat_ms": last.ts_ms,
                    # The node's last heartbeat before a clean stop, with nothing after it.
                    "final": last.final and batch.marks[at].records == n,
                }
            if cp is None:
                conn.execute(insert(IngestCheckpoint), [{"node_id": node_id, **row}])
            else:
                conn.execute(
                    update(IngestCheckpoint)
                    .where(IngestCheckpoint.node_id == node_id)
                    .values(**row)
                )
            if before_commit is not None:
                before_commit()  # fault injection point for tests
            result = IngestResult(n, shares, n_slices, len(fresh), pos, through)
        cache.known.update(added)  # only now: the names are committed
        return result
    except SQLAlchemyError as exc:
        raise LedgerError(f"ingest failed, nothing from this batch was kept: {exc}") from None
