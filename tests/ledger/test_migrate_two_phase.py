"""Migration 0007 turns a ledger written with suffixed accounts (miner:<a>:immature and
:spendable, coinbase:<hash>, maturity and reversal entries with lines) into two-phase
credits, on SQLite and PostgreSQL: every balance means what it meant, and verify passes."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from poold.ledger.db import MIGRATIONS, make_engine, migrate
from poold.ledger.journal import open_pending
from poold.ledger.models import JournalEntry
from poold.ledger.settle import balances, verify

A, B, C = "aa" * 32, "bb" * 32, "cc" * 32  # matured; orphaned; orphaned, restored, pending


def _old_ledger(url: str) -> sa.Engine:
    engine = make_engine(url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    entries: list[tuple[str, str, list[tuple[str, int]]]] = []
    for h in (A, B, C):  # each block: reward 100, alice 60, bob 39, fee 1
        entries.append(
            (
                "pplns_block",
                h,
                [
                    (f"coinbase:{h}", 100),
                    ("miner:alice:immature", -60),
                    ("miner:bob:immature", -39),
                    ("pool:fee", -1),
                ],
            )
        )
    entries.append(  # A matures
        (
            "maturity",
            A,
            [
                ("miner:alice:immature", 60),
                ("miner:alice:spendable", -60),
                ("miner:bob:immature", 39),
                ("miner:bob:spendable", -39),
                (f"coinbase:{A}", -100),
                ("pool:wallet", 100),
            ],
        )
    )
    reversal = [
        ("coinbase:{h}", -100),
        ("miner:alice:immature", 60),
        ("miner:bob:immature", 39),
        ("pool:fee", 1),
    ]
    for h in (B, C):  # both orphaned
        entries.append(("pplns_reversal", h, [(a.format(h=h), v) for a, v in reversal]))
    entries.append(  # C back on the chain
        (
            "block_recredit",
            C,
            [
                (f"coinbase:{C}", 100),
                ("miner:alice:immature", -60),
                ("miner:bob:immature", -39),
                ("pool:fee", -1),
            ],
        )
    )
    entries.append(  # an FPPS booking and a payout to alice from her spendable 60
        ("fpps_period", "1", [("pool:fpps_paid", 7), ("miner:carol:spendable", -7)])
    )
    entries.append(("payout", "tx", [("miner:alice:spendable", 50), ("pool:wallet", -50)]))
    with engine.begin() as conn:
        for n, (kind, ref, lines) in enumerate(entries, 1):
            conn.execute(
                sa.text(
                    "INSERT INTO journal_entries (id, kind, reference, created_ms) "
                    "VALUES (:i, :k, :r, 0)"
                ),
                {"i": n, "k": kind, "r": ref},
            )
            for account, amount in lines:
                conn.execute(
                    sa.text(
                        "INSERT INTO journal_lines (entry_id, account, amount_sat) "
                        "VALUES (:e, :a, :v)"
                    ),
                    {"e": n, "a": account, "v": amount},
                )
            conn.execute(
                sa.text("INSERT INTO settlements (key, entry_id) VALUES (:k, :e)"),
                {"k": f"{kind}:{ref}:{n}", "e": n},
            )
    return engine


def test_old_ledgers_become_two_phase(ledger_url: str) -> None:
    engine = _old_ledger(ledger_url)
    try:
        migrate(engine)
        assert verify(engine) == []
        posted, pending = balances(engine), balances(engine, "pending")
        # A matured (alice 60 - 50 paid, bob 39), carol's FPPS 7; C's re-credit still pending;
        # B (and C's first settlement) voided: counted nowhere.
        assert posted["miner:alice"] == -10 and posted["miner:bob"] == -39
        assert posted["miner:carol"] == -7 and posted["pool:wallet"] == 50
        assert pending == {"pool:wallet": 100, "miner:alice": -60, "miner:bob": -39, "pool:fee": -1}
        with engine.connect() as conn:
            phases = dict(conn.execute(sa.select(JournalEntry.id, JournalEntry.phase)).all())
            assert [phases[i] for i in range(1, 10)] == [
                *("pending", "pending", "pending", "post", "void", "void", "pending"),
                *("posted", "posted"),
            ]
            assert open_pending(conn, A) is None and open_pending(conn, B) is None
            assert open_pending(conn, C) == 7
            names = set(
                conn.execute(sa.text("SELECT DISTINCT account FROM journal_lines")).scalars()
            )
        assert not any(
            n.endswith((":immature", ":spendable")) or n.startswith("coinbase:") for n in names
        )
    finally:
        engine.dispose()
