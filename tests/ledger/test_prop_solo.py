"""PROP and SOLO settlement in the ledger, on SQLite and PostgreSQL: credits equal the rule
(accounting.reference) over the ledger's own slices, settling twice changes nothing, the
journal balances, and replay from the share log agrees and names a moved satoshi."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from accounting import reference
from poold.bitcoind.simnet import SimNet
from poold.chain.targets import network_difficulty
from poold.events import EventHub
from poold.ledger.db import LedgerError
from poold.ledger.ingest import ingest
from poold.ledger.models import Account, Block, JournalLine, ShareSlice
from poold.ledger.replay import replay
from poold.ledger.scheduler import LedgerScheduler
from poold.ledger.settle import balances, settle_block, settle_pending, verify
from poold.metrics import Metrics
from poold.shares.log import ShareLog
from tests.helpers import make_config
from tests.ledger.test_settle import BITS, T0, mine

FEE = Fraction(1, 100)
REWARD = 5_000_000_000


def block_hash(i: int) -> str:
    return f"{i:064x}"


def rows_between(engine: sa.Engine, after_minute: int | None, last_minute: int) -> list:
    """The ledger's slices of minutes (after, last], read directly (not through window.py)."""
    with engine.connect() as conn:
        q = (
            sa.select(Account.name, ShareSlice.diff_num, ShareSlice.diff_den, ShareSlice.bits)
            .join(Account, ShareSlice.account_id == Account.id)
            .where(ShareSlice.slice_start <= last_minute)
        )
        if after_minute is not None:
            q = q.where(ShareSlice.slice_start > after_minute)
        rows = conn.execute(q).all()
    return [(a, Fraction(int(n), int(d)), network_difficulty(b)) for a, n, d, b in rows]


def journal_credits(engine: sa.Engine, h: str) -> tuple[dict[str, int], int, int]:
    from poold.ledger.models import Settlement

    with engine.connect() as conn:
        lines = conn.execute(
            sa.select(JournalLine.account, JournalLine.amount_sat)
            .join(Settlement, Settlement.entry_id == JournalLine.entry_id)
            .where(Settlement.key.like(f"%:{h}"))
        ).all()
    credits = {a.split(":")[1]: -v for a, v in lines if a.startswith("miner:")}
    fee = -sum(v for a, v in lines if a == "pool:fee")
    rest = -sum(v for a, v in lines if a == "pool:unallocated")
    return credits, fee, rest


def minute(i: int) -> int:
    return (T0 + i * 60_000) // 60_000 * 60


def test_prop_pays_each_round_since_the_previous_accepted_block(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    # Blocks after the shares of minutes 10, 20 (refused by the node: no round ends), 30, 39.
    mine(log, 40, {10: True, 20: False, 30: True, 39: True})
    ingest(ledger, log, 0, batch_records=9)
    done = settle_pending(ledger, pool_fee=FEE, scheme="prop")
    assert [d.block_hash for d in done] == [block_hash(i) for i in (10, 30, 39)]
    rounds = {10: (None, 10), 30: (10, 30), 39: (30, 39)}
    for i, (after, last) in rounds.items():
        want = reference.prop(
            REWARD,
            rows_between(ledger, None if after is None else minute(after), minute(last)),
            FEE,
        )
        got = journal_credits(ledger, block_hash(i))
        assert got == ({a: c for a, c in want[0].items() if c}, want[1], want[2]), i
        assert sum(got[0].values()) + got[1] + got[2] == REWARD
    # The round of block 30 is the twenty minutes 11..30: block 20 was refused.
    assert len(rows_between(ledger, minute(10), minute(30))) == 20
    assert verify(ledger) == []
    before = balances(ledger)
    assert settle_pending(ledger, pool_fee=FEE, scheme="prop") == []
    assert settle_block(ledger, block_hash(30), pool_fee=FEE, scheme="prop") is None
    assert balances(ledger) == before

    report = replay(ledger, log, 0, pool_fee=FEE)
    assert report.ok, report.problems
    assert report.blocks_checked == 3
    _move_one_satoshi(ledger)
    # Still balanced, but no longer what the block's committed credit lines say: `verify`
    # sees it through the credit tree, and the replay through the shares.
    problems = verify(ledger)
    assert len(problems) == 1 and "differ from its credit lines" in problems[0], problems
    moved = replay(ledger, log, 0, pool_fee=FEE)
    assert any("journal credits differ from the replay" in p for p in moved.problems)


def test_blocks_of_one_minute_share_its_round(ledger: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "log"
    mine(log, 12, {5: True, 11: True})
    extra = ShareLog(log)
    extra.open()
    extra.append(
        {
            "t": "block",
            "ts": T0 + 11 * 60_000 + 30_000,
            "node": 0,
            "height": 200,
            "hash": "ab" * 32,
            "accepted": True,
            "reason": None,
            "account": "m1",
            "worker": "rig",
            "reward_sat": REWARD,
            "bits": BITS,
        }
    )
    extra.flush()
    extra.close()
    ingest(ledger, log, 0)
    settle_pending(ledger, pool_fee=FEE, scheme="prop")
    assert journal_credits(ledger, block_hash(11)) == journal_credits(ledger, "ab" * 32)
    assert journal_credits(ledger, block_hash(11))[0].keys() == {"m2", "m3", "m0", "m1"}
    assert replay(ledger, log, 0, pool_fee=FEE).ok


def test_prop_waits_while_an_earlier_block_has_no_answer(ledger: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "log"
    mine(log, 20, {5: True, 10: True, 15: True})
    ingest(ledger, log, 0)
    with ledger.begin() as conn:  # the node never answered for block 10
        conn.execute(
            sa.update(Block)
            .where(Block.hash == block_hash(10))
            .values(accepted=False, status="unknown")
        )
    done = settle_pending(ledger, pool_fee=FEE, scheme="prop")
    assert [d.block_hash for d in done] == [block_hash(5)]  # 15's round start is not known
    with pytest.raises(LedgerError, match="has no answer from bitcoind"):
        settle_block(ledger, block_hash(15), pool_fee=FEE, scheme="prop")
    with ledger.begin() as conn:  # block following found it on the chain
        conn.execute(
            sa.update(Block)
            .where(Block.hash == block_hash(10))
            .values(accepted=True, status="pending")
        )
    done = settle_pending(ledger, pool_fee=FEE, scheme="prop")
    assert [d.block_hash for d in done] == [block_hash(10), block_hash(15)]
    assert len(rows_between(ledger, minute(10), minute(15))) == 5
    assert replay(ledger, log, 0, pool_fee=FEE).blocks_checked == 3


def test_solo_pays_the_finder_reward_less_fee(ledger: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "log"
    mine(log, 20, {5: True, 6: True, 9: False, 14: True})
    ingest(ledger, log, 0)
    done = settle_pending(ledger, pool_fee=FEE, scheme="solo")
    assert [d.block_hash for d in done] == [block_hash(i) for i in (5, 6, 14)]
    for i in (5, 6, 14):  # mine() gives block i to account m{i % 4}
        assert journal_credits(ledger, block_hash(i)) == (
            {f"m{i % 4}": 4_950_000_000},
            50_000_000,
            0,
        )
    bal = balances(ledger, "pending")
    assert bal["miner:m1"] == -4_950_000_000 and "miner:m0" not in bal
    assert verify(ledger) == [] and settle_pending(ledger, pool_fee=FEE, scheme="solo") == []
    assert replay(ledger, log, 0, pool_fee=FEE).blocks_checked == 3
    _move_one_satoshi(ledger)
    assert not replay(ledger, log, 0, pool_fee=FEE).ok


def _move_one_satoshi(engine: sa.Engine) -> None:
    """Move one satoshi between two credit lines: the journal still balances."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(JournalLine.id, JournalLine.amount_sat)
            .where(JournalLine.account.like("miner:%"))
            .order_by(JournalLine.id)
            .limit(2)
        ).all()
        for (line_id, amount), delta in zip(rows, (-1, 1), strict=True):
            conn.execute(
                sa.update(JournalLine)
                .where(JournalLine.id == line_id)
                .values(amount_sat=amount + delta)
            )


async def test_the_scheduler_waits_for_a_block_record_still_in_flight(
    ledger_url: str, tmp_path: Path
) -> None:
    """A block's record reaches the log when the node answers its submission, possibly after
    later shares and blocks: PROP must not settle a later block before the earlier one is in
    the ledger (its round would start too early). The node's heartbeats say so: while block
    10 is in flight they hold its watermark at block 10's time."""
    log = tmp_path / "log"
    mine(log, 20, {5: True, 15: True})  # block 10 was found too, its submission in flight

    def beat(through: int) -> None:
        out = ShareLog(log)
        out.open()
        out.append({"t": "beat", "ts": T0 + 30 * 60_000, "node": 0, "through": through})
        out.flush()
        out.close()

    beat(T0 + 10 * 60_000 + 1)  # held at block 10's finding time
    cfg = make_config(
        tmp_path,
        sharelog={"path": str(log)},
        pool={"scheme": "prop", "fee": "1/100"},
        ledger={"url": ledger_url, "auto_migrate": True},
    )
    node = SimNet(difficulty=Fraction(1, 64))
    sched = LedgerScheduler(
        cfg,
        node,
        Metrics(),
        EventHub(),
        lambda: (T0 + 30 * 60_000) / 1000,
        log_id=lambda: "log-of-node-0",
    )
    await sched.attach()
    try:
        await sched.run_pass()
        engine = sched.ledger
        assert engine is not None
        assert sched.gate is not None and sched.gate.through_ms == T0 + 10 * 60_000 + 1
        assert journal_credits(engine, block_hash(5))[0]
        assert journal_credits(engine, block_hash(15)) == ({}, 0, 0)  # waits for block 10
        late = ShareLog(log)
        late.open()
        late.append(
            {
                "t": "block",
                "ts": T0 + 10 * 60_000 + 1,
                "node": 0,
                "height": 110,
                "hash": block_hash(10),
                "accepted": True,
                "reason": None,
                "account": "m2",
                "worker": "rig",
                "reward_sat": REWARD,
                "bits": BITS,
            }
        )
        late.flush()
        late.close()
        beat(T0 + 30 * 60_000)  # the record is written: the watermark moves on
        await sched.run_pass()
        want = reference.prop(REWARD, rows_between(engine, minute(10), minute(15)), FEE)
        got = journal_credits(engine, block_hash(15))
        assert got == ({a: c for a, c in want[0].items() if c}, want[1], want[2])
        assert journal_credits(engine, block_hash(10))[0]
    finally:
        await sched.close(5)
        await node.close()
