"""Following found blocks on bitcoind: maturity and orphans, as journal resolutions.

A block's settlement is a *pending* journal entry (poold.ledger.journal). With >= 100
confirmations it matures: a `post` entry makes its lines count (the miners' credits become
spendable, the coinbase joins `pool:wallet`). A block off the best chain is orphaned only once
the best chain holds `orphan_depth` blocks at or above its height (a short reorg often brings
it back): a `void` entry then cancels its lines, never deleting them. An orphaned block is
still watched until it could no longer have matured; if it returns to the best chain its
settlement lines are posted again as a new pending entry (a re-credit) and it is followed as
before.
A block whose submission got no answer (status `unknown`) is looked up on the chain: there,
it becomes accepted and the next settlement pass settles it; still absent when it could no
longer have matured, it is rejected. Each step has its own settlements key (`mature:<hash>`,
`orphan:<hash>`, then `recredit:<hash>:<n>` and `orphan:<hash>:<n>` for the n-th return and
loss) written in the same transaction, so following twice, or from two processes, changes
nothing. Bitcoind errors are the caller's (a retry next pass).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection, Engine

from poold.bitcoind.client import Bitcoind
from poold.ledger import journal
from poold.ledger.db import LedgerError, fenced, ledger_entry_async
from poold.ledger.journal import AlreadyPosted, post
from poold.ledger.models import Block, JournalLine, Settlement
from poold.ledger.settle import BLOCK_KEYS

COINBASE_MATURITY_BLOCKS = 100  # confirmations before a coinbase may be spent
#: Default depth of the competing chain before a block's credits are reversed.
ORPHAN_DEPTH = 6


@dataclass(frozen=True)
class BlockChange:
    block_hash: str
    status: str  # confirmed | orphaned | restored | accepted | rejected (for unknown ones)
    confirmations: int


def _record(
    engine: Engine,
    block_hash: str,
    status: str,
    confirmations: int,
    write: Callable[[Connection], object],
) -> bool:
    """`write` the journal step and the block's new status in one transaction; False when
    the step was taken already (its key exists)."""
    try:
        with fenced(engine) as conn:
            write(conn)
            conn.execute(
                update(Block)
                .where(Block.hash == block_hash)
                .values(status=status, confirmations=confirmations)
            )
        return True
    except AlreadyPosted:
        return False


def _resolve_open(conn: Connection, block_hash: str, *, post: bool, kind: str, key: str) -> None:
    pending = journal.open_pending(conn, block_hash)
    if pending is None:
        if conn.execute(select(Settlement.id).where(Settlement.key == key)).first():
            raise AlreadyPosted(key)  # this step was taken already
        raise LedgerError(f"block {block_hash} has no pending entry to resolve")
    journal.resolve(conn, pending, post=post, kind=kind, reference=block_hash, key=key)


def _followed(engine: Engine, min_height: int) -> list[tuple[str, int, str, int, int]]:
    """(hash, settlement entry, status, height, reversals so far) of every settled block still
    pending, and of every orphaned one a reorg could still bring back (height >= min_height)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Block.hash, Settlement.entry_id, Block.status, Block.height)
            .join(
                Settlement,
                or_(*(Settlement.key == prefix + Block.hash for prefix in BLOCK_KEYS.values())),
            )
            .where(
                or_(
                    Block.status == "pending",
                    (Block.status == "orphaned") & (Block.height >= min_height),
                )
            )
        ).all()
        reversals: dict[str, int] = {}
        for (key,) in conn.execute(select(Settlement.key).where(Settlement.key.like("orphan:%"))):
            h = key.split(":")[1]
            reversals[h] = reversals.get(h, 0) + 1
    return [(h, e, st, ht, reversals.get(h, 0)) for h, e, st, ht in rows]


def _unknown(engine: Engine) -> list[tuple[str, int]]:
    """(hash, height) of blocks whose submission got no answer."""
    with engine.connect() as conn:
        rows = conn.execute(select(Block.hash, Block.height).where(Block.status == "unknown"))
        return [(h, ht) for h, ht in rows]


def _resolve(engine: Engine, block_hash: str, accepted: bool, confirmations: int) -> bool:
    """An unknown block found on the chain (settled by the next settlement pass) or given up."""
    with fenced(engine) as conn:
        done = conn.execute(
            update(Block)
            .where(Block.hash == block_hash, Block.status == "unknown")
            .values(
                accepted=accepted,
                status="pending" if accepted else "rejected",
                confirmations=confirmations,
            )
        )
        return bool(done.rowcount)


def _pending(engine: Engine) -> list[tuple[str, int]]:
    """(hash, settlement entry) of every settled block not yet matured or orphaned."""
    return [(h, e) for h, e, st, _ht, _n in _followed(engine, 0) if st == "pending"]


def _lines(engine: Engine, entry_id: int) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(JournalLine.account, JournalLine.amount_sat).where(
                JournalLine.entry_id == entry_id
            )
        ).all()
    return [(a, v) for a, v in rows]


def _apply(
    engine: Engine, block_hash: str, entry_id: int, confirmations: int, reversals: int = 0
) -> bool:
    """Void (orphaned) or post (matured) the block's open pending entry; `reversals` is how
    often it was orphaned before (0: never)."""
    if confirmations < 0:
        key = f"orphan:{block_hash}" + (f":{reversals}" if reversals else "")
        return _record(
            engine,
            block_hash,
            "orphaned",
            -1,
            lambda conn: _resolve_open(
                conn, block_hash, post=False, kind="pplns_reversal", key=key
            ),
        )
    key = f"mature:{block_hash}"
    return _record(
        engine,
        block_hash,
        "confirmed",
        confirmations,
        lambda conn: _resolve_open(conn, block_hash, post=True, kind="maturity", key=key),
    )


def _restore(
    engine: Engine, block_hash: str, entry_id: int, confirmations: int, reversals: int
) -> bool:
    """An orphaned block is back on the best chain: its settlement lines, pending again."""
    lines = _lines(engine, entry_id)
    key = f"recredit:{block_hash}:{reversals}"
    return _record(
        engine,
        block_hash,
        "pending",
        confirmations,
        lambda conn: post(
            conn,
            kind="block_recredit",
            reference=block_hash,
            key=key,
            lines=lines,
            phase="pending",
        ),
    )


def _set_confirmations(engine: Engine, block_hash: str, confirmations: int) -> None:
    with fenced(engine) as conn:
        conn.execute(
            update(Block).where(Block.hash == block_hash).values(confirmations=confirmations)
        )


@ledger_entry_async
async def follow_blocks(
    engine: Engine, bitcoind: Bitcoind, *, orphan_depth: int = ORPHAN_DEPTH
) -> list[BlockChange]:
    """Check every settled block that is pending, or orphaned but young enough to return, on
    bitcoind; post maturity, reversal or re-credit.

    Database work runs in threads: this is called from the daemon's event loop."""
    if orphan_depth < 1:
        raise ValueError("orphan_depth must be >= 1")
    tip = await bitcoind.tip_height()
    changes = []
    for block_hash, height in await asyncio.to_thread(_unknown, engine):
        confirmations = await bitcoind.block_confirmations(block_hash)
        on_chain = confirmations >= 0
        if not on_chain and tip - height + 1 < COINBASE_MATURITY_BLOCKS:
            continue  # not there (yet): a reorg may still bring it, until it could not mature
        if await asyncio.to_thread(_resolve, engine, block_hash, on_chain, confirmations):
            changes.append(
                BlockChange(block_hash, "accepted" if on_chain else "rejected", confirmations)
            )
    followed = await asyncio.to_thread(_followed, engine, tip - COINBASE_MATURITY_BLOCKS + 1)
    for block_hash, entry_id, status, height, reversals in followed:
        confirmations = await bitcoind.block_confirmations(block_hash)
        if status == "orphaned":
            if confirmations >= 0 and await asyncio.to_thread(
                _restore, engine, block_hash, entry_id, confirmations, reversals
            ):
                changes.append(BlockChange(block_hash, "restored", confirmations))
            continue
        competing = tip - height + 1  # best-chain blocks at or above its height
        if 0 <= confirmations < COINBASE_MATURITY_BLOCKS or (
            confirmations < 0 and competing < orphan_depth
        ):
            await asyncio.to_thread(_set_confirmations, engine, block_hash, confirmations)
            continue
        if await asyncio.to_thread(_apply, engine, block_hash, entry_id, confirmations, reversals):
            status = "orphaned" if confirmations < 0 else "confirmed"
            changes.append(BlockChange(block_hash, status, confirmations))
    return changes
