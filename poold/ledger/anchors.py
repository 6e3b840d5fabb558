"""Anchors: the Bitcoin transactions that carry the commitment chains' heads, kept with the
evidence that proves each offline (`chain_anchors`), and the pool's anchor transactions.

Two kinds. A *coinbase* anchor is a block the pool found: its coinbase carries OP_RETURN
"pold" + statement commitment + credit commitment (`jobs.coinbase`). A *transaction* anchor is
one the pool's wallet sends (`AnchorWallet.send_anchor`) when the chains' heads are carried by
no anchor yet and the last one was sent at least `interval_s` ago: so a pool that finds no
block still anchors every head within that time, and pays a transaction fee for it.

Once its block is on the best chain an anchor's evidence is read back from bitcoind (the raw
block): the 80-byte header, the transaction in its non-witness serialisation, its index and
its merkle branch to the header's merkle root. A proof carries the evidence of the anchors of
its commitment and the later ones (`proof_anchors`), and `verify.py` checks it with nothing
else. Anchors are followed until 100 confirmations: one whose block leaves the best chain is
`orphaned` (never in a proof; a coinbase anchor may come back), an anchor transaction goes
back to `sent` until it is mined again. `chain_view` records the best block the leader saw
and the pool's anchoring identity (every script its coinbases and anchor transactions have
paid), which a proof names too.

Runs on the ledger's leader (`ledger.scheduler`), database work in threads. Imports the
ledger's tables, the bitcoind client interface, `chain/` and `jobs.coinbase`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from poold.bitcoind.client import AnchorWallet, Bitcoind, BitcoindError
from poold.chain.block import merkle_branch, parse_block, parse_tx
from poold.jobs.coinbase import read_commitments, statement_script
from poold.ledger.db import fenced, ledger_entry_async
from poold.ledger.models import Block, ChainAnchor, ChainView, CreditRoot, StatementRoot

log = structlog.get_logger(__name__)

#: Confirmations after which an anchor is no longer followed (a coinbase's maturity).
FINAL_CONFIRMATIONS = 100
#: Found blocks whose evidence one pass reads back (older blocks catch up over passes).
CAPTURE_PER_PASS = 20
#: Anchors a proof carries at most: the earliest, which prove the most.
MAX_PROOF_ANCHORS = 64
#: Scripts of each kind a proof names at most (the newest: one per address change).
MAX_SCRIPTS = 16
_CHUNK = 5_000  # commitments per IN list (PostgreSQL takes at most 65,535 parameters)


@dataclass(frozen=True)
class AnchorPolicy:
    """How the pool anchors (from `[anchors]` and `[pool]`): `wallet` None sends no anchor
    transactions (coinbase anchors are still recorded)."""

    coinbase_script: bytes
    wallet: AnchorWallet | None = None
    address: str = ""
    change_script: bytes | None = None
    interval_s: int = 21600
    fee_rate_sat_vb: int = 2


@dataclass(frozen=True)
class AnchorChange:
    #: anchor_recorded (a found block's coinbase), anchor_sent, anchor_mined, anchor_orphaned,
    #: anchor_restored; anchor_send_failed and anchor_evidence_unavailable (`error` says why)
    event: str
    txid: str | None = None
    block_hash: str | None = None
    height: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Evidence:
    txid: str  # display order
    header: str
    tx: str  # non-witness serialisation
    index: int
    branch: list[str]  # internal byte order, leaves up
    height: int | None  # the block's BIP34 height, from its coinbase


def evidence(raw_block: bytes, *, txid: str | None = None) -> Evidence:
    """The evidence of the coinbase (`txid` None) or of transaction `txid` in a raw block."""
    block = parse_block(raw_block)
    ids = [t.txid for t in block.txs]
    index = 0 if txid is None else ids.index(bytes.fromhex(txid)[::-1])
    tx = block.txs[index]
    return Evidence(
        txid=tx.txid[::-1].hex(),
        header=block.header.hex(),
        tx=tx.plain.hex(),
        index=index,
        branch=[h.hex() for h in merkle_branch(ids, index)],
        height=block.txs[0].height,
    )


# -- database steps (in threads) -------------------------------------------------------------


def _heads(engine: Engine) -> tuple[str | None, str | None]:
    with engine.connect() as conn:
        statement = conn.execute(
            select(StatementRoot.commitment).order_by(StatementRoot.period_start.desc()).limit(1)
        ).scalar()
        credit = conn.execute(
            select(CreditRoot.commitment).order_by(CreditRoot.id.desc()).limit(1)
        ).scalar()
    return statement, credit


def _see(
    engine: Engine, best_hash: str, best_height: int, now_ms: int, policy: AnchorPolicy
) -> None:
    """Record the best block, and the pool's scripts (added to those it used before)."""
    with fenced(engine) as conn:
        row = conn.execute(
            select(ChainView.coinbase_scripts, ChainView.anchor_scripts).where(ChainView.id == 1)
        ).first()
        coinbase, anchor = ([], []) if row is None else (json.loads(row[0]), json.loads(row[1]))
        for scripts, script in ((coinbase, policy.coinbase_script), (anchor, policy.change_script)):
            if script and script.hex() not in scripts:
                scripts.append(script.hex())
        values = {
            "best_hash": best_hash,
            "best_height": best_height,
            "seen_ms": now_ms,
            "interval_s": policy.interval_s if policy.wallet is not None else None,
            "coinbase_scripts": json.dumps(coinbase[-MAX_SCRIPTS:]),
            "anchor_scripts": json.dumps(anchor[-MAX_SCRIPTS:]),
        }
        if row is None:
            conn.execute(insert(ChainView).values(id=1, **values))
        else:
            conn.execute(update(ChainView).where(ChainView.id == 1).values(**values))


def _uncaptured(engine: Engine) -> list[tuple[str, int, str | None, str | None]]:
    """Found blocks on the chain that carry a commitment and have no anchor row yet."""
    with engine.connect() as conn:
        have = select(ChainAnchor.id).where(ChainAnchor.block_hash == Block.hash).exists()
        rows = conn.execute(
            select(Block.hash, Block.height, Block.commitment, Block.credit_commitment)
            .where(
                Block.accepted.is_(True),
                Block.status.in_(("pending", "confirmed")),
                Block.commitment.is_not(None) | Block.credit_commitment.is_not(None),
                ~have,
            )
            .order_by(Block.height.desc())  # newest first: an old block a pruned node lost
            .limit(CAPTURE_PER_PASS)  # never holds back the rest
        ).all()
    return [(h, int(ht), s, c) for h, ht, s, c in rows]


def _insert(engine: Engine, **values: object) -> None:
    with fenced(engine) as conn:
        conn.execute(insert(ChainAnchor).values(**values))


def _followed(engine: Engine, min_height: int) -> list[tuple[int, str, str, str, str]]:
    """(id, kind, status, txid, block hash) of the anchors still followed."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                ChainAnchor.id,
                ChainAnchor.kind,
                ChainAnchor.status,
                ChainAnchor.txid,
                ChainAnchor.block_hash,
            ).where(
                ChainAnchor.status.in_(("mined", "orphaned")),
                ChainAnchor.confirmations < FINAL_CONFIRMATIONS,
                ChainAnchor.height >= min_height,
            )
        ).all()
    return [(int(i), k, s, t, str(b)) for i, k, s, t, b in rows]


def _update(engine: Engine, anchor_id: int, **values: object) -> None:
    with fenced(engine) as conn:
        conn.execute(update(ChainAnchor).where(ChainAnchor.id == anchor_id).values(**values))


def _unmined(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(ChainAnchor.id, ChainAnchor.txid).where(ChainAnchor.status == "sent")
        ).all()
    return [(int(i), t) for i, t in rows]


def _due(engine: Engine, now_ms: int, interval_s: int) -> tuple[str | None, str | None] | None:
    """The heads to anchor in a transaction now, or None: every head is carried already (by a
    mined anchor, or by an anchor transaction sent within the interval: one stuck longer, say
    for its fee, no longer counts), or the last one was sent less than `interval_s` ago."""
    statement, credit = _heads(engine)
    if statement is None and credit is None:
        return None
    since = now_ms - interval_s * 1000
    with engine.connect() as conn:
        live = (ChainAnchor.status == "mined") | (
            (ChainAnchor.status == "sent") & (ChainAnchor.created_ms > since)
        )
        carried = all(
            head is None
            or conn.execute(select(ChainAnchor.id).where(column == head, live).limit(1)).first()
            for head, column in ((statement, ChainAnchor.statement), (credit, ChainAnchor.credit))
        )
        if carried:
            return None
        last = conn.execute(
            select(func.max(ChainAnchor.created_ms)).where(ChainAnchor.kind == "transaction")
        ).scalar()
    if last is not None and int(last) > since:
        return None
    return statement, credit


# -- the pass ----------------------------------------------------------------------------------


@ledger_entry_async
async def run_anchors(
    engine: Engine, bitcoind: Bitcoind, policy: AnchorPolicy, now_ms: int, *, send: bool = True
) -> list[AnchorChange]:
    """One anchoring pass: read back the evidence of found blocks that carry a commitment,
    follow anchors to 100 confirmations, fill in mined anchor transactions, send one if the
    heads are due (and `send`: the caller holds back after a refusal), and record the best
    block. Bitcoind errors are the caller's (the next pass retries), except the wallet's
    refusal to send, returned as an `anchor_send_failed` change."""
    tip = await bitcoind.tip_height()
    changes: list[AnchorChange] = []
    for block_hash, height, statement, credit in await asyncio.to_thread(_uncaptured, engine):
        confirmations = await bitcoind.block_confirmations(block_hash)
        if confirmations < 0:
            continue  # off the best chain: maturity decides whether it is lost
        try:
            ev = await _read_evidence(bitcoind, block_hash)
        except BitcoindError as exc:  # e.g. pruned away: the others still get theirs
            changes.append(AnchorChange("anchor_evidence_unavailable", None, block_hash, height,
                                        error=str(exc)))  # fmt: skip
            continue
        recorded = (_bytes(statement), _bytes(credit))
        if _carried(ev) != [recorded]:
            log.error("anchor_mismatch", block=block_hash, statement=statement, credit=credit)
            continue
        await asyncio.to_thread(
            _insert,
            engine,
            kind="coinbase",
            txid=ev.txid,
            statement=statement,
            credit=credit,
            status="mined",
            created_ms=now_ms,
            block_hash=block_hash,
            height=height,
            confirmations=confirmations,
            header=ev.header,
            tx=ev.tx,
            tx_index=0,
            branch=json.dumps(ev.branch),
        )
        changes.append(AnchorChange("anchor_recorded", ev.txid, block_hash, height))
    for anchor_id, kind, status, txid, block_hash in await asyncio.to_thread(
        _followed, engine, tip - FINAL_CONFIRMATIONS
    ):
        confirmations = await bitcoind.block_confirmations(block_hash)
        if status == "mined" and confirmations < 0:
            if kind == "coinbase":
                await asyncio.to_thread(
                    _update, engine, anchor_id, status="orphaned", confirmations=-1
                )
            else:  # back in the mempool (or mined elsewhere): found again below
                await asyncio.to_thread(
                    _update,
                    engine,
                    anchor_id,
                    status="sent",
                    confirmations=0,
                    block_hash=None,
                    height=None,
                    header=None,
                    tx=None,
                    tx_index=None,
                    branch=None,
                )
            changes.append(AnchorChange("anchor_orphaned", txid, block_hash))
        elif confirmations >= 0:
            await asyncio.to_thread(
                _update, engine, anchor_id, status="mined", confirmations=confirmations
            )
            if status == "orphaned":
                changes.append(AnchorChange("anchor_restored", txid, block_hash))
    wallet = policy.wallet
    if wallet is not None:
        changes += await _transactions(engine, bitcoind, wallet, policy, now_ms, send)
    # Last, so a proof's cut names a best block at least as high as every anchor it carries;
    # the hash before the height: a block arriving between the calls makes the height higher,
    # never lower, than the hash's.
    best = await bitcoind.best_block_hash()
    await asyncio.to_thread(_see, engine, best, await bitcoind.tip_height(), now_ms, policy)
    return changes


async def _transactions(
    engine: Engine,
    bitcoind: Bitcoind,
    wallet: AnchorWallet,
    policy: AnchorPolicy,
    now_ms: int,
    send: bool,
) -> list[AnchorChange]:
    """Anchor transactions: fill in those mined, send one if the heads are due."""
    changes: list[AnchorChange] = []
    for anchor_id, txid in await asyncio.to_thread(_unmined, engine):
        holder = await wallet.tx_block(txid)
        if holder is None:
            continue
        ev = await _read_evidence(bitcoind, holder, txid)
        confirmations = await bitcoind.block_confirmations(holder)
        if confirmations < 0 or ev.height is None:
            continue  # a reorg between the calls, or a block without its height: next pass
        await asyncio.to_thread(
            _update,
            engine,
            anchor_id,
            status="mined",
            block_hash=holder,
            height=ev.height,
            confirmations=confirmations,
            header=ev.header,
            tx=ev.tx,
            tx_index=ev.index,
            branch=json.dumps(ev.branch),
        )
        changes.append(AnchorChange("anchor_mined", txid, holder, ev.height))
    due = await asyncio.to_thread(_due, engine, now_ms, policy.interval_s) if send else None
    if due is not None and policy.change_script is not None:
        statement, credit = due
        script = statement_script(_bytes(statement), _bytes(credit))
        try:
            txid = await wallet.send_anchor(
                script,
                address=policy.address,
                change_script=policy.change_script,
                fee_rate_sat_vb=policy.fee_rate_sat_vb,
            )
        except BitcoindError as exc:
            changes.append(AnchorChange("anchor_send_failed", error=str(exc)))
            return changes
        await asyncio.to_thread(
            _insert,
            engine,
            kind="transaction",
            txid=txid,
            statement=statement,
            credit=credit,
            status="sent",
            created_ms=now_ms,
            confirmations=0,
        )
        changes.append(AnchorChange("anchor_sent", txid))
    return changes


async def _read_evidence(bitcoind: Bitcoind, block_hash: str, txid: str | None = None) -> Evidence:
    raw = await bitcoind.raw_block(block_hash)
    try:
        return evidence(raw, txid=txid)
    except ValueError as exc:  # BlockFormatError, or the transaction is not in the block
        what = "its coinbase" if txid is None else f"transaction {txid}"
        raise BitcoindError(f"block {block_hash} from bitcoind: {exc} ({what})") from None


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _carried(ev: Evidence) -> list[tuple[bytes | None, bytes | None]]:
    """The commitments every poold output of the evidence's transaction carries."""
    return [
        c for _v, script in parse_tx(bytes.fromhex(ev.tx)).outputs
        if (c := read_commitments(script)) is not None
    ]  # fmt: skip


# -- what a proof carries ----------------------------------------------------------------------


def anchored_cut(conn: Connection, slot: str, chain: Sequence[str]) -> dict[str, object]:
    """A proof's anchors, cut and pool (`proof_cut`): only anchors at or below the best block
    the cut names (an anchor recorded after the last look at the chain waits for the next
    proof: a verifier refuses an anchor above the cut)."""
    cut = proof_cut(conn, chain[-1])
    where = cut["cut"]
    assert isinstance(where, dict)
    best = where["best_height"]
    anchors = proof_anchors(conn, slot, chain, None if best is None else int(best))
    return {"anchors": anchors, **cut}


def proof_anchors(
    conn: Connection, slot: str, chain: Sequence[str], up_to: int | None = None
) -> list[dict[str, object]]:
    """The mined anchors whose `slot` ("statement" or "credit") carries one of `chain`'s
    commitments (in blocks at or below height `up_to`), with their evidence: at most
    MAX_PROOF_ANCHORS, the earliest (they prove the most), always including the earliest of
    each kind; in height order."""
    column = ChainAnchor.statement if slot == "statement" else ChainAnchor.credit
    a = ChainAnchor
    below = () if up_to is None else (a.height <= up_to,)
    fields = (a.kind, a.block_hash, a.height, a.header, a.tx, a.tx_index, a.branch, column, a.id)
    rows: list[Any] = []
    for kind in ("coinbase", "transaction"):
        for i in range(0, len(chain), _CHUNK):
            rows += conn.execute(
                select(*fields)
                .where(
                    column.in_(chain[i : i + _CHUNK]), a.status == "mined", a.kind == kind, *below
                )
                .order_by(a.height, a.id)
                .limit(MAX_PROOF_ANCHORS)
            ).all()
    rows.sort(key=lambda r: (r[2], r[8]))
    firsts = {next(r for r in rows if r[0] == kind)[8] for kind in {r[0] for r in rows}}
    chosen = [r for r in rows if r[8] in firsts]
    chosen += [r for r in rows if r[8] not in firsts][: MAX_PROOF_ANCHORS - len(chosen)]
    chosen.sort(key=lambda r: (r[2], r[8]))
    return [
        {
            "type": kind,
            "block": block,
            "height": int(height),
            "header": header,
            "tx": tx,
            "index": int(index),
            "branch": json.loads(branch),
            "commitment": carried,
        }
        for kind, block, height, header, tx, index, branch, carried, _id in chosen
    ]


def proof_cut(conn: Connection, head: str) -> dict[str, object]:
    """Where a proof was cut: the head of its chain, and the best block and anchoring identity
    the leader last recorded (None where no anchoring pass has run)."""
    view = conn.execute(select(ChainView).where(ChainView.id == 1)).first()
    cut: dict[str, object] = {
        "head": head,
        "best_block": None if view is None else view.best_hash,
        "best_height": None if view is None else int(view.best_height),
        "time": None if view is None else int(view.seen_ms) // 1000,
    }
    pool = (
        None
        if view is None
        else {
            "coinbase_scripts": json.loads(view.coinbase_scripts),
            "anchor_scripts": json.loads(view.anchor_scripts),
            "anchor_interval_s": view.interval_s,
        }
    )
    return {"cut": cut, "pool": pool}
