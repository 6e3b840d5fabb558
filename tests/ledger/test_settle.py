from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from accounting import reference
from poold.chain.targets import network_difficulty
from poold.ledger.db import LedgerError
from poold.ledger.ingest import ingest
from poold.ledger.models import Account, JournalLine, ShareSlice
from poold.ledger.settle import balances, settle_block, settle_pending, verify
from poold.shares.format import encode_share
from poold.shares.log import ShareLog

T0 = 1_800_000_000_000
BITS = 0x207FFFFF  # regtest: network difficulty ~4.7e-10, so a window is a few shares


def mine(path: Path, n: int, blocks: dict[int, bool], *, segment_bytes: int = 1 << 20) -> None:
    """n shares over n minutes; a block record (accepted or not) after share i for i in blocks."""
    log = ShareLog(path, segment_bytes=segment_bytes)
    log.open()
    for i in range(n):
        diff = Fraction(1, 2**33 + (i % 5) * 2**30)
        log.append_payload(
            encode_share(
                T0 + i * 60_000,
                0,
                f"m{i % 4}",
                "rig",
                "1",
                100,
                BITS,
                diff.numerator,
                diff.denominator,
                b"\0\0\0\1",
                i.to_bytes(4, "big"),
                1,
                i,
                0x20000000,
                i in blocks,
            )
        )
        if i in blocks:
            log.append(
                {
                    "t": "block",
                    "ts": T0 + i * 60_000 + 1,
                    "node": 0,
                    "height": 100 + i,
                    "hash": f"{i:064x}",
                    "accepted": blocks[i],
                    "reason": None,
                    "account": f"m{i % 4}",
                    "worker": "rig",
                    "reward_sat": 5_000_000_000,
                    "bits": BITS,
                }
            )
        log.flush()  # a group commit per minute (segments rotate at flushes)
    log.close()


def slice_rows(engine: sa.Engine, until_ms: int) -> list[tuple[str, Fraction, Fraction]]:
    """Slices up to the block's minute, oldest first (one per minute in these tests)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Account.name, ShareSlice.diff_num, ShareSlice.diff_den, ShareSlice.bits)
            .join(Account, ShareSlice.account_id == Account.id)
            .where(ShareSlice.slice_start <= until_ms // 60_000 * 60)
            .order_by(ShareSlice.slice_start)
        ).all()
    return [(a, Fraction(n, d), network_difficulty(b)) for a, n, d, b in rows]


def test_pplns_settlement_is_exact_idempotent_and_balanced(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    mine(tmp_path / "log", 40, {30: True, 35: False, 39: True})
    ingest(ledger, tmp_path / "log", 0)
    done = settle_pending(ledger, pool_fee=Fraction(1, 100))
    assert [d.block_hash for d in done] == [f"{30:064x}", f"{39:064x}"]  # the rejected one: no
    first = done[0]
    credits, fee, unallocated, _scores = reference.pplns(
        5_000_000_000, slice_rows(ledger, T0 + 30 * 60_000 + 1), Fraction(2), Fraction(1, 100)
    )
    assert first.credits == credits and first.pool_fee_sat == fee == 50_000_000
    assert first.unallocated_sat == unallocated
    assert verify(ledger) == []
    bal = balances(ledger, "pending")  # nothing has matured: every line is pending
    assert bal["pool:fee"] == -100_000_000
    assert bal["pool:wallet"] == 10_000_000_000
    assert sum(bal.values()) == 0 and balances(ledger) == {}
    with ledger.connect() as conn:
        lines = conn.execute(sa.select(sa.func.count()).select_from(JournalLine)).scalar()
    assert settle_pending(ledger) == [] and settle_block(ledger, f"{30:064x}") is None
    with ledger.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(JournalLine)).scalar() == lines
    with pytest.raises(LedgerError, match="rejected by bitcoind"):
        settle_block(ledger, f"{35:064x}")
    with pytest.raises(LedgerError, match="no block"):
        settle_block(ledger, "ff" * 32)


def test_verify_finds_an_unbalanced_entry(ledger: sa.Engine, tmp_path: Path) -> None:
    mine(tmp_path / "log", 10, {9: True})
    ingest(ledger, tmp_path / "log", 0)
    settle_pending(ledger)
    with ledger.begin() as conn:
        conn.execute(sa.insert(JournalLine).values(entry_id=1, account="pool:fee", amount_sat=1))
    problems = verify(ledger)
    assert any("entry 1 does not balance" in p for p in problems)
    assert any("does not sum to zero" in p for p in problems)
