"""simnet accepts exactly what a node would accept from us, and says why it refuses the rest."""

from __future__ import annotations

from fractions import Fraction

import pytest

from poold.bitcoind.client import BitcoindRefused
from poold.bitcoind.simnet import SimNet
from poold.chain.subsidy import subsidy_sat
from poold.jobs.coinbase import build_coinbase
from poold.jobs.job import Job
from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.jobs.template import parse_template
from tests.helpers import pow_int

NOW = 1_800_000_000
EN1, EN2 = b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"
PAYOUT = b"\x00\x14" + bytes(range(20))


def setup(**kw: object) -> tuple[SimNet, Job]:
    net = SimNet(difficulty=Fraction(1, 2**24), clock=lambda: NOW, **kw)  # 1 in 256 is a block
    job = JobManager(CoinbaseSpec(PAYOUT, b"/t/", 4, 4)).new_job(
        parse_template(net.template()), NOW
    )
    return net, job


def solve(job: Job, *, block: bool = True) -> tuple[bytes, int]:
    for nonce in range(1 << 16):
        header = job.header(EN1, EN2, job.ntime, nonce, job.version)
        if (pow_int(header) <= job.network_target) == block:
            return header, nonce
    raise AssertionError("no nonce")


async def test_valid_block_is_accepted_and_pays_the_payout_script() -> None:
    net, job = setup()
    header, _ = solve(job)
    assert await net.submit_block(job.block(header, EN1, EN2).hex()) is None
    assert net.height == 1 and not net.tip.external
    value, script = net.tip.coinbase_outputs[0]
    assert script == PAYOUT and value == subsidy_sat(1) + net.tip.fees_sat
    assert net.tip.fees_sat > 0 and len(job.template.transactions) == 4
    assert await net.submit_block(job.block(header, EN1, EN2).hex()) == "duplicate"


async def test_refusals_name_the_rule() -> None:
    net, job = setup()
    header, _ = solve(job, block=False)
    assert await net.submit_block(job.block(header, EN1, EN2).hex()) == "high-hash"
    header, _ = solve(job)
    # Coinbase changed after hashing -> merkle root no longer matches.
    assert await net.submit_block(job.block(header, EN1, b"\xff" * 4).hex()) == "bad-txnmrklroot"
    assert (await net.submit_block("zz")).startswith("bad-block-decode")
    net.mine_external_block()
    assert await net.submit_block(job.block(header, EN1, EN2).hex()) == "prev-blk-not-found"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"height": 99}, "bad-cb-height"),
        ({"value_sat": 10**12}, "bad-cb-amount"),
        (
            {"witness_commitment": bytes.fromhex("6a24aa21a9ed") + bytes(32)},
            "bad-witness-merkle-match",
        ),
        ({"witness_commitment": None}, "unexpected-witness"),
    ],
)
async def test_bad_coinbases_are_refused(change: dict, reason: str) -> None:
    net, job = setup()
    t = job.template
    args = {
        "height": t.height,
        "value_sat": t.coinbase_value_sat,
        "payout_script": PAYOUT,
        "tag": b"/t/",
        "extranonce_size": 8,
        "witness_commitment": t.witness_commitment,
    }
    args.update(change)
    job.coinbase = build_coinbase(**args)  # type: ignore[arg-type]
    header, _ = solve(job)
    assert await net.submit_block(job.block(header, EN1, EN2).hex()) == reason


def test_subsidy_schedule() -> None:
    assert subsidy_sat(0) == 50 * 10**8
    assert subsidy_sat(840_000) == 312_500_000
    assert subsidy_sat(64 * 210_000) == 0


async def test_block_confirmations() -> None:
    net, job = setup()
    header, _ = solve(job)
    assert await net.submit_block(job.block(header, EN1, EN2).hex()) is None
    ours = net.tip.hash[::-1].hex()
    assert await net.block_confirmations(ours) == 1
    net.mine_external_block()
    assert await net.block_confirmations(ours) == 2
    assert await net.block_confirmations("00" * 32) == -1


async def test_reorg_and_readopt() -> None:
    net = SimNet(difficulty=Fraction(1, 256), clock=lambda: 1_800_000_000)
    for _ in range(3):
        net.mine_external_block()
    ours = net.tip
    gone = net.reorg(2)
    assert [b.height for b in gone] == [2, 3] and ours in gone
    assert net.height == 4 and await net.block_confirmations(ours.hash[::-1].hex()) == -1
    built = net.tip
    assert net.readopt() == gone
    assert net.height == 4 and net.blocks[3] is ours
    assert await net.block_confirmations(ours.hash[::-1].hex()) == 2
    assert await net.block_confirmations(built.hash[::-1].hex()) == -1
    assert net.readopt() == [] and net.reorg(0) == []
    assert len(net.reorg(99)) == 4  # everything but the genesis block


async def test_the_wallet_pays_through_the_next_block() -> None:
    """A send is a real transaction: offered in the template for the next tip, mined by the
    block built on it (which pays its fee to the coinbase), confirmed from there on; a reorg
    that takes its block away puts it back in the next template."""
    from poold.bitcoind.simnet import SEND_FEE_PER_OUTPUT_SAT, SEND_FEE_SAT
    from poold.chain.address import Network, address_to_script
    from tests.helpers import regtest_address

    net, job = setup()
    alice, bob = regtest_address(b"alice"), regtest_address(b"bob")
    txid = await net.send_many({alice: 12_345, bob: 678}, "poold-payout:1")
    assert await net.find_sent("poold-payout:1", 0) == txid
    assert await net.find_sent("poold-payout:2", 0) is None
    assert (await net.wallet_tx(txid)).confirmations == 0
    # The template offered before the send is not changed under the miner: its block mines
    # nothing of the wallet; the next template carries the send.
    header, _ = solve(job)
    assert await net.submit_block(job.block(header, EN1, EN2).hex()) is None
    assert (await net.wallet_tx(txid)).confirmations == 0
    template = net.template()
    [sent] = [t for t in template["transactions"] if t["txid"] == txid]  # type: ignore[union-attr]
    data = bytes.fromhex(sent["data"])
    for address, amount in ((alice, 12_345), (bob, 678)):
        assert (
            amount.to_bytes(8, "little") + bytes([22]) + address_to_script(address, Network.REGTEST)
            in data
        )
    fee = SEND_FEE_SAT + 2 * SEND_FEE_PER_OUTPUT_SAT
    assert sent["fee"] == fee
    job = JobManager(CoinbaseSpec(PAYOUT, b"/t/", 4, 4)).new_job(parse_template(template), NOW)
    header, _ = solve(job)
    assert await net.submit_block(job.block(header, EN1, EN2).hex()) is None
    tx = await net.wallet_tx(txid)
    assert (tx.confirmations, tx.fee_sat) == (1, fee)
    net.mine_external_block()
    assert (await net.wallet_tx(txid)).confirmations == 2
    net.reorg(2)
    assert (await net.wallet_tx(txid)).confirmations == 0
    assert txid in [t["txid"] for t in net.template()["transactions"]]  # type: ignore[union-attr]
    with pytest.raises(BitcoindRefused, match="address 'bc1qnope'"):
        await net.send_many({"bc1qnope": 1}, "x")
