"""The API's read queries sum slice difficulties exactly in the database, wide numbers too."""

from __future__ import annotations

from fractions import Fraction

import sqlalchemy as sa

from poold.ledger.models import Account, ShareSlice, Worker
from poold.ledger.queries import hashrate_series, hashrates
from poold.ledger.slices.exact import exact_sums

T = 1_800_000_000


def test_exact_sums_with_wide_numerators(ledger: sa.Engine) -> None:
    diffs = [(1, 3), (10**30, 7), (5, 2**40), (10**25, 1), (2, 3)]
    with ledger.begin() as conn:
        conn.execute(sa.insert(Account), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        conn.execute(
            sa.insert(Worker),
            [{"id": 1, "account_id": 1, "name": "r"}, {"id": 2, "account_id": 2, "name": "r"}],
        )
        conn.execute(
            sa.insert(ShareSlice),
            [
                {
                    "node_id": 0,
                    "account_id": 1 + i % 2,
                    "worker_id": 1 + i % 2,
                    "slice_start": T - 60 * (i + 1),
                    "bits": 0x1D00FFFF,
                    "diff_num": n,
                    "diff_den": d,
                    "shares": 1,
                    "first_ms": 0,
                    "last_ms": 0,
                }
                for i, (n, d) in enumerate(diffs)
            ],
        )
    want = {
        ("a",): Fraction(1, 3) + Fraction(5, 2**40) + Fraction(2, 3),
        ("b",): Fraction(10**30, 7) + Fraction(10**25),
    }
    with ledger.connect() as conn:
        joins = ((Account, ShareSlice.account_id == Account.id),)
        assert exact_sums(conn, [Account.name], [ShareSlice.slice_start > 0], joins) == want
        rates = hashrates(conn, T + 30)
        series = hashrate_series(conn, T + 30, "1h")
    total = sum(want.values(), Fraction(0))
    hs = total * 2**32 / 3600
    assert rates.total["1h"] == hs.numerator // hs.denominator
    assert sum(Fraction(p.hs) for p in series) <= total * 2**32 / 60
    assert len(series) == 60 and series[-1].t == T


def test_a_sum_past_64_bits_stays_exact(ledger: sa.Engine) -> None:
    """Each numerator fits 18 digits, but their sum does not fit 64 bits."""
    big = 9 * 10**17
    with ledger.begin() as conn:
        conn.execute(sa.insert(Account).values(id=1, name="a"))
        conn.execute(sa.insert(Worker).values(id=1, account_id=1, name="r"))
        conn.execute(
            sa.insert(ShareSlice),
            [
                {
                    "node_id": 0,
                    "account_id": 1,
                    "worker_id": 1,
                    "slice_start": T - 60 * i,
                    "bits": 0x1D00FFFF,
                    "diff_num": big,
                    "diff_den": 1,
                    "shares": 1,
                    "first_ms": 0,
                    "last_ms": 0,
                }
                for i in range(1, 21)
            ],
        )
    with ledger.connect() as conn:
        assert exact_sums(conn, [ShareSlice.account_id], [ShareSlice.slice_start > 0]) == {
            (1,): Fraction(20 * big)
        }


def test_queries_return_rows_and_import_no_presentation_or_tokens() -> None:
    """The read side returns typed rows; display (JSON, decimals) is the API's, token rules
    are poold.tokens': queries imports neither, nor keeps state of its own."""
    import ast
    from pathlib import Path

    import poold.ledger.queries as q

    tree = ast.parse(Path(q.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in imported if m.startswith(("poold.tokens", "poold.api", "aiohttp"))}
    mutable_globals = [
        t.id
        for n in tree.body
        if isinstance(n, ast.Assign | ast.AnnAssign)
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Name)
        and isinstance(n.value, ast.Dict | ast.List | ast.Set | ast.Call)
        and not t.id.isupper()
    ]
    assert mutable_globals == []


def test_a_worker_below_one_hash_a_second_is_online(ledger: sa.Engine) -> None:
    """Ten shares of difficulty 2**-32 in the last minute: under 1 H/s over 10 minutes (the
    rate rounds to 0), but the worker submitted shares, so it is online."""
    from poold.ledger.queries import MinuteCache, pool_overview

    now = 1_800_000_000
    with ledger.begin() as conn:
        conn.execute(sa.insert(Account).values(id=1, name="m0"))
        conn.execute(sa.insert(Worker).values(id=1, account_id=1, name="rig"))
        conn.execute(
            sa.insert(ShareSlice).values(
                node_id=0, account_id=1, worker_id=1, slice_start=now // 60 * 60 - 60,
                bits=0x207FFFFF, diff_num=10, diff_den=2**32, shares=10, first_ms=0, last_ms=0,
            )
        )  # fmt: skip
    with ledger.connect() as conn:
        overview = pool_overview(conn, now, MinuteCache())
    assert (overview.workers_online, overview.miners_online) == (1, 1)
