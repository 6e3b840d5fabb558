"""The network over time, as the pool saw it: samples of the block being mined (height, target
bits, subsidy) and the mean fees of the last blocks, written by the ledger's leader whenever
one of them changes, and read back as the network's hashprice at each sample (`hashprices`;
over a period, `accounting.mean_hashprice` of them, time-weighted): what each token statement
and the fleet's daily series are benchmarked against. Imports accounting, the ledger models,
FPPS's fee bookkeeping and the bitcoind protocol; never Stratum."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from accounting import hashprice
from poold.bitcoind.client import Bitcoind
from poold.chain.subsidy import subsidy_sat
from poold.chain.targets import network_difficulty
from poold.ledger.db import fenced, ledger_entry, ledger_entry_async, unique_violation
from poold.ledger.fpps import average_fees, update_chain_fees
from poold.ledger.models import NetworkSample

#: The block being mined now, (height, target bits), from the current job (None: no job yet).
ChainView = Callable[[], tuple[int, int] | None]


def _exact_text(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


@ledger_entry
def record_sample(
    engine: Engine, *, t_s: int, height: int, bits: int, avg_fees_sat: Fraction, fee_blocks: int
) -> bool:
    """Record the network at `t_s` unless the newest sample already says the same; True when
    a row was written. A second writer at the same second changes nothing."""
    subsidy = subsidy_sat(height)
    fees = _exact_text(Fraction(avg_fees_sat))
    try:
        with fenced(engine) as conn:
            newest = conn.execute(
                select(
                    NetworkSample.height,
                    NetworkSample.bits,
                    NetworkSample.subsidy_sat,
                    NetworkSample.avg_fees_sat,
                )
                .where(NetworkSample.t_s <= t_s)
                .order_by(NetworkSample.t_s.desc())
                .limit(1)
            ).first()
            if newest is not None and tuple(newest) == (height, bits, subsidy, fees):
                return False
            conn.execute(
                insert(NetworkSample).values(
                    t_s=t_s,
                    height=height,
                    bits=bits,
                    subsidy_sat=subsidy,
                    avg_fees_sat=fees,
                    fee_blocks=fee_blocks,
                )
            )
    except IntegrityError as exc:
        if not unique_violation(exc):
            raise
        return False  # another process sampled this second
    return True


@ledger_entry_async
async def sample_network(
    engine: Engine, bitcoind: Bitcoind, chain: ChainView, *, now_s: int, fee_blocks: int
) -> bool:
    """Bring the chain's recent fees up to date and record the network now (FPPS's mean of
    the last `fee_blocks` blocks: the same block value FPPS pays with); False when there is no
    job yet or nothing changed."""
    mined = chain()
    if mined is None:
        return False
    tip = await update_chain_fees(engine, bitcoind, blocks=fee_blocks)
    avg = await asyncio.to_thread(average_fees, engine, tip=tip, blocks=fee_blocks)
    height, bits = mined
    return await asyncio.to_thread(
        record_sample,
        engine,
        t_s=now_s,
        height=height,
        bits=bits,
        avg_fees_sat=avg,
        fee_blocks=fee_blocks,
    )


def hashprices(conn: Connection, start: int, end: int) -> list[tuple[int, Fraction]]:
    """(t, hashprice in sat per TH/s per day) of every sample that holds in [start, end): the
    newest at or before `start` and those after it, oldest first."""
    before = conn.execute(
        select(NetworkSample.t_s)
        .where(NetworkSample.t_s <= start)
        .order_by(NetworkSample.t_s.desc())
        .limit(1)
    ).scalar()
    first = start if before is None else int(before)
    rows = conn.execute(
        select(
            NetworkSample.t_s,
            NetworkSample.bits,
            NetworkSample.subsidy_sat,
            NetworkSample.avg_fees_sat,
        )
        .where(NetworkSample.t_s >= first, NetworkSample.t_s < end)
        .order_by(NetworkSample.t_s)
    ).all()
    return [
        (int(t), hashprice(network_difficulty(int(b)), int(s), Fraction(f))) for t, b, s, f in rows
    ]
