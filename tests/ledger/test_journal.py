"""The journal module: account names built and parsed in one place, and `post`, the only
writer of journal entries (balanced lines, known accounts, one idempotency key)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from poold.ledger import journal
from poold.ledger.journal import AlreadyPosted, JournalError, parse, post
from poold.ledger.models import JournalEntry, JournalLine, Settlement
from poold.ledger.settle import verify

ROOT = Path(__file__).resolve().parents[2]
names = st.text(st.characters(min_codepoint=33, max_codepoint=0x24F, blacklist_characters=":"))


@given(names.filter(bool))
def test_miner_accounts_round_trip(name: str) -> None:
    account = journal.miner(name)
    assert parse(account) == journal.ParsedAccount("miner", name)
    assert journal.miner_of(account) == name
    assert journal.payee_of(account) == name


@given(names.filter(bool))
def test_holder_accounts_round_trip(name: str) -> None:
    assert parse(journal.holder(name)) == journal.ParsedAccount("holder", name)
    assert parse(journal.holder(name, debt=True)) == journal.ParsedAccount("holder", name, "debt")
    assert journal.payee_account(journal.holder(name)) == journal.holder(name)
    assert journal.payee_account(name) == journal.miner(name)


def test_only_known_accounts_parse() -> None:
    for bad in [
        "",
        "miner:",
        "miner:a:immature",
        "miner:a:b",
        "coinbase:" + "ab" * 32,
        "pool:nope",
        "operator:fee",
        "coinbase:xyz",
        "holder:",
        "wallet",
    ]:
        with pytest.raises(JournalError, match="not a ledger account"):
            parse(bad)
    with pytest.raises(JournalError):
        journal.miner("a:b")
    with pytest.raises(JournalError):
        journal.pool("nope")


def _count(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in (JournalEntry, JournalLine, Settlement)
        )


def test_post_refuses_what_must_not_be_written_and_posts_a_key_once(ledger: sa.Engine) -> None:
    fee, cb = journal.pool("fee"), journal.pool("wallet")
    alice = journal.miner("alice")
    cases = [
        ([(cb, 100), (alice, -99)], "does not balance: its lines sum to 1 sat"),
        ([(cb, 100), ("miner:alice:immature", -100)], "not a ledger account: 'miner:alice:imm"),
        ([(cb, 100), (alice, -99.5), (fee, -0.5)], "is not whole sat"),
    ]
    for lines, needle in cases:
        with pytest.raises(JournalError, match=needle), ledger.begin() as conn:
            post(conn, kind="test", reference="r", key="k1", lines=lines)  # type: ignore[arg-type]
    assert _count(ledger) == (0, 0, 0)
    good = [(cb, 100), (alice, -99), (fee, -1), (journal.pool("unallocated"), 0)]
    with ledger.begin() as conn:
        entry = post(conn, kind="test", reference="r", key="k1", lines=good)
    assert _count(ledger) == (1, 4, 1) and entry > 0
    with pytest.raises(AlreadyPosted, match="k1"), ledger.begin() as conn:
        post(conn, kind="test", reference="r", key="k1", lines=good)
    assert _count(ledger) == (1, 4, 1)  # the second post's transaction rolled back whole
    assert verify(ledger) == []


def _account_literals(path: Path) -> list[str]:
    """String literals (not docstrings) of a module that spell an account name."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if any(p in text for p in ("miner:", ":immature", ":spendable", "pool:", "operator:")):
                found.append(text)
    return found


def test_no_module_but_the_journal_spells_an_account_name() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lits
        for path in sorted((ROOT / "poold").rglob("*.py"))
        if path.name != "journal.py"
        and "migrations" not in path.parts
        and (lits := _account_literals(path))
    }
    assert offenders == {}
