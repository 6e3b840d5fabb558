"""Transfer import: parsing with clear errors, idempotent by id, all or nothing."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from poold.ledger.models import TokenTransfer
from poold.tokens.transfers import (
    TokenError,
    balances_at,
    import_transfers,
    parse_file,
    parse_records,
)

T = 1_800_000_000


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("id,ts,from,to,amount\n" + "\n".join(rows) + "\n")
    return path


def test_csv_and_json_parse_the_same(tmp_path: Path) -> None:
    csv_file = write_csv(
        tmp_path / "t.csv",
        [
            f"tx1:0,{T},,alice,10",
            "tx2:0,2027-01-15T08:00:00Z,alice,bob,2.5",
            f"tx3:1,{T + 5},bob,,1/3",
        ],
    )
    json_file = tmp_path / "t.json"
    json_file.write_text(
        json.dumps(
            [
                {"id": "tx1:0", "ts": T, "to": "alice", "amount": "10"},
                {
                    "id": "tx2:0",
                    "ts": "2027-01-15T08:00:00+00:00",
                    "from": "alice",
                    "to": "bob",
                    "amount": "2.5",
                },
                {"id": "tx3:1", "ts": T + 5, "from": "bob", "amount": "1/3"},
            ]
        )
    )
    a, b = parse_file(csv_file), parse_file(json_file)
    assert a == b
    assert a[1].ts_s == T  # 2027-01-15T08:00:00Z is unix 1,800,000,000
    assert a[2].amount == Fraction(1, 3) and a[2].receiver is None and a[0].sender is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "x", "ts": T, "to": "a", "amount": 1.5}, "not a float"),
        ({"id": "x", "ts": "2027-01-15T08:00:00", "to": "a", "amount": "1"}, "no time zone"),
        ({"id": "x", "ts": T, "from": "a", "to": "a", "amount": "1"}, "same holder"),
        ({"id": "x", "ts": T, "amount": "1"}, "needs a from, a to"),
        ({"id": "x", "ts": T, "to": "a", "amount": "-1"}, "must be > 0"),
        ({"id": "x", "ts": T, "to": "a", "amount": "1", "memo": "hi"}, "unknown fields"),
        ({"ts": T, "to": "a", "amount": "1"}, "record 1: needs an id"),
        ({"id": "x", "ts": "soon", "to": "a", "amount": "1"}, "not unix seconds"),
    ],
)
def test_bad_records_are_named(record: dict[str, object], message: str) -> None:
    with pytest.raises(TokenError, match=message):
        parse_records([record])


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("id,when,from,to,amount\n")
    with pytest.raises(TokenError, match="header must be id,ts,from,to,amount"):
        parse_file(tmp_path / "h.csv")
    (tmp_path / "j.json").write_text("{")
    with pytest.raises(TokenError, match="not valid JSON"):
        parse_file(tmp_path / "j.json")
    with pytest.raises(TokenError, match="cannot read"):
        parse_file(tmp_path / "missing.csv")


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(TokenTransfer)).scalar_one())


def test_import_is_idempotent_and_all_or_nothing(ledger: sa.Engine) -> None:
    first = parse_records(
        [
            {"id": "mint", "ts": T, "to": "alice", "amount": "10"},
            {"id": "t1", "ts": T + 10, "from": "alice", "to": "bob", "amount": "4"},
        ]
    )
    assert import_transfers(ledger, first).added == 2
    again = import_transfers(ledger, first)
    assert (again.added, again.unchanged) == (0, 2)

    changed = parse_records(
        [{"id": "t1", "ts": T + 10, "from": "alice", "to": "bob", "amount": "5"}]
    )
    with pytest.raises(TokenError, match="'t1' was already imported with different content"):
        import_transfers(ledger, changed)

    # Bob spends 3 at T+20, then a transfer slotted *before* it (T+15) would overdraw him.
    import_transfers(
        ledger,
        parse_records([{"id": "t2", "ts": T + 20, "from": "bob", "to": "carol", "amount": "3"}]),
    )
    early = parse_records(
        [
            {"id": "ok", "ts": T + 12, "from": "alice", "to": "dave", "amount": "1"},
            {"id": "t3", "ts": T + 15, "from": "bob", "to": "dave", "amount": "2"},
        ]
    )
    with pytest.raises(TokenError, match="'t2' would leave 'bob' with -1 tokens"):
        import_transfers(ledger, early)
    assert count(ledger) == 3  # nothing of the refused import was written, not even "ok"
    with ledger.connect() as conn:
        assert balances_at(conn, T + 100) == {
            "alice": Fraction(6),
            "bob": Fraction(1),
            "carol": Fraction(3),
        }
        assert balances_at(conn, T + 10) == {"alice": Fraction(10)}  # ts < t only
