"""Following found blocks on the node: maturity and orphans, as new journal postings.

A settled block with >= 100 confirmations matures: each miner's immature credit moves to
`miner:<account>:spendable` (and the coinbase to `pool:wallet`). A block that left the best
chain is orphaned: its settlement is reversed line by line, never deleted. Each step has its
own settlements key (`mature:<hash>`, `orphan:<hash>`) written in the same transaction, so
following twice changes nothing. Node errors are the caller's (a retry next pass).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from poold.ledger.db import ledger_entry_async
from poold.ledger.models import Block, JournalEntry, JournalLine, Settlement
from poold.ledger.settle import BLOCK_KEYS
from poold.node.base import Node

MATURITY = 100


@dataclass(frozen=True)
class BlockChange:
    block_hash: str
    status: str  # confirmed | orphaned
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
            entry_id = conn.execute(
                insert(JournalEntry)
                .values(kind=kind, reference=block_hash, created_ms=int(time.time() * 1000))
                .returning(JournalEntry.id)
            ).scalar_one()
            conn.execute(
                insert(JournalLine),
                [{"entry_id": entry_id, "account": a, "amount_sat": v} for a, v in lines],
            )
            conn.execute(insert(Settlement).values(key=key, entry_id=entry_id))
            conn.execute(
                update(Block)
                .where(Block.hash == block_hash)
                .values(status=status, confirmations=confirmations)
            )
        return True
    except IntegrityError:
        return False  # already posted


def _pending(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Block.hash, Settlement.entry_id)
            .join(
                Settlement,
                or_(*(Settlement.key == prefix + Block.hash for prefix in BLOCK_KEYS.values())),
            )
            .where(Block.status == "pending")
        ).all()
    return [(h, e) for h, e in rows]


def _apply(engine: Engine, block_hash: str, entry_id: int, confirmations: int) -> bool:
    """Post the reversal (orphaned) or the maturity moves (confirmed) for one block."""
    with engine.connect() as conn:
        lines = conn.execute(
            select(JournalLine.account, JournalLine.amount_sat).where(
                JournalLine.entry_id == entry_id
            )
        ).all()
    if confirmations < 0:
        reversal = [(a, -v) for a, v in lines]
        return _post(
            engine,
            block_hash,
            "pplns_reversal",
            f"orphan:{block_hash}",
            "orphaned",
            reversal,
            -1,
        )
    moves: list[tuple[str, int]] = []
    for account, amount in lines:
        if account.endswith(":immature"):
            moves += [(account, -amount), (account[: -len("immature")] + "spendable", amount)]
        elif account.startswith("coinbase:"):
            moves += [(account, -amount), ("pool:wallet", amount)]
    return _post(
        engine, block_hash, "maturity", f"mature:{block_hash}", "confirmed", moves, confirmations
    )


def _set_confirmations(engine: Engine, block_hash: str, confirmations: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Block).where(Block.hash == block_hash).values(confirmations=confirmations)
        )


@ledger_entry_async
async def follow_blocks(engine: Engine, node: Node) -> list[BlockChange]:
    """Check every settled, still-pending block on the node; post maturity or reversal.

    Database work runs in threads: this is called from the daemon's event loop."""
    changes = []
    for block_hash, entry_id in await asyncio.to_thread(_pending, engine):
        confirmations = await node.block_confirmations(block_hash)
        if 0 <= confirmations < MATURITY:
            await asyncio.to_thread(_set_confirmations, engine, block_hash, confirmations)
            continue
        if await asyncio.to_thread(_apply, engine, block_hash, entry_id, confirmations):
            status = "orphaned" if confirmations < 0 else "confirmed"
            changes.append(BlockChange(block_hash, status, confirmations))
    return changes
