"""poold against a real regtest bitcoind: jobs from its templates, blocks it accepts."""

from __future__ import annotations

import pytest

from poold.bitcoind.client import BitcoindError
from poold.bitcoind.rpc import RpcBitcoind
from poold.chain.address import Network, address_to_script
from poold.jobs.coinbase import bip34_height
from simulation.fleet import run_fleet
from tests.helpers import PATIENCE_S

pytestmark = pytest.mark.regtest

TAG = "/poold-regtest/"


async def test_blocks_found_through_poold_are_accepted(
    bitcoind, node_rpc, start_daemon, config_factory
) -> None:
    address = await node_rpc.call("getnewaddress")
    start_height = await node_rpc.call("getblockcount")
    cfg = config_factory(
        bitcoind={
            "kind": "rpc",
            "url": bitcoind.url,
            "user": "u",
            "password": "p",
            "poll_interval_s": 0.1,
        },
        pool={"network": "regtest", "payout_address": address, "coinbase_tag": TAG},
        stratum={"start_difficulty": "1/65536", "min_difficulty": "1/65536"},
    )
    rd = await start_daemon(cfg)
    host, port = rd.address
    stats = await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        account="regtest",
        # A block can be accepted before any share's reply arrives (replies wait for the
        # fsync that covers their shares): wait for both.
        until=lambda s: s.accepted > 0 and any(b.accepted for b in rd.daemon.blocks),
    )
    assert stats.accepted > 0
    accepted = [b for b in rd.daemon.blocks if b.accepted]
    assert accepted, f"no block accepted: {rd.daemon.blocks}"
    # Races between our own blocks are the only acceptable rejections.
    for b in rd.daemon.blocks:
        assert b.accepted or b.reason in {
            "duplicate",
            "inconclusive",
            "prev-blk-not-found",
            "duplicate-inconclusive",
            "bad-prevblk",
            "time-too-old",
        }, b
    height = await node_rpc.call("getblockcount")
    assert height >= start_height + len(accepted) > start_height
    for b in accepted:
        info = await node_rpc.call("getblock", b.hash_hex, 1)
        assert info["height"] == b.height
    best = await node_rpc.call("getblock", await node_rpc.call("getbestblockhash"), 2)
    coinbase = best["tx"][0]
    script_sig = bytes.fromhex(coinbase["vin"][0]["coinbase"])
    assert script_sig.startswith(bip34_height(best["height"]))
    assert TAG.encode() in script_sig
    payout = address_to_script(address, Network.REGTEST)
    assert coinbase["vout"][0]["scriptPubKey"]["hex"] == payout.hex()
    assert address in coinbase["vout"][0]["scriptPubKey"].get("addresses", [address])
    await rd.shutdown()


async def test_rpc_errors_are_clear(bitcoind) -> None:
    bad = RpcBitcoind(bitcoind.url, "u", "wrong")
    with pytest.raises(BitcoindError, match="401"):
        await bad.best_block_hash()
    await bad.close()
    down = RpcBitcoind("http://127.0.0.1:9", "u", "p", timeout_s=2)
    with pytest.raises(BitcoindError, match="unreachable"):
        await down.get_template()
    await down.close()
    rpc = bitcoind.rpc()
    with pytest.raises(BitcoindError, match="nosuchmethod"):
        await rpc.call("nosuchmethod")
    with pytest.raises(BitcoindError, match="decode"):
        await rpc.submit_block("00")
    await rpc.close()
