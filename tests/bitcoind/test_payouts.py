"""Payouts through the real regtest node's wallet: thresholds, refusals, and kill -9 on either
side of the wallet call, each paying exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from poold.chain.address import Network
from poold.ledger.db import make_engine, migrate
from poold.ledger.models import JournalEntry, JournalLine, LedgerLock, Payout
from poold.ledger.payouts import PayoutError, acquire, owed, run_payouts, set_account
from poold.ledger.settle import balances, verify
from tests.bitcoind.conftest import Bitcoind
from tests.helpers import PATIENCE_S

pytestmark = pytest.mark.regtest

CRASH = Path(__file__).with_name("crash_payout.py")


def credit(engine: sa.Engine, account: str, sat: int) -> None:
    """A matured credit, as maturity posts it: the wallet holds it, the pool owes it."""
    with engine.begin() as conn:
        entry = conn.execute(
            sa.insert(JournalEntry)
            .values(kind="test_credit", reference=account, created_ms=0)
            .returning(JournalEntry.id)
        ).scalar_one()
        conn.execute(
            sa.insert(JournalLine),
            [
                {"entry_id": entry, "account": "pool:wallet", "amount_sat": sat},
                {"entry_id": entry, "account": f"miner:{account}", "amount_sat": -sat},
            ],
        )


async def funded_wallet(node_rpc) -> None:  # type: ignore[no-untyped-def]
    await node_rpc.call("generatetoaddress", 101, await node_rpc.call("getnewaddress"))


async def received(node_rpc, address: str) -> int:  # type: ignore[no-untyped-def]
    btc = await node_rpc.call("getreceivedbyaddress", address, 0, exact=True)
    return int(Decimal(str(btc)) * 100_000_000)


def write_config(tmp_path: Path, bitcoind: Bitcoind, ledger_url: str, min_sat: int) -> Path:
    cfg = tmp_path / "poold.toml"
    cfg.write_text(
        f"""
[bitcoind]
kind = "rpc"
url = "{bitcoind.url}"
user = "{bitcoind.user}"
password = "{bitcoind.password}"

[pool]
network = "regtest"
payout_address = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"

[ledger]
url = "{ledger_url}"

[payouts]
min_payout_sat = {min_sat}
"""
    )
    return cfg


def poold(*args: str, script: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(script)] if script else [sys.executable, "-m", "poold"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=PATIENCE_S)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    eng = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(eng)
    return eng


async def test_thresholds_addresses_and_dry_run(engine: sa.Engine, node_rpc) -> None:  # type: ignore[no-untyped-def]
    await funded_wallet(node_rpc)
    rich, small, custom = [await node_rpc.call("getnewaddress") for _ in range(3)]
    credit(engine, rich, 300_000)
    credit(engine, small, 40_000)  # under the config minimum
    credit(engine, "bob", 250_000)  # not an address: needs one set
    credit(engine, "carol", 60_000)  # has her own lower threshold and address
    set_account(engine, "carol", address=custom, min_payout_sat=50_000)
    set_account(engine, "dave", address=None, min_payout_sat=1)
    kw = {"network": Network.REGTEST, "min_payout_sat": 100_000, "max_outputs": 250}

    before = balances(engine)
    dry = await run_payouts(engine, node_rpc, send=False, **kw)
    assert balances(engine) == before  # a dry run writes nothing
    assert [(p.account, p.amount_sat) for b in dry.batches for p in b] == [
        ("carol", 60_000),
        (rich, 300_000),
    ]
    assert "below its threshold" in dry.skipped[small]
    assert "no valid regtest payout address" in dry.skipped["bob"]

    sent = await run_payouts(engine, node_rpc, send=True, **kw)
    assert len(sent.sent) == 1 and sent.total_sat == 360_000
    assert await received(node_rpc, rich) == 300_000
    assert await received(node_rpc, custom) == 60_000
    assert owed(engine) == {small: 40_000, "bob": 250_000}
    assert verify(engine) == []
    fee = balances(engine)["pool:txfees"]
    assert fee > 0  # the pool pays the network fee, from its own wallet balance
    assert balances(engine)["pool:wallet"] == 650_000 - 360_000 - fee

    again = await run_payouts(engine, node_rpc, send=True, **kw)
    assert again.sent == [] and again.reconciled == []  # nothing owed above threshold
    [block_hash] = await node_rpc.call("generatetoaddress", 1, rich)
    follow = await run_payouts(engine, node_rpc, send=True, **kw)
    assert follow.reconciled == [(sent.sent[0][0], "confirmed")]
    # The block that mined the payout claimed its fee: what FPPS's average-fee window reads.
    tip = await node_rpc.tip_height()
    assert await node_rpc.block_fees(tip) == (block_hash, fee)
    assert (await node_rpc.block_fees(tip - 1))[1] == 0


async def test_a_refusing_wallet_is_a_clear_error_and_moves_nothing(
    engine: sa.Engine, node_rpc
) -> None:  # type: ignore[no-untyped-def]
    # No matured coins in this wallet: the send is refused.
    address = await node_rpc.call("getnewaddress")
    credit(engine, address, 500_000)
    before = balances(engine)
    with pytest.raises(PayoutError, match="refused by the wallet, nothing paid"):
        await run_payouts(
            engine,
            node_rpc,
            network=Network.REGTEST,
            min_payout_sat=1,
            max_outputs=10,
            send=True,
        )
    assert balances(engine) == before
    with engine.connect() as conn:
        status, reason = conn.execute(sa.select(Payout.status, Payout.reason)).one()
        assert conn.execute(sa.select(sa.func.count()).select_from(LedgerLock)).scalar() == 0
    assert status == "failed" and "insufficient funds" in reason.lower()


def test_a_live_lease_holder_blocks_a_second_run(engine: sa.Engine) -> None:
    acquire(engine, "payouts")
    with pytest.raises(PayoutError, match="already running in"):
        acquire(engine, "payouts")


@pytest.mark.parametrize("when", ["after", "before"])
async def test_kill_9_around_the_wallet_call_pays_once(
    when: str, bitcoind: Bitcoind, node_rpc, tmp_path: Path, engine: sa.Engine
) -> None:  # type: ignore[no-untyped-def]
    await funded_wallet(node_rpc)
    address = await node_rpc.call("getnewaddress")
    credit(engine, address, 123_456_789)
    cfg = write_config(tmp_path, bitcoind, str(engine.url), 100_000)

    crashed = poold(when, "payout", "--config", str(cfg), "--send", script=CRASH)
    assert crashed.returncode == -9, crashed.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.select(Payout.status)).scalars().all() == ["intent"]
        assert conn.execute(sa.select(LedgerLock.holder)).scalar() is not None  # left behind
    paid_before = await received(node_rpc, address)
    assert paid_before == (123_456_789 if when == "after" else 0)

    t0 = time.monotonic()
    rerun = poold("payout", "--config", str(cfg), "--send")
    assert rerun.returncode == 0, rerun.stderr
    assert time.monotonic() - t0 < 60
    assert await received(node_rpc, address) == 123_456_789  # exactly once
    with engine.connect() as conn:
        statuses = conn.execute(sa.select(Payout.status).order_by(Payout.id)).scalars().all()
    assert statuses == (["sent"] if when == "after" else ["failed", "sent"])
    assert '"reconciled": "sent"' in rerun.stdout or when == "before"
    assert owed(engine) == {}
    assert poold("ledger", "verify", "--config", str(cfg)).returncode == 0
    third = poold("payout", "--config", str(cfg), "--send")
    assert "paid 0 sat" in third.stdout
    assert await received(node_rpc, address) == 123_456_789
