"""FPPS bookings over the ledger's share slices, and the chain fees their average needs.

A booking (key `fpps:<period end, unix seconds>`) credits every slice ingested since the last
booking: per node, the slices with id > that node's cursor (a node's slices are written by its
own ingest, in id order, so a slice ingested late is booked next time, never skipped). Each is
worth credited_diff / network_diff x (subsidy + mean fees of the last N chain blocks) x (1 -
fee), where the credited difficulty caps each of its shares at the network difficulty (no
share is worth more than a block), summed exactly per account by
`accounting.fpps_settle_sums`; an account is credited floor(value + carried remainder) and the
remainder (< 1 sat) is stored for the next booking. Postings:
  + total   pool:fpps_paid              (the pool pays FPPS out of its own funds)
  - credit  miner:<account>:spendable
The cursors, the carried remainders and the settlement row are written in the same transaction
as the entry, so booking twice changes nothing. Talks to bitcoind only through the `Bitcoind`
protocol; never imports the Stratum side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import and_, delete, insert, not_, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from accounting import avg_fees, fpps_settle_sums
from poold.bitcoind.client import Bitcoind
from poold.chain.subsidy import subsidy_sat
from poold.chain.targets import network_difficulty
from poold.ledger import journal
from poold.ledger.credit_proofs import commit_credits, exact
from poold.ledger.db import fenced, ledger_entry, ledger_entry_async, unique_violation
from poold.ledger.journal import AlreadyPosted, post
from poold.ledger.models import (
    Account,
    ChainFees,
    FppsCarry,
    FppsCursor,
    JournalEntry,
    Settlement,
    ShareSlice,
)


@dataclass(frozen=True)
class FppsBooked:
    period_end_s: int
    slices: int
    credits: dict[str, int]
    carried: dict[str, Fraction]


def _recorded_heights(engine: Engine, since: int) -> set[int]:
    with engine.connect() as conn:
        return set(
            conn.execute(select(ChainFees.height).where(ChainFees.height >= since)).scalars()
        )


def _record_fees(engine: Engine, rows: list[dict[str, object]]) -> None:
    try:
        with fenced(engine) as conn:
            conn.execute(insert(ChainFees), rows)
    except IntegrityError as exc:
        if not unique_violation(exc):
            raise
        # another process recorded them first: the same facts


@ledger_entry_async
async def update_chain_fees(engine: Engine, bitcoind: Bitcoind, *, blocks: int = 144) -> int:
    """Record the fees of those of the last `blocks` chain blocks not recorded yet; returns
    the tip height. Database work runs in threads (called from the daemon's loop)."""
    tip = await bitcoind.tip_height()
    wanted = range(max(1, tip - blocks + 1), tip + 1)
    have = await asyncio.to_thread(_recorded_heights, engine, wanted.start)
    rows: list[dict[str, object]] = []
    for height in wanted:
        if height not in have:
            block_hash, fees = await bitcoind.block_fees(height)
            rows.append({"height": height, "block_hash": block_hash, "fees_sat": fees})
    if rows:
        await asyncio.to_thread(_record_fees, engine, rows)
    return tip


@ledger_entry
def average_fees(engine: Engine, *, tip: int, blocks: int = 144) -> Fraction:
    """Mean fees of the recorded chain blocks among the last `blocks` up to `tip` (0 if none)."""
    with engine.connect() as conn:
        fees = (
            conn.execute(
                select(ChainFees.fees_sat)
                .where(ChainFees.height > tip - blocks, ChainFees.height <= tip)
                .order_by(ChainFees.height)
            )
            .scalars()
            .all()
        )
    return avg_fees([int(f) for f in fees], blocks) if fees else Fraction(0)


#: An unbooked slice: (id, node id, account, credited num, credited den, bits, shares).
Unbooked = tuple[int, int, str, int, int, int, int]


def _unbooked(conn: Connection) -> tuple[list[Unbooked], dict[int, int]]:
    cursors = {
        int(n): int(c) for n, c in conn.execute(select(FppsCursor.node_id, FppsCursor.slice_id))
    }
    after_cursor = [and_(ShareSlice.node_id == n, ShareSlice.id > c) for n, c in cursors.items()]
    if cursors:
        after_cursor.append(not_(ShareSlice.node_id.in_(list(cursors))))
    query = (
        select(
            ShareSlice.id,
            ShareSlice.node_id,
            Account.name,
            ShareSlice.diff_num,
            ShareSlice.diff_den,
            ShareSlice.credit_num,
            ShareSlice.credit_den,
            ShareSlice.bits,
            ShareSlice.shares,
        )
        .join(Account, ShareSlice.account_id == Account.id)
        .order_by(ShareSlice.id)
    )
    if after_cursor:
        query = query.where(or_(*after_cursor))
    rows = [
        (int(i), int(n), a, int(num if cn is None else cn), int(den if cd is None else cd),
         int(b), int(k))
        for i, n, a, num, den, cn, cd, b, k in conn.execute(query)
    ]  # fmt: skip
    return rows, cursors


@ledger_entry
def book_fpps(
    engine: Engine,
    *,
    period_end_s: int,
    subsidy_sat: int,
    avg_fees_sat: Fraction,
    pool_fee: Fraction,
) -> FppsBooked | None:
    """Book every unbooked slice under the key of `period_end_s`; None if that key is already
    booked or there is nothing to book (nothing is written then)."""
    key = f"fpps:{period_end_s}"
    try:
        with fenced(engine) as conn:
            if conn.execute(select(Settlement.id).where(Settlement.key == key)).first():
                return None
            rows, cursors = _unbooked(conn)
            carry_in = {
                a: Fraction(v) for a, v in conn.execute(select(FppsCarry.account, FppsCarry.value))
            }
            if not rows:
                return None
            nets: dict[int, Fraction] = {}
            sums: list[tuple[str, Fraction, Fraction, int]] = []
            for _, _, account, num, den, bits, shares in rows:
                if bits not in nets:
                    nets[bits] = network_difficulty(bits)
                # Ingest caps each share; a slice written another way (before the cap, by
                # hand) is still bounded here: never more than one block per share.
                credit = min(Fraction(num, den), nets[bits] * shares)
                sums.append((account, credit, nets[bits], shares))
            result = fpps_settle_sums(
                sums,
                subsidy_sat=subsidy_sat,
                avg_fees_sat=avg_fees_sat,
                pool_fee=pool_fee,
                carry_in=carry_in,
            )
            credited = {a: c for a, c in sorted(result.credits.items()) if c}
            lines = [(journal.pool("fpps_paid"), sum(credited.values()))]
            lines += [(journal.miner(a), -c) for a, c in credited.items()]
            post(conn, kind="fpps_period", reference=str(period_end_s), key=key, lines=lines)
            commit_credits(
                conn,
                key=key,
                kind="fpps_period",
                reference=str(period_end_s),
                inputs={
                    "period_end": period_end_s,
                    "subsidy_sat": subsidy_sat,
                    "avg_fees_sat": exact(Fraction(avg_fees_sat)),
                    "pool_fee": exact(Fraction(pool_fee)),
                    "booked_sat": sum(credited.values()),
                },
                lines=_fpps_lines(sums, result.credits, carry_in, result.carry),
            )
            conn.execute(delete(FppsCarry))
            carried = {a: v for a, v in result.carry.items() if v}
            if carried:
                conn.execute(
                    insert(FppsCarry), [{"account": a, "value": str(v)} for a, v in carried.items()]
                )
            last: dict[int, int] = {}
            for slice_id, node_id, *_rest in rows:
                last[node_id] = slice_id
            for node_id, slice_id in last.items():
                if node_id in cursors:
                    conn.execute(
                        update(FppsCursor)
                        .where(FppsCursor.node_id == node_id)
                        .values(slice_id=slice_id)
                    )
                else:
                    conn.execute(insert(FppsCursor).values(node_id=node_id, slice_id=slice_id))
            return FppsBooked(period_end_s, len(rows), credited, carried)
    except AlreadyPosted:
        return None  # another process booked this period first


def _fpps_lines(
    sums: list[tuple[str, Fraction, Fraction, int]],
    booked: Mapping[str, int],
    carry_in: Mapping[str, Fraction],
    carry_out: Mapping[str, Fraction],
) -> dict[str, dict[str, object]]:
    """Each account's line of a booking: satoshis booked, its credited work in network
    difficulties (summed per network difficulty and denominator first: one Fraction per
    group, not per slice), the remainder carried in and out, and its number of shares (no
    share is worth more than a block, so the score is never above it: `verify.py` checks)."""
    work: dict[tuple[str, Fraction, int], int] = {}
    counts: dict[str, int] = {}
    for account, credit, nd, shares in sums:
        key = (account, nd, credit.denominator)
        work[key] = work.get(key, 0) + credit.numerator
        counts[account] = counts.get(account, 0) + shares
    scores: dict[str, Fraction] = {}
    for (account, nd, den), num in work.items():
        scores[account] = scores.get(account, Fraction(0)) + Fraction(num, den) / nd
    return {
        a: {
            "credit_sat": int(booked.get(a, 0)),
            "score": exact(scores.get(a, Fraction(0))),
            "carry_in": exact(Fraction(carry_in.get(a, 0))),
            "carry_out": exact(Fraction(carry_out.get(a, 0))),
            "shares": counts.get(a, 0),
        }
        for a in sorted(set(booked) | set(scores) | set(carry_in) | set(carry_out))
    }


@ledger_entry_async
async def book_with_bitcoind(
    engine: Engine,
    bitcoind: Bitcoind,
    *,
    period_end_s: int,
    fee_window_blocks: int,
    pool_fee: Fraction,
) -> FppsBooked | None:
    """`book_fpps` for the period ending at `period_end_s`, with the chain's recent fees brought
    up to date first and the subsidy of the next block (the daemon's and `poold settle`'s way)."""
    tip = await update_chain_fees(engine, bitcoind, blocks=fee_window_blocks)
    avg = await asyncio.to_thread(average_fees, engine, tip=tip, blocks=fee_window_blocks)
    return await asyncio.to_thread(
        book_fpps,
        engine,
        period_end_s=period_end_s,
        subsidy_sat=subsidy_sat(tip + 1),
        avg_fees_sat=avg,
        pool_fee=pool_fee,
    )


@ledger_entry
def last_booking(engine: Engine) -> int | None:
    """The period end (unix seconds) of the newest FPPS booking, if any."""
    with engine.connect() as conn:
        ref = conn.execute(
            select(JournalEntry.reference)
            .where(JournalEntry.kind == "fpps_period")
            .order_by(JournalEntry.id.desc())
            .limit(1)
        ).scalar()
    return None if ref is None else int(ref)
