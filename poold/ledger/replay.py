"""Replay: recompute from the retained share log what the ledger should hold, and compare.

Two checks, both exact:
  1. slices: every share the log holds up to the node's ingest checkpoint, summed per
     (account, worker, minute, bits), equals what the ledger's slices of that node sum to
     (nothing lost, nothing doubled, nothing altered), and so does the difficulty FPPS
     credits (each share capped at the network difficulty);
  2. block credits: every settled PPLNS, PROP or SOLO block whose input lies inside the
     retained log is split again from the log (`window.window_shares` / `window.round_rows`,
     the same rules; SOLO's finder from the log's block record) and compared with the
     journal's credits, fee and unallocated for that block.
When older segments were pruned, the first retained minute is left out (it may be partial) and
blocks whose window (or round) reaches before the log are reported as not checkable. Several
nodes (`replay_nodes`): each node's slices against its own log, the blocks against all the
logs together. Reads only; imports the share log reader, never the Stratum side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from accounting import pplns_split, prop_split, solo_split
from poold.chain.targets import network_difficulty
from poold.ledger import journal
from poold.ledger.db import ledger_entry
from poold.ledger.models import (
    Account,
    Block,
    IngestCheckpoint,
    JournalLine,
    Settlement,
    ShareSlice,
    Worker,
)
from poold.ledger.settle import BLOCK_KEYS, exclusions
from poold.ledger.slices.window import SliceRow, minute_of, round_rows, window_shares
from poold.shares.format import BlockRecord, ShareFields
from poold.shares.log import LogPosition, list_segments, scan_from, segment_path

Key = tuple[str, str, int, int]  # account, worker, minute start (s), bits
SPLIT_SCHEMES = ("pplns", "prop", "solo")  # schemes whose blocks credit miners


@dataclass
class ReplayReport:
    shares: int = 0
    slices: int = 0
    blocks_checked: int = 0
    blocks_not_checkable: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_log(
    sharelog: Path,
    until: LogPosition,
    progress: Callable[[int, int], None] | None,
    finders: dict[str, str] | None = None,
) -> tuple[dict[Key, list[Fraction | int]], int, int]:
    """Sum the log's shares per slice key up to `until`: (sums, shares, first segment); each
    block record's finding account goes into `finders` (by block hash)."""
    segs = [s for s in list_segments(sharelog) if s <= until.segment] if sharelog.exists() else []
    if not segs:
        return {}, 0, 0
    sizes = {s: segment_path(sharelog, s).stat().st_size for s in segs}
    total = sum(min(sizes[s], until.offset) if s == until.segment else sizes[s] for s in segs)
    done_before = {s: sum(sizes[t] for t in segs if t < s) for s in segs}
    sums: dict[Key, list[Fraction | int]] = {}
    shares = 0
    nets: dict[int, Fraction] = {}
    for n, (after, rec) in enumerate(scan_from(sharelog, LogPosition(segs[0], 0))):
        if (after.segment, after.offset) > (until.segment, until.offset):
            break
        if isinstance(rec, ShareFields):
            shares += 1
            key = (rec.account.decode(), rec.worker.decode(), rec.ts_ms // 60_000 * 60, rec.bits)
            if rec.bits not in nets:
                nets[rec.bits] = network_difficulty(rec.bits)
            acc = sums.setdefault(key, [Fraction(0), 0, Fraction(0)])
            diff = Fraction(rec.diff_num, rec.diff_den)
            acc[0] += diff
            acc[1] += 1
            acc[2] += min(diff, nets[rec.bits])
        elif finders is not None and rec.get("t") == "block":
            block = BlockRecord.from_json(rec)
            finders[block.hash] = block.account
        if progress is not None and n % 50_000 == 0:
            progress(done_before.get(after.segment, 0) + after.offset, total)
    if progress is not None:
        progress(total, total)
    return sums, shares, segs[0]


def _ledger_slices(engine: Engine, node_id: int) -> dict[Key, list[Fraction | int]]:
    sums: dict[Key, list[Fraction | int]] = {}
    with engine.connect() as conn:
        for a, w, t, b, num, den, n, c_num, c_den in conn.execute(
            select(
                Account.name,
                Worker.name,
                ShareSlice.slice_start,
                ShareSlice.bits,
                ShareSlice.diff_num,
                ShareSlice.diff_den,
                ShareSlice.shares,
                ShareSlice.credit_num,
                ShareSlice.credit_den,
            )
            .join(Account, ShareSlice.account_id == Account.id)
            .join(Worker, ShareSlice.worker_id == Worker.id)
            .where(ShareSlice.node_id == node_id)
        ):
            acc = sums.setdefault((a, w, int(t), int(b)), [Fraction(0), 0, Fraction(0)])
            diff = Fraction(int(num), int(den))
            acc[0] += diff
            acc[1] += int(n)
            acc[2] += diff if c_num is None or c_den is None else Fraction(c_num, c_den)
    return sums


@ledger_entry
def replay(
    engine: Engine,
    sharelog: Path,
    node_id: int,
    *,
    pool_fee: Fraction,
    factor: Fraction = Fraction(2),
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """`replay_nodes` over one node's share log."""
    return replay_nodes(
        engine, [(sharelog, node_id)], pool_fee=pool_fee, factor=factor, progress=progress
    )


@ledger_entry
def replay_nodes(
    engine: Engine,
    sources: Sequence[tuple[Path, int]],
    *,
    pool_fee: Fraction,
    factor: Fraction = Fraction(2),
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Replay several nodes' share logs (directory, node id) against one ledger: each node's
    slices against its own log, and every block against the rule over all of them. Blocks
    are checkable only when every node with slices in the ledger is among `sources`."""
    report = ReplayReport()
    wanted = {node_id for _path, node_id in sources}
    with engine.connect() as conn:
        cps = {
            int(n): LogPosition(int(seg), int(off))
            for n, seg, off in conn.execute(
                select(IngestCheckpoint.node_id, IngestCheckpoint.segment, IngestCheckpoint.offset)
            )
        }
        other_nodes = conn.execute(
            select(ShareSlice.node_id).where(ShareSlice.node_id.not_in(wanted)).limit(1)
        ).first()
    finders: dict[str, str] = {}
    merged: dict[Key, list[Fraction | int]] = {}
    per_node: dict[int, tuple[Path, dict[Key, list[Fraction | int]]]] = {}
    pruned, first_minute = False, 0
    for sharelog, node_id in sources:
        if node_id not in cps:
            report.problems.append(f"node {node_id} has never been ingested: nothing to compare")
            continue
        logged, shares, first_seg = _read_log(sharelog, cps[node_id], progress, finders)
        report.shares += shares
        node_pruned = first_seg > 1
        node_first = min((k[2] for k in logged), default=0)
        _compare_slices(logged, _ledger_slices(engine, node_id), node_pruned, node_first, report)
        report.slices += len(logged)
        per_node[node_id] = (sharelog, logged)
        if node_pruned:  # the latest first minute of a pruned log bounds every block check
            pruned, first_minute = True, max(first_minute, node_first)
        elif not pruned:
            first_minute = min(first_minute, node_first) if merged else node_first
        for key, (diff, count, _credited) in logged.items():
            acc = merged.setdefault(key, [Fraction(0), 0])
            acc[0] += diff
            acc[1] += count
    if report.problems and not merged:
        return report
    if other_nodes is not None:
        report.blocks_not_checkable.append(
            f"all: the ledger holds slices of node {other_nodes[0]}, whose log was not given"
        )
        return report

    read_then: dict[tuple[int, int, int], dict[Key, list[Fraction | int]]] = {}

    def as_counted(key: str, excl: dict[int, tuple[int, int, int]]) -> dict[Key, Any]:
        """The logs as settlement `key` counted them: each node it was made without, only
        up to where that node was ingested then (each such prefix read once)."""
        out = {k: list(v) for k, v in merged.items()}
        for node_id, (_sid, segment, offset) in excl.items():
            if node_id not in per_node:
                continue
            path, full = per_node[node_id]
            if (node_id, segment, offset) not in read_then:
                read_then[(node_id, segment, offset)] = _read_log(
                    path, LogPosition(segment, offset), None
                )[0]
            then = read_then[(node_id, segment, offset)]
            for k, (diff, count, *_c) in full.items():
                acc = out[k]
                acc[0] -= diff
                acc[1] -= count
            for k, (diff, count, *_c) in then.items():
                acc = out.setdefault(k, [Fraction(0), 0])
                acc[0] += diff
                acc[1] += count
        return {k: v for k, v in out.items() if v[1]}

    _check_blocks(
        engine, merged, finders, first_minute, pruned, pool_fee, factor, report, as_counted
    )
    return report


def _compare_slices(
    logged: dict[Key, list[Fraction | int]],
    ledger: dict[Key, list[Fraction | int]],
    pruned: bool,
    first_minute: int,
    report: ReplayReport,
) -> None:
    def comparable(key: Key) -> bool:
        return key[2] > first_minute if pruned else key[2] >= first_minute

    for key in sorted(set(logged) | set(ledger)):
        if not comparable(key):
            continue
        want, have = logged.get(key), ledger.get(key)
        if want != have:
            a, w, t, b = key
            report.problems.append(
                f"slice {a}.{w} minute {t} bits {b:08x}: the log has "
                f"{_describe(want)}, the ledger {_describe(have)}"
            )


def _describe(v: list[Fraction | int] | None) -> str:
    return "nothing" if v is None else f"{v[1]} shares of difficulty {v[0]} (credited {v[2]})"


def _check_blocks(
    engine: Engine,
    logged: dict[Key, list[Fraction | int]],
    finders: dict[str, str],
    first_minute: int,
    pruned: bool,
    pool_fee: Fraction,
    factor: Fraction,
    report: ReplayReport,
    as_counted: Callable[[str, dict[int, tuple[int, int, int]]], dict[Key, Any]],
) -> None:
    # Over a pruned log the first minute may be partial: leave it out, and check only blocks
    # whose window fills before reaching it.
    with engine.connect() as conn:
        # The window's order uses the ledger's ids; names it never saw sort last.
        accounts = {n: int(i) for i, n in conn.execute(select(Account.id, Account.name))}
        workers = {
            (a, w): int(i)
            for i, a, w in conn.execute(
                select(Worker.id, Account.name, Worker.name).join(
                    Account, Worker.account_id == Account.id
                )
            )
        }
        unknown = 1 << 40
        for a, w, _t, _b in logged:
            if a not in accounts:
                accounts[a] = unknown = unknown + 1
            if (a, w) not in workers:
                workers[(a, w)] = unknown = unknown + 1
        names = {i: n for n, i in accounts.items()}

        def rows_of(source: dict[Key, Any]) -> list[SliceRow]:
            return [
                (t, accounts[a], workers[(a, w)], b, Fraction(v[0]))
                for (a, w, t, b), v in source.items()
                if not pruned or t > first_minute
            ]

        all_rows = rows_of(logged)
        accepted = sorted(
            int(t) for (t,) in conn.execute(select(Block.found_ms).where(Block.accepted.is_(True)))
        )
        blocks = conn.execute(
            select(
                Block.hash, Block.reward_sat, Block.found_ms, Settlement.key, Settlement.entry_id
            )
            .join(
                Settlement,
                or_(*(Settlement.key == BLOCK_KEYS[s] + Block.hash for s in SPLIT_SCHEMES)),
            )
            .order_by(Block.found_ms)
        ).all()
        for block_hash, reward, found_ms, key, entry_id in blocks:
            excl = exclusions(conn, key)
            rows = rows_of(as_counted(key, excl)) if excl else all_rows
            scheme = key.split(":", 1)[0]
            if scheme == "solo":
                if block_hash not in finders:
                    if pruned:
                        report.blocks_not_checkable.append(block_hash)
                    else:
                        report.problems.append(f"block {block_hash}: not in the share log")
                    continue
                split = solo_split(int(reward), finders[block_hash], pool_fee=pool_fee)
            elif scheme == "prop":
                last = minute_of(found_ms)
                before = [t for t in accepted if t < last * 1000]
                after = minute_of(before[-1]) if before else None
                if pruned and (after is None or after < first_minute):
                    report.blocks_not_checkable.append(block_hash)  # round reaches before the log
                    continue
                split = prop_split(
                    int(reward), round_rows(rows, found_ms, after, names), pool_fee=pool_fee
                )
            else:
                window = window_shares(rows, found_ms, names)
                split = pplns_split(int(reward), window, factor=factor, pool_fee=pool_fee)
                if pruned and sum(split.scores.values(), Fraction(0)) < factor:
                    report.blocks_not_checkable.append(block_hash)  # reaches into deleted segments
                    continue
            lines = {
                a: int(v)
                for a, v in conn.execute(
                    select(JournalLine.account, JournalLine.amount_sat).where(
                        JournalLine.entry_id == entry_id
                    )
                )
            }
            posted = {
                miner: -int(v)
                for k, v in lines.items()
                if (miner := journal.miner_of(k)) is not None
            }
            expect = {a: c for a, c in split.credits.items() if c}
            fee = -int(lines.get(journal.pool("fee"), 0))
            rest = -int(lines.get(journal.pool("unallocated"), 0))
            if (posted, fee, rest) != (expect, split.pool_fee_sat, split.unallocated_sat):
                diff = sorted(
                    a for a in set(posted) | set(expect) if posted.get(a, 0) != expect.get(a, 0)
                )
                report.problems.append(
                    f"block {block_hash}: journal credits differ from the replay for "
                    f"{', '.join(diff) or 'no account'} (fee {fee} vs {split.pool_fee_sat}, "
                    f"unallocated {rest} vs {split.unallocated_sat})"
                )
            report.blocks_checked += 1
