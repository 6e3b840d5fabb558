"""A block's effort is its own: the work between the previous block and this one, by share
time, even for blocks found in the same minute (they all showed one value: rounds were counted
in whole minutes), and across several daemons' logs ordered by their shares' timestamps."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa

from poold.chain.targets import network_difficulty
from poold.ledger.ingest import ingest
from poold.ledger.models import Block
from poold.ledger.queries import MinuteCache, pool_overview
from poold.ledger.settle import settle_pending, verify
from poold.shares.format import encode_share
from poold.shares.log import ShareLog

T0 = 1_800_000_000_000  # on a minute
BITS = 0x207FFFFF
ND = network_difficulty(BITS)


def write_log(path: Path, node: int, shares: list[int], blocks: dict[int, int]) -> None:
    """Shares of difficulty 1 at `shares` (unix ms); a block record right after the share at
    index i for i in `blocks` (its height)."""
    log = ShareLog(path, node_id=node)
    log.open()
    for i, ts in enumerate(shares):
        log.append_payload(
            encode_share(
                ts, node, "m0", f"rig{node}", "1", 100, BITS, 1, 1, b"\0\0\0" + bytes([node]),
                i.to_bytes(4, "big"), 1, i, 0x20000000, i in blocks,
            )
        )  # fmt: skip
        if i in blocks:
            log.append(
                {
                    "t": "block", "ts": ts, "node": node, "height": blocks[i],
                    "hash": f"{blocks[i]:064x}", "accepted": True, "reason": None,
                    "account": "m0", "worker": f"rig{node}", "reward_sat": 5_000_000_000,
                    "bits": BITS,
                }
            )  # fmt: skip
    log.close()


def efforts(ledger: sa.Engine) -> dict[int, Fraction]:
    with ledger.connect() as conn:
        rows = conn.execute(sa.select(Block.height, Block.effort_num, Block.effort_den)).all()
    return {int(h): Fraction(int(n), int(d)) * ND for h, n, d in rows}  # in shares of diff 1


def current_round(ledger: sa.Engine) -> Fraction:
    with ledger.connect() as conn:
        overview = pool_overview(conn, T0 // 1000 + 120, MinuteCache())
    return overview.round_effort * ND


def test_blocks_in_one_minute_each_have_their_own_effort(ledger: sa.Engine, tmp_path: Path) -> None:
    # 60 shares one second apart; blocks at the 11th, 21st and 41st share.
    write_log(tmp_path / "a", 0, [T0 + k * 1000 for k in range(60)], {10: 9, 20: 10, 40: 11})
    ingest(ledger, tmp_path / "a", 0)
    settle_pending(ledger, pool_fee=Fraction(1, 100))
    # Heights 9/10/11 showed one effort (the whole minute's work); each has its own now.
    assert efforts(ledger) == {9: 11, 10: 10, 11: 20}
    assert current_round(ledger) == 19  # the shares after the last block
    assert verify(ledger) == []


def test_several_daemons_are_ordered_by_share_time(ledger: sa.Engine, tmp_path: Path) -> None:
    """Node 1's shares fall half a second after each of node 0's; node 0 finds the blocks.
    Node 1's log is ingested after node 0's block records reached the ledger: its slices are
    cut at the block times too, and every block's round holds both nodes' shares in it."""
    write_log(tmp_path / "a", 0, [T0 + k * 1000 for k in range(60)], {10: 9, 20: 10, 40: 11})
    write_log(tmp_path / "b", 1, [T0 + k * 1000 + 500 for k in range(60)], {})
    ingest(ledger, tmp_path / "a", 0)
    ingest(ledger, tmp_path / "b", 1)
    settle_pending(ledger)
    # Block 9 at node 0's 11th share (t = 10 s): node 1's shares at 0.5 .. 9.5 s are before.
    assert efforts(ledger) == {9: 11 + 10, 10: 10 + 10, 11: 20 + 20}
    assert current_round(ledger) == 19 + 20


def test_a_slice_no_block_cut_counts_by_its_last_share(ledger: sa.Engine, tmp_path: Path) -> None:
    """Node 1's minute was ingested before node 0's block records reached the ledger: its one
    slice is not cut, and counts whole in the round of its last share (after the last block):
    the stated rule. The efforts still add up to all the work."""
    write_log(tmp_path / "a", 0, [T0 + k * 1000 for k in range(60)], {10: 9, 20: 10, 40: 11})
    write_log(tmp_path / "b", 1, [T0 + k * 1000 + 500 for k in range(60)], {})
    ingest(ledger, tmp_path / "b", 1)
    ingest(ledger, tmp_path / "a", 0)
    settle_pending(ledger)
    assert efforts(ledger) == {9: 11, 10: 10, 11: 20}
    assert current_round(ledger) == 19 + 60
    assert sum(efforts(ledger).values()) + current_round(ledger) == 120


def test_a_round_over_many_minutes_reads_the_sums_and_its_two_edges(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    # A share every 20 s for an hour; blocks at shares 5 and 170.
    times = [T0 + k * 20_000 for k in range(180)]
    write_log(tmp_path / "a", 0, times, {5: 1, 170: 2})
    ingest(ledger, tmp_path / "a", 0)
    settle_pending(ledger)
    assert efforts(ledger) == {1: 6, 2: 165}
