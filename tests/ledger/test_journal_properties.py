"""Hypothesis over the journal: random sequences of blocks found and settled (PPLNS credits,
fees, unallocated), maturity, orphan reversals, FPPS bookings, payouts (including wallets that
refuse or time out after sending) and repeats of each — every step keeps every invariant.

The ledger code under test is the real one on a real SQLite file; the wallet is a small honest
in-memory implementation of `poold.bitcoind.client.Wallet` (the real one is tested on regtest)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from poold.bitcoind.client import BitcoindError, BitcoindRefused, WalletTx
from poold.chain.address import Network
from poold.ledger.db import make_engine, migrate
from poold.ledger.fpps import book_fpps
from poold.ledger.maturity import _apply, _pending
from poold.ledger.models import Account, Block, ShareSlice, Worker
from poold.ledger.payouts import PayoutError, owed, run_payouts, set_account
from poold.ledger.settle import balances, settle_pending, verify
from tests.helpers import regtest_address
from tests.ledger.conftest import PG_URL, _pg_available, fresh_pg_schema

ACCOUNTS = ["alice", "bob", "carol", "dave"]
BITS = 0x207FFFFF  # network difficulty 2**-31 x 0xFFFF-ish: a handful of shares fill a window


class MemoryWallet:
    """Pays by remembering; `mode` makes the next send refuse, or time out after sending."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[str, dict[str, int]]] = {}  # txid -> (comment, outputs)
        self.mode = "ok"

    async def send_many(self, outputs: Mapping[str, int], comment: str) -> str:
        if self.mode == "refuse":
            raise BitcoindRefused("node refused sendmany: insufficient funds")
        txid = hashlib.sha256(comment.encode()).hexdigest()
        self.sent[txid] = (comment, dict(outputs))
        if self.mode == "timeout":
            raise BitcoindError("node unreachable for sendmany: timeout")
        return txid

    async def find_sent(self, comment: str, since_s: int) -> str | None:
        return next((t for t, (c, _) in self.sent.items() if c == comment), None)

    async def wallet_tx(self, txid: str) -> WalletTx:
        return WalletTx(txid, 1, 150 * len(self.sent[txid][1]))

    def paid(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, outputs in self.sent.values():
            for address, sat in outputs.items():
                out[address] = out.get(address, 0) + sat
        return out


class Journal(RuleBasedStateMachine):
    postgres = False

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.schema = contextlib.ExitStack()
        if self.postgres:
            name = self.schema.enter_context(fresh_pg_schema())
            self.engine = make_engine(f"{PG_URL}?options=-csearch_path%3D{name}")
        else:
            self.engine = make_engine(f"sqlite:///{Path(self.dir.name) / 'l.db'}")
        migrate(self.engine)
        self.wallet = MemoryWallet()
        self.address = {a: regtest_address(a.encode()) for a in ACCOUNTS}
        for a in ACCOUNTS:
            set_account(self.engine, a, address=self.address[a], min_payout_sat=1)
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(Account), [{"id": i + 1, "name": a} for i, a in enumerate(ACCOUNTS)]
            )
            conn.execute(
                sa.insert(Worker),
                [{"id": i + 1, "account_id": i + 1, "name": "rig"} for i in range(len(ACCOUNTS))],
            )
        self.t = 1_800_000_000_000
        self.blocks = 0
        self.matured_rewards = 0
        self.pending: dict[str, int] = {}  # settled, not yet matured/orphaned: hash -> reward
        self.fpps_periods = 0

    def teardown(self) -> None:
        self.engine.dispose()
        self.schema.close()
        self.dir.cleanup()

    @rule(
        work=st.lists(
            st.tuples(st.sampled_from(range(4)), st.integers(1, 10**6), st.integers(0, 3)),
            min_size=1,
            max_size=8,
        ),
        reward=st.integers(1, 50 * 10**8),
        accepted=st.booleans(),
    )
    def find_block(self, work: list[tuple[int, int, int]], reward: int, accepted: bool) -> None:
        """Shares (as slices) then a block found after them."""
        rows = []
        for account, num, den_pow in work:
            self.t += 60_000
            rows.append(
                {
                    "node_id": 0,
                    "account_id": account + 1,
                    "worker_id": account + 1,
                    "slice_start": self.t // 1000 // 60 * 60,
                    "bits": BITS,
                    "diff_num": num,
                    "diff_den": 2**den_pow * 10**9,
                    "shares": 1,
                    "first_ms": self.t,
                    "last_ms": self.t,
                }
            )
        self.blocks += 1
        with self.engine.begin() as conn:
            conn.execute(sa.insert(ShareSlice), rows)
            conn.execute(
                sa.insert(Block).values(
                    hash=f"{self.blocks:064x}",
                    node_id=0,
                    height=self.blocks,
                    account_id=1,
                    worker_id=1,
                    reward_sat=reward,
                    bits=BITS,
                    found_ms=self.t,
                    accepted=accepted,
                    status="pending" if accepted else "rejected",
                    reason=None,
                )
            )

    @rule(fee=st.sampled_from([Fraction(0), Fraction(1, 100), Fraction(3, 7)]))
    def settle(self, fee: Fraction) -> None:
        for s in settle_pending(self.engine, pool_fee=fee):
            with self.engine.connect() as conn:
                reward = int(
                    conn.execute(
                        sa.select(Block.reward_sat).where(Block.hash == s.block_hash)
                    ).scalar_one()
                )
            assert sum(s.credits.values()) + s.pool_fee_sat + s.unallocated_sat == reward
            self.pending[s.block_hash] = reward
        assert settle_pending(self.engine, pool_fee=fee) == []  # twice changes nothing

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data(), orphan=st.booleans())
    def follow(self, data: st.DataObject, orphan: bool) -> None:
        block_hash = data.draw(st.sampled_from(sorted(self.pending)))
        entry = dict(_pending(self.engine))[block_hash]
        confirmations = -1 if orphan else 100
        assert _apply(self.engine, block_hash, entry, confirmations)
        assert not _apply(self.engine, block_hash, entry, confirmations)  # once only
        reward = self.pending.pop(block_hash)
        if not orphan:
            self.matured_rewards += reward

    @rule(avg_fees=st.integers(0, 10**8))
    def book_fpps(self, avg_fees: int) -> None:
        self.fpps_periods += 1
        book_fpps(
            self.engine,
            period_end_s=self.fpps_periods,
            subsidy_sat=312_500_000,
            avg_fees_sat=Fraction(avg_fees),
            pool_fee=Fraction(1, 50),
        )
        assert (
            book_fpps(  # the same period again changes nothing
                self.engine,
                period_end_s=self.fpps_periods,
                subsidy_sat=312_500_000,
                avg_fees_sat=Fraction(avg_fees),
                pool_fee=Fraction(1, 50),
            )
            is None
        )

    @rule(mode=st.sampled_from(["ok", "ok", "refuse", "timeout"]))
    def pay(self, mode: str) -> None:
        self.wallet.mode = mode
        try:
            asyncio.run(
                run_payouts(
                    self.engine,
                    self.wallet,
                    network=Network.REGTEST,
                    min_payout_sat=1,
                    max_outputs=2,
                    send=True,
                )
            )
        except PayoutError:
            assert mode != "ok"
        self.wallet.mode = "ok"

    @invariant()
    def journal_balances(self) -> None:
        assert verify(self.engine) == []
        assert sum(balances(self.engine).values()) == 0
        assert sum(balances(self.engine, "pending").values()) == 0

    @invariant()
    def money_is_where_it_should_be(self) -> None:
        bal = balances(self.engine)
        # Unmatured coinbases are pending in the wallet; orphaned ones count nowhere.
        waiting = balances(self.engine, "pending").get("pool:wallet", 0)
        assert waiting == sum(self.pending.values())
        # Nobody is paid more than they were owed, and nothing is paid twice: what the wallet
        # sent to each miner is exactly the journal's payouts to them.
        assert all(v >= 0 for v in owed(self.engine).values())
        paid = self.wallet.paid()
        with self.engine.connect() as conn:
            journal_paid = dict(
                conn.execute(
                    sa.text(
                        "SELECT account, SUM(amount_sat) FROM journal_lines l JOIN journal_entries "
                        "e ON e.id = l.entry_id WHERE e.kind = 'payout' GROUP BY account"
                    )
                ).all()
            )
            in_doubt = dict(
                conn.execute(
                    sa.text(
                        "SELECT i.account, SUM(i.amount_sat) FROM payout_items i JOIN payouts p "
                        "ON p.id = i.payout_id WHERE p.status = 'intent' GROUP BY i.account"
                    )
                ).all()
            )
        for a in ACCOUNTS:
            # A timed-out send is in the wallet but not yet in the journal (an intent, found
            # by the next run); nothing else may differ.
            assert paid.get(self.address[a], 0) == journal_paid.get(f"miner:{a}", 0) + in_doubt.get(
                a, 0
            )
        fees = bal.get("pool:txfees", 0)
        assert bal.get("pool:wallet", 0) == self.matured_rewards - (
            sum(v for k, v in journal_paid.items() if k.startswith("miner:")) + fees
        )


Journal.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJournalSqlite = Journal.TestCase


class JournalPostgres(Journal):
    postgres = True


JournalPostgres.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJournalPostgres = pytest.mark.skipif(_pg_available() is not None, reason=str(_pg_available()))(
    JournalPostgres.TestCase
)
