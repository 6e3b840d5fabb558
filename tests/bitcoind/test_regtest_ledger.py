"""Blocks found through poold on the real regtest node, followed to maturity or orphanhood,
and the matured credits paid out through the node wallet."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from poold.chain.address import Network
from poold.ledger import journal
from poold.ledger.db import make_engine, migrate
from poold.ledger.ingest import ingest
from poold.ledger.maturity import BlockChange, follow_blocks
from poold.ledger.models import Block, JournalEntry, JournalLine, Settlement
from poold.ledger.payouts import owed, run_payouts
from poold.ledger.settle import balances, settle_pending, verify
from simulation.fleet import run_fleet
from tests.helpers import PATIENCE_S

pytestmark = pytest.mark.regtest


def live(engine: sa.Engine, block_hash: str) -> bool:
    """The block's credits count (pending), i.e. it is not voided nor yet matured."""
    with engine.connect() as conn:
        return journal.open_pending(conn, block_hash) is not None


async def test_blocks_mature_or_are_reversed(
    bitcoind, node_rpc, start_daemon, config_factory, tmp_path: Path
) -> None:
    address = await node_rpc.call("getnewaddress")
    miner = await node_rpc.call("getnewaddress")  # the miner's account name is its address
    cfg = config_factory(
        bitcoind={
            "kind": "rpc",
            "url": bitcoind.url,
            "user": "u",
            "password": "p",
            "poll_interval_s": 0.1,
        },
        pool={
            "network": "regtest",
            "payout_address": address,
            "coinbase_tag": "/poold/",
            "fee": "1/100",
        },
        stratum={"start_difficulty": "1/65536", "min_difficulty": "1/65536"},
        # The daemon's own ledger loop is off: this test drives ingest, settlement and
        # following step by step (tests/ledger/test_daemon_ingest.py covers the loop).
        ledger={"url": f"sqlite:///{tmp_path / 'ledger.db'}", "ingest_interval_s": 0},
    )
    rd = await start_daemon(cfg)
    host, port = rd.address
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        account=miner,
        until=lambda _s: sum(b.accepted for b in rd.daemon.blocks) >= 2,
    )
    await rd.shutdown()
    ours = [b.hash_hex for b in rd.daemon.blocks if b.accepted]
    assert len(ours) >= 2, rd.daemon.blocks

    engine = make_engine(cfg.ledger.url)
    migrate(engine)
    ingest(engine, cfg.sharelog.path, cfg.stratum.node_id)
    settled = {s.block_hash: s for s in settle_pending(engine, pool_fee=cfg.pool.fee)}
    assert set(settled) == set(ours)

    # Orphan our newest block: the node abandons it and builds elsewhere.
    tip = await node_rpc.call("getbestblockhash")
    assert tip in settled
    height = (await node_rpc.call("getblockheader", tip))["height"]
    await node_rpc.call("invalidateblock", tip)
    await node_rpc.call("generatetoaddress", 1, address)
    # Not deep enough yet (one more block than the best chain now holds at or above its
    # height); a side-chain block of ours from mining may be reversed already: it is deeper.
    competing = await node_rpc.call("getblockcount") - height + 1
    early = await follow_blocks(engine, node_rpc, orphan_depth=competing + 1)
    assert tip not in {c.block_hash for c in early}
    changes = await follow_blocks(engine, node_rpc, orphan_depth=competing)
    assert [(c.block_hash, c.status) for c in changes] == [(tip, "orphaned")]

    # 100 more blocks: every other block of ours matures.
    await node_rpc.call("generatetoaddress", 100, address)
    matured = await follow_blocks(engine, node_rpc)
    assert {c.block_hash for c in matured} == set(settled) - {tip}
    assert all(c.status == "confirmed" for c in matured)
    assert await follow_blocks(engine, node_rpc) == []  # following again changes nothing
    with engine.connect() as conn:
        depth = dict(conn.execute(sa.select(Block.hash, Block.confirmations)).all())
    assert depth[tip] == -1 and all(depth[h] >= 100 for h in settled if h != tip)

    bal = balances(engine)
    kept = [s for h, s in settled.items() if h != tip]
    spendable = -sum(v for k, v in bal.items() if k.startswith("miner:"))
    assert spendable == sum(sum(s.credits.values()) for s in kept)
    pending = balances(engine, "pending")
    assert all(v == 0 for k, v in pending.items() if k.startswith("miner:"))
    assert not live(engine, tip)  # the orphan's credits were voided
    assert verify(engine) == []

    # The miner is paid what matured, through the node wallet, and the payout confirms.
    report = await run_payouts(
        engine, node_rpc, network=Network.REGTEST, min_payout_sat=1, max_outputs=10, send=True
    )
    assert report.total_sat == spendable and len(report.sent) == 1
    await node_rpc.call("generatetoaddress", 1, address)
    btc = await node_rpc.call("getreceivedbyaddress", miner, 1, exact=True)
    assert int(Decimal(str(btc)) * 100_000_000) == spendable
    again = await run_payouts(
        engine, node_rpc, network=Network.REGTEST, min_payout_sat=1, max_outputs=10, send=True
    )
    assert again.reconciled == [(report.sent[0][0], "confirmed")] and again.sent == []
    assert owed(engine) == {}
    assert verify(engine) == []
    engine.dispose()


async def test_a_reorg_reverses_only_at_depth_and_restores(
    bitcoind, node_rpc, start_daemon, config_factory, tmp_path: Path
) -> None:
    """Issue 11, defect 10: an orphan reversal was final and came at the first sign of a reorg."""
    address = await node_rpc.call("getnewaddress")
    cfg = config_factory(
        bitcoind={"kind": "rpc", "url": bitcoind.url, "user": "u", "password": "p"},
        pool={"network": "regtest", "payout_address": address, "coinbase_tag": "/poold/"},
        stratum={"start_difficulty": "1/65536", "min_difficulty": "1/65536"},
        ledger={"url": f"sqlite:///{tmp_path / 'ledger.db'}", "ingest_interval_s": 0},
    )
    rd = await start_daemon(cfg)
    host, port = rd.address
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=1,
        duration_s=PATIENCE_S,
        account="alice",
        until=lambda _s: any(b.accepted for b in rd.daemon.blocks),
    )
    await rd.shutdown()
    engine = make_engine(cfg.ledger.url)
    migrate(engine)
    ingest(engine, cfg.sharelog.path, cfg.stratum.node_id)
    assert settle_pending(engine)
    ours = await node_rpc.call("getbestblockhash")
    assert live(engine, ours)

    def mine(changes: list[BlockChange]) -> list[str]:
        return [c.status for c in changes if c.block_hash == ours]

    # Side-chain blocks of ours from mining (deeper) may be reversed along the way: the
    # assertions are about `ours` and its coinbase.
    height = (await node_rpc.call("getblockheader", ours))["height"]
    await node_rpc.call("invalidateblock", ours)
    [c1] = await node_rpc.call("generatetoaddress", 1, address)
    # Usually one competing block now; two if poold also found a side-chain block at its
    # height (the node then switched to it). Either way, one short of the depth: wait.
    depth = await node_rpc.call("getblockcount") - height + 2
    assert mine(await follow_blocks(engine, node_rpc, orphan_depth=depth)) == []
    assert live(engine, ours)
    await node_rpc.call("generatetoaddress", 1, address)
    assert mine(await follow_blocks(engine, node_rpc, orphan_depth=depth)) == ["orphaned"]
    assert not live(engine, ours)

    # The reorg goes the other way: our block is on the best chain again.
    await node_rpc.call("reconsiderblock", ours)
    await node_rpc.call("invalidateblock", c1)
    assert await node_rpc.call("getbestblockhash") == ours
    assert mine(await follow_blocks(engine, node_rpc, orphan_depth=depth)) == ["restored"]
    # Every line of the block's settlement posted again (nothing deleted).
    with engine.connect() as conn:

        def lines(kind: str) -> list[tuple[str, int]]:
            rows = conn.execute(
                sa.select(JournalLine.account, JournalLine.amount_sat)
                .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
                .where(JournalEntry.reference == ours, JournalEntry.kind == kind)
            )
            return sorted((a, int(v)) for a, v in rows)

        assert lines("block_recredit") == lines("pplns_block")
    assert live(engine, ours)
    assert mine(await follow_blocks(engine, node_rpc, orphan_depth=depth)) == []

    # ... and lost once more: a second reversal with its own key.
    await node_rpc.call("invalidateblock", ours)
    # Another address: the same coinbase on the same parent would rebuild c1, marked invalid.
    await node_rpc.call("generatetoaddress", depth, await node_rpc.call("getnewaddress"))
    assert mine(await follow_blocks(engine, node_rpc, orphan_depth=depth)) == ["orphaned"]
    with engine.connect() as conn:
        keys = sorted(
            conn.execute(
                sa.select(Settlement.key).where(Settlement.key.like(f"%{ours}%"))
            ).scalars()
        )
        kinds = conn.execute(
            sa.select(JournalEntry.kind).where(JournalEntry.reference == ours)
        ).scalars()
        kinds_seen = sorted(kinds)
    assert [k.split(":")[0] for k in keys] == ["orphan", "orphan", "pplns", "recredit"]
    assert kinds_seen == ["block_recredit", "pplns_block", "pplns_reversal", "pplns_reversal"]
    assert not live(engine, ours)
    assert verify(engine) == []
    engine.dispose()
