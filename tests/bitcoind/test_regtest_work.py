"""Every share mined through poold against a real regtest bitcoind is rebuilt into its 80-byte
header from the share log alone (job records + share records), and the rebuilt header of each
block-finding share is the header bitcoind holds for that block."""

from __future__ import annotations

import pytest

from poold.chain.targets import target_from_difficulty
from poold.shares.work import proven_shares
from simulation.fleet import run_fleet
from tests.helpers import PATIENCE_S

pytestmark = pytest.mark.regtest


async def test_shares_on_the_real_node_rebuild_into_their_headers(
    bitcoind, node_rpc, start_daemon, config_factory
) -> None:
    from fractions import Fraction

    address = await node_rpc.call("getnewaddress")
    cfg = config_factory(
        bitcoind={"kind": "rpc", "url": bitcoind.url, "user": "u", "password": "p",
                  "poll_interval_s": 0.1},
        pool={"network": "regtest", "payout_address": address},
        stratum={"start_difficulty": "1/65536", "min_difficulty": "1/65536"},
    )  # fmt: skip
    rd = await start_daemon(cfg)
    host, port = rd.address
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        account="regtest",
        until=lambda s: s.accepted >= 30 and any(b.accepted for b in rd.daemon.blocks),
    )
    await rd.shutdown()
    proven = list(proven_shares(cfg.sharelog.path))
    assert len(proven) == rd.daemon.metrics.shares_accepted >= 30
    for ps in proven:
        diff = Fraction(ps.share.diff_num, ps.share.diff_den)
        assert int.from_bytes(ps.hash, "little") <= target_from_difficulty(diff)
    found = {b.hash_hex for b in rd.daemon.blocks if b.accepted}
    rebuilt = {ps.hash[::-1].hex(): ps.header for ps in proven if ps.share.block}
    assert found and found <= rebuilt.keys()
    for block_hash in found:
        assert await node_rpc.call("getblockheader", block_hash, False) == rebuilt[block_hash].hex()
