"""Proof of delivered hashrate, on the ledger's side: each settled token period's work root
(`accounting.work_proof`, over the leaf files `shares.leaves` wrote beside the share log) in
the period's published inputs, and, once the block `beacon_depth` after the first block
anchoring the period's commitment is mined, the published sample (`build_proof`): the k drawn
leaves with their paths, jobs and share fields, the headers from the period's tips to the
beacon, the anchor's evidence, the links just before the period and the fleet's account tags
(never a worker's name). `verify.py` checks it. Imports accounting, the share leaves and the
ledger's tables; the bitcoind client only through the `Bitcoind` protocol.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from accounting import work_proof as wp
from accounting.work_columns import root_of_columns, sorted_columns
from poold.bitcoind.client import Bitcoind
from poold.config import TokensConfig
from poold.ledger.anchors import proof_cut
from poold.ledger.db import ledger_entry, ledger_entry_async
from poold.ledger.models import (
    Account,
    ChainAnchor,
    ShareSlice,
    StatementRoot,
    TokenPeriod,
    WorkRoot,
)
from poold.shares.leaves import PeriodLeaves, read_leaves

#: How many periods back a share's coinbase may carry the chain's head from (verify.py's
#: MAX_LINKS_BACK): P-1's commitment, or P-2's before P-1 is settled, and one of margin.
LINKS_BACK = 3
#: How far back from the best block the proof walks for the period's tips.
MAX_HEADERS = 10_000


class WorkWait(Exception):
    """The period's work proof cannot be made yet; the message says what it waits for."""


class WorkMismatch(Exception):
    """The leaf files do not hold the work the statement will claim: no root is committed
    (a proof over them would call an honest statement misstated); the message says why."""


#: Where each node's work-proof leaf files are: (node id, directory) — a node's own beside
#: its share log, another node's in the leader's mirror of that node's log.
WorkDirs = Sequence[tuple[int, Path]]


def period_nodes(conn: Connection, start: int, end: int, fleet: Sequence[str]) -> list[int]:
    """The nodes with fleet shares in the ledger in [start, end): whose leaves the root
    covers."""
    rows = conn.execute(
        select(ShareSlice.node_id)
        .distinct()
        .join(Account, Account.id == ShareSlice.account_id)
        .where(
            ShareSlice.slice_start >= start,
            ShareSlice.slice_start < end,
            Account.name.in_(list(fleet)),
        )
    ).scalars()
    return sorted(int(n) for n in rows)


def leaf_files(
    conn: Connection, dirs: WorkDirs, start: int, end: int, fleet: Sequence[str]
) -> list[PeriodLeaves]:
    """The period's leaf file of every node with shares in it. WorkWait naming a file not
    built yet; WorkMismatch naming a node whose leaves do not reach this daemon."""
    where = dict(dirs)
    nodes = period_nodes(conn, start, end, fleet)
    lacking = [n for n in nodes if n not in where]
    if lacking:
        raise WorkMismatch(
            f"the leaves of node(s) {lacking} do not reach this daemon (their logs are "
            "mirrored from the [stream]; with no stream, or a mirror that failed, they cannot "
            "be committed)"
        )
    out = []
    for n in nodes:
        path = where[n] / f"leaves-{start}.bin"
        if not path.exists():
            raise WorkWait(
                f"the work-proof leaves of node {n} for the period starting {start} are not "
                f"in {where[n]} yet"
            )
        out.append(read_leaves(path))
    return out


def merged(files: Sequence[PeriodLeaves], salt: bytes) -> Iterator[tuple[wp.Leaf, int, int]]:
    """Every file's leaves in tree order (by header hash) with (file, index) of each."""
    tags = [[wp.account_tag(salt, a) for a in f.accounts] for f in files]

    def one(n: int, f: PeriodLeaves) -> Iterator[tuple[wp.Leaf, int, int]]:
        for i in range(len(f.leaves)):
            yield wp.Leaf(f.hash(i), f.weight(i), tags[n][int(f.leaves[i]["account"])]), n, i

    return heapq.merge(*(one(n, f) for n, f in enumerate(files)), key=lambda t: t[0].hash)


def _bytes_rows(field: npt.NDArray[np.void], width: int) -> npt.NDArray[np.uint8]:
    """A fixed-width bytes field of the leaves as n x width bytes (trailing zeros kept)."""
    return np.frombuffer(np.ascontiguousarray(field).tobytes(), np.uint8).reshape(-1, width)


def columns_root(files: Sequence[PeriodLeaves], salt: bytes) -> wp.WorkNode:
    """The root `merged` + `wp.stream_root` give, from the files' columns: no Python object
    per leaf or node (`accounting.work_columns`)."""
    if not files:
        return wp.EMPTY
    parts = []
    for f in files:
        tags = b"".join(wp.account_tag(salt, a) for a in f.accounts)
        table = np.frombuffer(tags, np.uint8).reshape(-1, 32)
        leaves = f.leaves
        parts.append(
            (_bytes_rows(leaves["hash"], 32), _bytes_rows(leaves["weight"], 16),
             table[leaves["account"]])
        )  # fmt: skip
    hashes, weights, tags_of = (np.concatenate([p[i] for p in parts]) for i in range(3))
    if len(files) > 1:
        hashes, weights, tags_of = sorted_columns(hashes, weights, tags_of)
    return root_of_columns(hashes, weights, tags_of)


def node_text(node: wp.WorkNode) -> str:
    return base64.b64encode(node.pack()).decode()


def commit_work(
    conn: Connection,
    start: int,
    end: int,
    dirs: WorkDirs,
    fleet: Sequence[str],
    delivered: Fraction | None = None,
) -> dict[str, object]:
    """The period's work root over every node's leaf file, recorded (with a fresh tag salt)
    in the caller's transaction; what goes into its published inputs. WorkWait while a leaf
    file is missing; WorkMismatch (nothing recorded) when a node's leaves cannot reach this
    daemon, or when the root's work is not what the statement claims (`delivered` TH/s over
    the period): a leaf file lacks shares it could not prove."""
    files = leaf_files(conn, dirs, start, end, fleet)
    salt = secrets.token_bytes(16)
    root = columns_root(files, salt)
    n = sum(len(f.leaves) for f in files)
    if delivered is not None and Fraction(root.work, 10**12) != delivered * (end - start):
        raise WorkMismatch(
            f"the leaf files hold {Fraction(root.work, 10**12)} TH·s of the fleet's work, the "
            f"statement claims {delivered * (end - start)}; the period's fleet shares came "
            f"from node(s) {period_nodes(conn, start, end, fleet)}: a leaf file lacks shares "
            "it could not prove (see work_leaves_built)"
        )
    conn.execute(
        insert(WorkRoot).values(
            period_start=start, root=node_text(root), work=str(root.work), leaves=n, salt=salt.hex()
        )
    )
    return {"work_root": root.hash.hex(), "work": root.work, "work_leaves": n}


@dataclass(frozen=True, slots=True)
class Pending:
    start: int
    commitment: str
    anchor_height: int | None


def _pending(engine: Engine) -> list[Pending]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(WorkRoot.period_start, StatementRoot.commitment)
            .join(StatementRoot, StatementRoot.period_start == WorkRoot.period_start)
            .where(WorkRoot.proof.is_(None))
            .order_by(WorkRoot.period_start)
        ).all()
        out = []
        for start, commitment in rows:
            height = conn.execute(
                select(ChainAnchor.height)
                .where(ChainAnchor.statement == commitment, ChainAnchor.status == "mined")
                .order_by(ChainAnchor.height, ChainAnchor.id)
                .limit(1)
            ).scalar()
            out.append(Pending(int(start), commitment, None if height is None else int(height)))
    return out


def _anchor(conn: Connection, commitment: str) -> dict[str, object]:
    a = conn.execute(
        select(ChainAnchor)
        .where(ChainAnchor.statement == commitment, ChainAnchor.status == "mined")
        .order_by(ChainAnchor.height, ChainAnchor.id)
        .limit(1)
    ).one()
    return {
        "type": a.kind,
        "block": a.block_hash,
        "height": int(a.height),
        "header": a.header,
        "tx": a.tx,
        "index": int(a.tx_index),
        "branch": json.loads(a.branch),
        "commitment": commitment,
    }


def _link(row: Any) -> dict[str, object]:
    return {
        "period_start": int(row.period_start),
        "root": {"hash": row.root_hash, "sums": json.loads(row.sums)},
        "inputs_digest": wp_inputs_digest(json.loads(row.inputs)).hex(),
        "previous": row.previous,
        "commitment": row.commitment,
    }


def wp_inputs_digest(inputs: dict[str, object]) -> bytes:
    from accounting.merkle_sum import inputs_digest

    return inputs_digest(inputs)


async def _headers(bitcoind: Bitcoind, down_to: int, tips: set[bytes]) -> tuple[list[bytes], int]:
    """Headers from the lowest of `tips` (the blocks the period's shares build on; internal
    byte order) up to the best block, oldest first, and the best block's height."""
    best = await bitcoind.best_block_hash()
    height = await bitcoind.tip_height()
    out: list[bytes] = []
    seen: set[bytes] = set()
    block = best
    for _ in range(MAX_HEADERS):
        header = (await bitcoind.raw_block(block))[:80]
        out.append(header)
        digest = wp_sha256d(header)
        seen.add(digest)
        if tips <= seen and height - len(out) + 1 <= down_to:
            out.reverse()
            return out, height
        block = header[4:36][::-1].hex()
    raise WorkWait("the period's tips are not within the last blocks of the best chain")


def wp_sha256d(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@ledger_entry_async
async def build_proofs(
    engine: Engine, bitcoind: Bitcoind, cfg: TokensConfig, dirs: WorkDirs
) -> list[tuple[int, str]]:
    """Cut the sample of every period whose beacon block is mined: returns (period start,
    why it waits, or "" when its proof was published)."""
    out = []
    # Ledger reads and writes and the tree build run in a thread: a stalled database or a
    # large period must not stop the daemon's event loop (Stratum shares the loop).
    for p in await asyncio.to_thread(_pending, engine):
        if p.anchor_height is None:
            out.append((p.start, "its commitment is not anchored on chain yet"))
            continue
        try:
            files = await asyncio.to_thread(_files, engine, dirs, p.start, cfg.fleet_accounts)
            tip = await bitcoind.tip_height()
            if tip < p.anchor_height + cfg.beacon_depth:
                raise WorkWait(
                    f"the beacon block {p.anchor_height + cfg.beacon_depth} is not mined yet"
                )
            tips = {job.prev_hash for f in files for job in f.jobs}
            headers, best = await _headers(bitcoind, p.anchor_height + cfg.beacon_depth, tips)
        except (WorkWait, WorkMismatch) as wait:
            out.append((p.start, str(wait)))
            continue
        doc = await asyncio.to_thread(_document, engine, cfg, p, files, headers, best)
        await asyncio.to_thread(_store, engine, p.start, doc)
        out.append((p.start, ""))
    return out


@ledger_entry
def _files(engine: Engine, dirs: WorkDirs, start: int, fleet: Sequence[str]) -> list[PeriodLeaves]:
    with engine.connect() as conn:
        end = conn.execute(
            select(TokenPeriod.period_end).where(TokenPeriod.period_start == start)
        ).scalar_one()
        return leaf_files(conn, dirs, start, int(end), fleet)


@ledger_entry
def _store(engine: Engine, start: int, doc: dict[str, object]) -> None:
    beacon = str(doc.pop("_beacon"))
    with engine.begin() as conn:
        conn.execute(
            update(WorkRoot)
            .where(WorkRoot.period_start == start, WorkRoot.proof.is_(None))
            .values(proof=json.dumps(doc), beacon_block=beacon)
        )


def _document(
    engine: Engine,
    cfg: TokensConfig,
    p: Pending,
    files: list[PeriodLeaves],
    headers: list[bytes],
    best: int,
) -> dict[str, object]:
    with engine.connect() as conn:
        row = conn.execute(select(WorkRoot).where(WorkRoot.period_start == p.start)).one()
        root_row = conn.execute(
            select(StatementRoot).where(StatementRoot.period_start == p.start)
        ).one()
        before = conn.execute(
            select(StatementRoot)
            .where(StatementRoot.period_start < p.start)
            .order_by(StatementRoot.period_start.desc())
            .limit(LINKS_BACK)
        ).all()
        anchor = _anchor(conn, p.commitment)
        pool = proof_cut(conn, p.commitment)["pool"]
    salt = bytes.fromhex(row.salt)
    order = list(merged(files, salt))
    leaves = [lf for lf, _n, _i in order]
    levels = wp.build(leaves)
    if node_text(levels[-1][0]) != row.root:
        raise ValueError(f"the leaves of period {p.start} no longer match its work root")
    heights = {wp_sha256d(h): best - len(headers) + 1 + i for i, h in enumerate(headers)}
    at = heights[bytes.fromhex(str(anchor["block"]))[::-1]] - (best - len(headers) + 1)
    tip_at = sorted(
        heights[job.prev_hash] - (best - len(headers) + 1)
        for f in files
        for job in f.jobs
        if job.prev_hash in heights
    )
    depth = cfg.beacon_depth
    beacon = wp_sha256d(headers[at + depth])
    sample = wp.sample_document(
        levels, leaves, beacon, cfg.work_proof_k, lambda i: files[order[i][1]].evidence(order[i][2])
    )
    accounts = sorted({a for f in files for a in f.accounts})
    return {
        "version": 2,
        "kind": "work",
        "pool": pool,
        "period": {
            "inputs": json.loads(root_row.inputs),
            "root": {"hash": root_row.root_hash, "sums": json.loads(root_row.sums)},
            "previous": root_row.previous,
            "commitment": root_row.commitment,
        },
        "links": [_link(r) for r in reversed(before)],
        "work": {
            "root": row.root,
            "leaves": int(row.leaves),
            "k": cfg.work_proof_k,
            "depth": depth,
        },
        "headers": [h.hex() for h in headers[: at + depth + 1]],
        "tips": [tip_at[0], tip_at[-1]],
        "anchor": {"at": at, "evidence": anchor},
        "fleet_tags": [wp.account_tag(salt, a).hex() for a in accounts],
        "nodes": sample["nodes"],
        "samples": sample["samples"],
        "_beacon": beacon[::-1].hex(),
    }


@ledger_entry
def released(engine: Engine, starts: Sequence[int]) -> list[int]:
    """Of these periods, those whose leaves are no longer needed: settled, and either their
    sample is published or they have no work root (work proofs off, or skipped)."""
    if not starts:
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            select(TokenPeriod.period_start, WorkRoot.proof.is_not(None), WorkRoot.period_start)
            .outerjoin(WorkRoot, WorkRoot.period_start == TokenPeriod.period_start)
            .where(TokenPeriod.period_start.in_(list(starts)))
        ).all()
    return sorted(int(start) for start, published, rooted in rows if published or rooted is None)


def proof_of(conn: Connection, start: int) -> dict[str, object] | str | None:
    """The published work proof of a period; a text saying why there is none yet; None when
    the period has no work root."""
    row = conn.execute(
        select(WorkRoot.proof, WorkRoot.period_start).where(WorkRoot.period_start == start)
    ).first()
    if row is None:
        return None
    if row.proof is None:
        return "its sample is cut once the beacon block after its anchor is mined"
    doc: dict[str, object] = json.loads(row.proof)
    return doc
