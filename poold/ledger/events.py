"""The journal as events: a tailer follows the journal, so every posting by any process — a
block settled, confirmed or orphaned, an FPPS booking, a token period, a payout sent by `poold
payout` — is published to the event hub (`poold.events`) exactly once per subscriber. Imports
the ledger models and the hub only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from poold.events import EventHub
from poold.ledger.models import JournalEntry

log = structlog.get_logger(__name__)

KINDS = {
    "pplns_block": "block_settled",
    "fpps_block": "block_settled",
    "prop_block": "block_settled",
    "solo_block": "block_settled",
    "maturity": "block_confirmed",
    "pplns_reversal": "block_orphaned",
    "block_recredit": "block_restored",
    "fpps_period": "fpps_booked",
    "token_period": "settlement_posted",
    "payout": "payout_sent",
}


def _entries_after(engine: Engine, last: int | None) -> tuple[int, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        if last is None:  # start from now: history is in the REST endpoints
            top = conn.execute(select(func.max(JournalEntry.id))).scalar()
            return int(top or 0), []
        rows = conn.execute(
            select(
                JournalEntry.id, JournalEntry.kind, JournalEntry.reference, JournalEntry.created_ms
            )
            .where(JournalEntry.id > last)
            .order_by(JournalEntry.id)
            .limit(1000)
        ).all()
    return (int(rows[-1][0]) if rows else last), [tuple(r) for r in rows]


async def tail_journal(
    engine: Engine, hub: EventHub, interval_s: float = 1.0, *, after: int | None = None
) -> None:
    """Publish each journal entry after id `after` (None: from now on, history being in the
    REST routes) as an event, until cancelled."""
    last = after
    while True:
        try:
            last, rows = await asyncio.to_thread(_entries_after, engine, last)
            for entry_id, kind, reference, created_ms in rows:
                if kind in KINDS:
                    hub.publish(
                        {
                            "type": KINDS[kind],
                            "reference": reference,
                            "entry": int(entry_id),
                            "time_ms": int(created_ms),
                        }
                    )
        except SQLAlchemyError as exc:
            log.warning("events_tail_failed", error=str(exc).splitlines()[0])
        await asyncio.sleep(interval_s)
