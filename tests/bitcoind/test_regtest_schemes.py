"""PROP and SOLO end to end on the real regtest node: the daemon's own ledger loop settles
every block it found, each block's credits equal the rule computed here from the share log
(not from the ledger), an orphaned block is reversed, the rest mature, and replay agrees."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from accounting import reference
from poold.chain.targets import network_difficulty
from poold.ledger.db import make_engine
from poold.ledger.journal import open_pending
from poold.ledger.maturity import follow_blocks
from poold.ledger.models import JournalLine, Settlement
from poold.ledger.replay import replay
from poold.ledger.settle import balances, verify
from poold.shares.format import ShareFields
from poold.shares.log import LogPosition, scan_from
from simulation.fleet import FleetStats, run_fleet
from tests.helpers import PATIENCE_S, wait_for

pytestmark = pytest.mark.regtest
FEE = Fraction(1, 100)


def read_log(path: Path) -> tuple[list[tuple[int, str, Fraction, Fraction]], list[dict]]:
    """Every share (minute, account, difficulty, network difficulty) and block record."""
    shares, blocks = [], []
    for _pos, rec in scan_from(path, LogPosition(1, 0)):
        if isinstance(rec, ShareFields):
            shares.append(
                (
                    rec.ts_ms // 60_000,
                    rec.account.decode(),
                    Fraction(rec.diff_num, rec.diff_den),
                    network_difficulty(rec.bits),
                )
            )
        elif rec.get("t") == "block":
            blocks.append(rec)
    return shares, blocks


def rule(scheme: str, rec: dict, shares: list, blocks: list) -> tuple[dict[str, int], int, int]:
    """What the scheme says block `rec` pays, from the share log alone."""
    reward = int(rec["reward_sat"])
    if scheme == "solo":
        return reference.solo(reward, str(rec["account"]), FEE)
    m = int(rec["ts"]) // 60_000
    before = [int(b["ts"]) // 60_000 for b in blocks if b["accepted"] is True]
    after = max((x for x in before if x < m), default=None)
    round_ = [(a, d, n) for t, a, d, n in shares if t <= m and (after is None or t > after)]
    credits, fee, rest = reference.prop(reward, round_, FEE)
    return {a: c for a, c in credits.items() if c}, fee, rest


def journal(engine: sa.Engine, key: str) -> tuple[dict[str, int], int, int]:
    with engine.connect() as conn:
        lines = conn.execute(
            sa.select(JournalLine.account, JournalLine.amount_sat)
            .join(Settlement, Settlement.entry_id == JournalLine.entry_id)
            .where(Settlement.key == key)
        ).all()
    credits = {a.split(":")[1]: -v for a, v in lines if a.startswith("miner:")}
    fee = -sum(v for a, v in lines if a == "pool:fee")
    rest = -sum(v for a, v in lines if a == "pool:unallocated")
    return credits, fee, rest


async def mine_a_round(url: str, rd: Any) -> None:
    """alice (one miner) and bob (two) mine until both got shares in and then a block was
    accepted: a block whose round pays both."""
    alice, bob = FleetStats(), FleetStats()
    both_in: list[int] = []  # blocks accepted when both fleets first had a share in

    def accepted_blocks() -> int:
        return sum(b.accepted for b in rd.daemon.blocks)

    def done(_s: FleetStats) -> bool:
        if not both_in and alice.accepted and bob.accepted:
            both_in.append(accepted_blocks())
        return bool(both_in) and accepted_blocks() > both_in[0]

    await asyncio.gather(
        run_fleet(url, miners=1, duration_s=PATIENCE_S, account="alice", stats=alice, until=done),
        run_fleet(url, miners=2, duration_s=PATIENCE_S, account="bob", stats=bob, until=done),
    )
    assert alice.accepted and bob.accepted, (alice, bob)


async def coinbase_value(node_rpc, block_hash: str) -> int:
    txid = (await node_rpc.call("getblock", block_hash))["tx"][0]
    tx = await node_rpc.call("getrawtransaction", txid, 1)
    return sum(int(Decimal(str(out["value"])) * 100_000_000) for out in tx["vout"])


@pytest.mark.parametrize("scheme", ["prop", "solo"])
async def test_each_block_credits_what_the_scheme_says(
    scheme: str, bitcoind, node_rpc, start_daemon, config_factory, tmp_path: Path
) -> None:
    address = await node_rpc.call("getnewaddress")
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

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
            "scheme": scheme,
            "fee": "1/100",
        },
        stratum={"start_difficulty": "1/65536", "min_difficulty": "1/65536"},
        ledger={
            "url": f"sqlite:///{tmp_path / 'ledger.db'}",
            "ingest_interval_s": 0.2,
            "ingest_open_minutes": True,
            "auto_migrate": True,
        },
    )
    rd = await start_daemon(cfg, clock=clock)
    host, port = rd.address
    url = f"stratum+tcp://{host}:{port}"
    for _round in range(2):  # two rounds of blocks, a (clock) minute and more apart
        await mine_a_round(url, rd)
        offset[0] += 90
    await rd.daemon.submitter.drain(10)  # a block found at the very end may be in flight
    ours = [b.hash_hex for b in rd.daemon.blocks if b.accepted]
    assert len(ours) >= 2, rd.daemon.blocks
    # Every block's minute is closed now: the daemon's ledger loop settles them all.
    engine = make_engine(cfg.ledger.url)
    keys = {f"{scheme}:{h}" for h in ours}

    def settled() -> bool:
        with engine.connect() as conn:
            return keys <= set(conn.execute(sa.select(Settlement.key)).scalars())

    await wait_for(settled, "the daemon's ledger loop to settle every block")
    await rd.shutdown()

    shares, blocks = read_log(cfg.sharelog.path)
    by_hash = {str(b["hash"]): b for b in blocks}
    payees: set[str] = set()
    for h in ours:
        rec = by_hash[h]
        assert int(rec["reward_sat"]) == await coinbase_value(node_rpc, h)
        want = rule(scheme, rec, shares, blocks)
        assert journal(engine, f"{scheme}:{h}") == want, h
        assert sum(want[0].values()) + want[1] + want[2] == int(rec["reward_sat"])
        payees |= set(want[0])
    assert payees == {"alice", "bob"}  # both miners were paid by some block
    report = replay(engine, cfg.sharelog.path, cfg.stratum.node_id, pool_fee=FEE)
    assert report.ok and report.blocks_checked == len(ours), report

    # Orphan our newest block, then mature the rest.
    tip = await node_rpc.call("getbestblockhash")
    assert tip in ours
    height = (await node_rpc.call("getblockheader", tip))["height"]
    await node_rpc.call("invalidateblock", tip)
    await node_rpc.call("generatetoaddress", 1, address)
    competing = await node_rpc.call("getblockcount") - height + 1
    changes = await follow_blocks(engine, node_rpc, orphan_depth=competing)
    assert (tip, "orphaned") in [(c.block_hash, c.status) for c in changes]
    await node_rpc.call("generatetoaddress", 100, address)
    await follow_blocks(engine, node_rpc)
    bal = balances(engine)
    with engine.connect() as conn:
        assert open_pending(conn, tip) is None  # voided
    kept = sum(sum(journal(engine, f"{scheme}:{h}")[0].values()) for h in ours if h != tip)
    assert -sum(v for k, v in bal.items() if k.startswith("miner:")) == kept
    pending = balances(engine, "pending")
    assert all(v == 0 for k, v in pending.items() if k.startswith("miner:"))
    assert verify(engine) == []
    engine.dispose()
