"""Following found blocks on the node: maturity and orphans, as new journal postings.

A settled block with >= 100 confirmations matures: each miner's immature credit moves to
`miner:<account>:spendable` (and the coinbase to `pool:wallet`). A block off the best chain is
orphaned only once the best chain holds `orphan_depth` blocks at or above its height (a short
reorg often brings it back): its settlement is then reversed line by line, never deleted. An
orphaned block is still watched until it could no longer have matured; if it returns to the
best chain its settlement lines are posted again (a re-credit) and it is followed as before.
A block whose submission got no answer (status `unknown`) is looked up on the chain: there,
it becomes accepted and the next settlement pass settles it; still absent when it could no
longer have matured, it is rejected. Each step has its own settlements key (`mature:<hash>`,
`orphan:<hash>`, then `recredit:<hash>:<n>` and `orphan:<hash>:<n>` for the n-th return and
loss) written in the same transaction, so following twice, or from two processes, changes
nothing. Node errors are the caller's (a retry next pass).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine

from poold.ledger import journal
from poold.ledger.db import ledger_entry_async
from poold.ledger.journal import AlreadyPosted, post
from poold.ledger.models import Block, JournalLine, Settlement
from poold.ledger.settle import BLOCK_KEYS
from poold.node.base import Node

COINBASE_MATURITY_BLOCKS = 100  # confirmations before a coinbase may be spent
#: Default depth of the competing chain before a block's credits are reversed.
ORPHAN_DEPTH = 6


@dataclass(frozen=True)
class BlockChange:
    block_hash: str
    status: str  # confirmed | orphaned | restored | accepted | rejected (for unknown ones)
    confirmations: int


def _post(
    engine: Engine,
    block_hash: str,
    kind: str,
    key: str,
    status: str,
    lines: list[tuple[str, int]],
    confirmations: int,
) -> bool:
    try:
        with engine.begin() as conn:
            post(conn, kind=kind, reference=block_hash, key=key, lines=lines)
            conn.execute(
                update(Block)
                .where(Block.hash == block_hash)
                .values(status=status, confirmations=confirmations)
            )
        return True
    except AlreadyPosted:
        return False


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
    with engine.begin() as conn:
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
    """Post the reversal (orphaned) or the maturity moves (confirmed) for one pending block;
    `reversals` is how often it was orphaned before (0: never)."""
    lines = _lines(engine, entry_id)
    if confirmations < 0:
        key = f"orphan:{block_hash}" + (f":{reversals}" if reversals else "")
        reversal = [(a, -v) for a, v in lines]
        return _post(engine, block_hash, "pplns_reversal", key, "orphaned", reversal, -1)
    moves: list[tuple[str, int]] = []
    for account, amount in lines:
        owner = journal.miner_of(account, "immature")
        if owner is not None:
            moves += [(account, -amount), (journal.miner(owner, "spendable"), amount)]
        elif journal.parse(account).kind == "coinbase":
            moves += [(account, -amount), (journal.pool("wallet"), amount)]
    return _post(
        engine, block_hash, "maturity", f"mature:{block_hash}", "confirmed", moves, confirmations
    )


def _restore(
    engine: Engine, block_hash: str, entry_id: int, confirmations: int, reversals: int
) -> bool:
    """An orphaned block is back on the best chain: post its settlement lines again."""
    lines = _lines(engine, entry_id)
    key = f"recredit:{block_hash}:{reversals}"
    return _post(engine, block_hash, "block_recredit", key, "pending", lines, confirmations)


def _set_confirmations(engine: Engine, block_hash: str, confirmations: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Block).where(Block.hash == block_hash).values(confirmations=confirmations)
        )


@ledger_entry_async
async def follow_blocks(
    engine: Engine, node: Node, *, orphan_depth: int = ORPHAN_DEPTH
) -> list[BlockChange]:
    """Check every settled block that is pending, or orphaned but young enough to return, on
    the node; post maturity, reversal or re-credit.

    Database work runs in threads: this is called from the daemon's event loop."""
    if orphan_depth < 1:
        raise ValueError("orphan_depth must be >= 1")
    tip = await node.tip_height()
    changes = []
    for block_hash, height in await asyncio.to_thread(_unknown, engine):
        confirmations = await node.block_confirmations(block_hash)
        on_chain = confirmations >= 0
        if not on_chain and tip - height + 1 < COINBASE_MATURITY_BLOCKS:
            continue  # not there (yet): a reorg may still bring it, until it could not mature
        if await asyncio.to_thread(_resolve, engine, block_hash, on_chain, confirmations):
            changes.append(
                BlockChange(block_hash, "accepted" if on_chain else "rejected", confirmations)
            )
    followed = await asyncio.to_thread(_followed, engine, tip - COINBASE_MATURITY_BLOCKS + 1)
    for block_hash, entry_id, status, height, reversals in followed:
        confirmations = await node.block_confirmations(block_hash)
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
