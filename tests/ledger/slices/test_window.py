"""The database-side PPLNS window gives exactly the split the reference rule gives, on SQLite and
PostgreSQL: random slices (several network difficulties, fractional difficulties, one key split
over several ingest batches), random block times and window factors."""

from __future__ import annotations

from fractions import Fraction

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounting import pplns_split
from poold.ledger.models import Account, ShareSlice, Worker
from poold.ledger.slices import sums as slice_sums
from poold.ledger.slices.window import _all_rows, _names, window, window_shares

BITS = [0x207FFFFF, 0x2003FFFF]  # two network difficulties, ~2**-31 and ~2**-26 scale
T0 = 1_800_000_000 - 37 * 60  # s, minute-aligned; not hour-aligned, so blocks straddle it

slices = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 40), st.integers(0, 3000)),  # minute (up to two days)
        st.integers(1, 4),  # account (worker = account * 10 + rig)
        st.integers(0, 1),  # rig
        st.sampled_from(BITS),
        st.integers(1, 2**20),  # numerator
        st.sampled_from([2**32, 2**30 * 3, 10**9, 1]),  # denominator
    ),
    min_size=0,
    max_size=60,
)


def load(engine: sa.Engine, rows: list[tuple[int, int, int, int, int, int]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(ShareSlice))
        conn.execute(sa.delete(Worker))
        conn.execute(sa.delete(Account))
        conn.execute(sa.insert(Account), [{"id": a, "name": f"m{5 - a}"} for a in range(1, 5)])
        conn.execute(
            sa.insert(Worker),
            [
                {"id": a * 10 + r, "account_id": a, "name": f"rig{r}"}
                for a in range(1, 5)
                for r in (0, 1)
            ],
        )
        if rows:
            conn.execute(
                sa.insert(ShareSlice),
                [
                    {
                        "node_id": 0,
                        "account_id": a,
                        "worker_id": a * 10 + r,
                        "slice_start": T0 + m * 60,
                        "bits": bits,
                        "diff_num": n,
                        "diff_den": d,
                        "shares": 1,
                        "first_ms": (T0 + m * 60) * 1000,
                        "last_ms": (T0 + m * 60) * 1000,
                    }
                    for m, a, r, bits, n, d in rows
                ],
            )
        slice_sums.rebuild(conn)  # slices were deleted: the sums start again


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=slices,
    found_minute=st.one_of(st.integers(0, 45), st.integers(0, 3050)),
    factor=st.sampled_from([Fraction(1, 1000), Fraction(1, 7), Fraction(2), Fraction(10**6)]),
)
def test_database_window_equals_the_reference(
    ledger: sa.Engine,
    rows: list[tuple[int, int, int, int, int, int]],
    found_minute: int,
    factor: Fraction,
) -> None:
    load(ledger, rows)
    found_ms = (T0 + found_minute * 60) * 1000 + 59_999
    with ledger.connect() as conn:
        fast = window(conn, found_ms, factor)
        ref = window_shares(_all_rows(conn, T0 + found_minute * 60), found_ms, _names(conn))
    got = pplns_split(5_000_000_000, fast, factor=factor, pool_fee=Fraction(1, 100))
    want = pplns_split(5_000_000_000, ref, factor=factor, pool_fee=Fraction(1, 100))
    assert (got.credits, got.pool_fee_sat, got.unallocated_sat) == (
        want.credits,
        want.pool_fee_sat,
        want.unallocated_sat,
    )
    assert len(fast) <= len(ref)  # never more rows than the slices themselves


def test_wide_numbers_stay_exact(ledger: sa.Engine) -> None:
    """A numerator wider than 64 bits: PostgreSQL sums it exactly (NUMERIC), SQLite in Python
    integers. The split is the reference's either way."""
    load(ledger, [(0, 1, 0, BITS[0], 1, 1), (1, 2, 0, BITS[0], 1, 3)])
    with ledger.begin() as conn:
        conn.execute(
            sa.update(ShareSlice).where(ShareSlice.account_id == 1).values(diff_num=10**30)
        )
        slice_sums.rebuild(conn)
    found_ms = (T0 + 60) * 1000
    for factor in (Fraction(2), Fraction(10**40)):
        with ledger.connect() as conn:
            rows = window(conn, found_ms, factor)
            ref = window_shares(_all_rows(conn, T0 + 60), found_ms, _names(conn))
        got = pplns_split(10**9, rows, factor=factor)
        want = pplns_split(10**9, ref, factor=factor)
        assert (got.credits, got.unallocated_sat) == (want.credits, want.unallocated_sat)
    assert got.credits["m4"] > 0  # the huge window reached the wide slice
