"""FPPS bookings over ingested slices, on SQLite and PostgreSQL: exact against the rule applied
share by share straight from the share log, remainders carried, nothing booked twice or skipped."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa

from poold.chain.targets import network_difficulty
from poold.ledger.fpps import FppsBooked, average_fees, book_fpps, last_booking
from poold.ledger.ingest import ingest
from poold.ledger.models import ChainFees, FppsCarry
from poold.ledger.settle import balances, settle_pending, verify
from poold.shares.log import read_log
from tests.ledger.test_ingest import write_shares

SUBSIDY = 312_500_000
FEE = Fraction(2, 100)


def exact_values(paths: list[Path], avg: Fraction) -> dict[str, Fraction]:
    """The FPPS rule applied to every share in the logs, one by one, in exact arithmetic (many
    of these shares are over their network difficulty 1: each counts one block)."""
    out: dict[str, Fraction] = defaultdict(Fraction)
    for path in paths:
        for _pos, r in read_log(path):
            if r["t"] == "share":
                diff = Fraction(int(r["diff_num"]), int(r["diff_den"]))
                net = network_difficulty(int(r["bits"]))
                # Each share credited at most one block: min(its difficulty, the network's).
                out[str(r["account"])] += min(diff, net) / net * (SUBSIDY + avg) * (1 - FEE)
    return dict(out)


def carried(engine: sa.Engine) -> dict[str, Fraction]:
    with engine.connect() as conn:
        return {
            a: Fraction(v) for a, v in conn.execute(sa.select(FppsCarry.account, FppsCarry.value))
        }


def book(engine: sa.Engine, end: int, avg: Fraction) -> FppsBooked | None:
    return book_fpps(engine, period_end_s=end, subsidy_sat=SUBSIDY, avg_fees_sat=avg, pool_fee=FEE)


def test_bookings_are_exact_carry_remainders_and_never_repeat(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    avg = Fraction(12_345_678, 7)
    log0, log1 = tmp_path / "log0", tmp_path / "log1"
    write_shares(log0, 2500)
    ingest(ledger, log0, 0)

    first = book(ledger, 1000, avg)
    assert first is not None and first.slices > 0
    assert book(ledger, 1000, avg) is None  # the same period again: nothing changes
    assert book(ledger, 2000, avg) is None  # nothing new ingested: nothing to book
    assert last_booking(ledger) == 1000

    # More shares on node 0 and a second node's log, ingested after the first booking.
    write_shares(log0, 1500, start=2500)
    write_shares(log1, 900, node=1)
    ingest(ledger, log0, 0)
    ingest(ledger, log1, 1)
    second = book(ledger, 2000, avg)
    assert second is not None

    exact = exact_values([log0, log1], avg)
    bal = balances(ledger)
    carry = carried(ledger)
    for account, value in exact.items():
        credited = -bal[f"miner:{account}"]
        # Whole satoshis booked plus the carried remainder is the exact value, to the last bit.
        assert credited + carry.get(account, Fraction(0)) == value
        assert 0 <= carry.get(account, Fraction(0)) < 1
    assert bal["pool:fpps_paid"] == sum(-bal[f"miner:{a}"] for a in exact)
    assert verify(ledger) == []


def test_fpps_blocks_belong_to_the_pool(ledger: sa.Engine, tmp_path: Path) -> None:
    write_shares(tmp_path / "log", 2000)
    ingest(ledger, tmp_path / "log", 0)
    done = settle_pending(ledger, scheme="fpps")
    assert done and all(d.credits == {} for d in done)
    bal = balances(ledger, "pending")  # the pool's, once they mature
    assert bal["pool:blocks"] == -sum(312_500_000 for _ in done)
    assert not any(k.startswith("miner:") for k in bal)
    assert settle_pending(ledger, scheme="fpps") == []
    assert verify(ledger) == []


def test_average_fees_over_the_recorded_window(ledger: sa.Engine) -> None:
    assert average_fees(ledger, tip=10, blocks=3) == 0
    with ledger.begin() as conn:
        conn.execute(
            sa.insert(ChainFees),
            [{"height": h, "block_hash": f"{h:064x}", "fees_sat": h * 1000} for h in range(1, 11)],
        )
    assert average_fees(ledger, tip=10, blocks=3) == Fraction(9000 + 10000 + 8000, 3)
    assert average_fees(ledger, tip=10, blocks=144) == Fraction(55_000, 10)
