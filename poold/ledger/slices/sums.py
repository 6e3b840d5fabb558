"""Slice sums: share slices folded into per-(span, start, account, bits, denominator) totals.

`fold` counts every slice with an id above `slice_rollup.folded_id` into `slice_sums` (per
account at spans of 10 min, 1 h and 1 day; for the whole pool, account 0, at those and 1 min)
and moves `folded_id` in the same transaction: each slice is counted exactly once, because slices
are append-only and the fold first takes the lock that orders it after every insert in flight
(PostgreSQL: SHARE ROW EXCLUSIVE on share_slices, which waits for uncommitted ingest batches and
conflicts with itself; SQLite: the database's one write lock). Its callers: the PPLNS window
(inside the settlement's own transaction, so what it reads is complete) and the daemon after
each ingest (so that fold stays small). `check` is the audit: every span sums to the slices.

PostgreSQL folds in one INSERT ... SELECT ... ON CONFLICT with NUMERIC sums; SQLite in Python
(its integers are 64 bits). Imports SQLAlchemy, the ledger models and `slices.exact_sums`.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from poold.ledger.models import ShareSlice, SliceRollup, SliceSum
from poold.ledger.slices.exact import exact_sums

SPANS = (60, 600, 3600, 86400)
ACCOUNT_SPANS = SPANS[1:]  # per account from 10 minutes up: a window reads its ragged minutes
#                            from the slices themselves (fewer rows to fold at ingest)
POOL = 0  # account_id of the whole pool's sums (every span: the window edge walks minutes)

_PG_FOLD = text(
    """
    WITH t AS (
        SELECT slice_start - slice_start % 600 AS start, account_id, bits, diff_den,
               SUM(CAST(diff_num AS NUMERIC)) AS num, SUM(shares) AS shares
        FROM share_slices WHERE id > :lo AND id <= :hi
        GROUP BY 1, 2, 3, 4
    ), h AS (
        SELECT start - start % 3600 AS start, account_id, bits, diff_den,
               SUM(num) AS num, SUM(shares) AS shares
        FROM t GROUP BY 1, 2, 3, 4
    ), d AS (
        SELECT start - start % 86400 AS start, account_id, bits, diff_den,
               SUM(num) AS num, SUM(shares) AS shares
        FROM h GROUP BY 1, 2, 3, 4
    ), accounts AS (
        SELECT 600 AS span, * FROM t
        UNION ALL SELECT 3600, * FROM h
        UNION ALL SELECT 86400, * FROM d
    ), everything AS (
        SELECT span, start, account_id, bits, diff_den, num, shares FROM accounts
        UNION ALL
        SELECT span, start, 0, bits, diff_den, SUM(num), SUM(shares)
        FROM accounts GROUP BY span, start, bits, diff_den
        UNION ALL
        SELECT 60, slice_start, 0, bits, diff_den, SUM(CAST(diff_num AS NUMERIC)), SUM(shares)
        FROM share_slices WHERE id > :lo AND id <= :hi
        GROUP BY slice_start, bits, diff_den
    )
    INSERT INTO slice_sums (span, start, account_id, bits, diff_den, diff_num, shares)
    SELECT span, start, account_id, bits, diff_den, CAST(num AS TEXT), shares FROM everything
    ON CONFLICT (span, start, account_id, bits, diff_den) DO UPDATE SET
        diff_num = CAST(CAST(slice_sums.diff_num AS NUMERIC)
                        + CAST(EXCLUDED.diff_num AS NUMERIC) AS TEXT),
        shares = slice_sums.shares + EXCLUDED.shares
    """
)


def fold(conn: Connection) -> bool:
    """Count every slice not yet in the sums, in the caller's transaction (which then holds
    the fold's lock until it ends); False when there was nothing new."""
    pg = conn.dialect.name == "postgresql"
    if pg:
        conn.execute(text("LOCK TABLE share_slices IN SHARE ROW EXCLUSIVE MODE"))
    # A write first: on SQLite it takes the write lock before anything is read.
    folded = conn.execute(
        update(SliceRollup)
        .where(SliceRollup.id == 1)
        .values(folded_id=SliceRollup.folded_id)
        .returning(SliceRollup.folded_id)
    ).scalar_one()
    top = conn.execute(select(func.max(ShareSlice.id))).scalar() or 0
    if top <= folded:
        return False
    if pg:
        conn.execute(_PG_FOLD, {"lo": folded, "hi": top})
    else:
        _fold_python(conn, folded, top)
    conn.execute(update(SliceRollup).where(SliceRollup.id == 1).values(folded_id=top))
    return True


def _fold_python(conn: Connection, lo: int, hi: int) -> None:
    add: dict[tuple[int, int, int, int, int], list[int]] = defaultdict(lambda: [0, 0])
    for start, account, bits, den, num, shares in conn.execute(
        select(
            ShareSlice.slice_start,
            ShareSlice.account_id,
            ShareSlice.bits,
            ShareSlice.diff_den,
            ShareSlice.diff_num,
            ShareSlice.shares,
        ).where(ShareSlice.id > lo, ShareSlice.id <= hi)
    ):
        for span in SPANS:
            block = start - start % span
            for who in (account, POOL) if span in ACCOUNT_SPANS else (POOL,):
                v = add[(span, block, who, bits, den)]
                v[0] += num
                v[1] += shares
    for span in SPANS:
        keys = [k for k in add if k[0] == span]
        if not keys:
            continue
        lo_s, hi_s = min(k[1] for k in keys), max(k[1] for k in keys)
        for _sp, block, who, bits, den, num, shares in conn.execute(
            select(
                SliceSum.span,
                SliceSum.start,
                SliceSum.account_id,
                SliceSum.bits,
                SliceSum.diff_den,
                SliceSum.diff_num,
                SliceSum.shares,
            ).where(SliceSum.span == span, SliceSum.start.between(lo_s, hi_s))
        ):
            old = add.get((span, block, who, bits, den))
            if old is not None:
                old[0] += num
                old[1] += shares
    rows = [
        {
            "span": k[0],
            "start": k[1],
            "account_id": k[2],
            "bits": k[3],
            "diff_den": k[4],
            "diff_num": v[0],
            "shares": v[1],
        }
        for k, v in add.items()
    ]
    stmt = sqlite_insert(SliceSum)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["span", "start", "account_id", "bits", "diff_den"],
            set_={"diff_num": stmt.excluded.diff_num, "shares": stmt.excluded.shares},
        ),
        rows,
    )


def rebuild(conn: Connection) -> None:
    """Forget every sum and fold again from the first slice (tests that rewrite slices, or an
    operator after restoring a ledger)."""
    conn.execute(delete(SliceSum))
    conn.execute(update(SliceRollup).where(SliceRollup.id == 1).values(folded_id=0))
    fold(conn)


def blocks(after: int, last: int) -> list[tuple[int, int, int]]:
    """The minutes in (after, last] (minute starts, s) as the fewest aligned blocks, largest
    span first where it fits: (span, first block start, last block start) per run. At most
    nine one-minute blocks at each end."""
    out: list[tuple[int, int, int]] = []
    t = after + 60
    while t <= last:
        span = next(s for s in reversed(SPANS) if t % s == 0 and t + s - 60 <= last)
        if out and out[-1][0] == span and out[-1][2] + span == t:
            out[-1] = (span, out[-1][1], t)
        else:
            out.append((span, t, t))
        t += span
    return out


Runs = list[tuple[int, int, int]]
Minutes = list[tuple[int, int]]


def cover(after: int, last: int) -> tuple[Runs, Minutes, Minutes]:
    """The minutes in (after, last] as (block runs to add from the sums, minute ranges to add
    from the slices, minute ranges to subtract from the slices). A ragged 10-minute block that
    is more than half inside is taken whole, less its minutes outside: at most five minutes
    per ragged block are read from the slices, instead of nine."""
    whole: Runs = []
    plus: Minutes = []
    minus: Minutes = []
    for span, first, final in blocks(after, last):
        if span != 60:
            whole.append((span, first, final))
            continue
        t = first
        while t <= final:  # one 10-minute block at a time
            block = t - t % 600
            end = min(final, block + 540)
            if (end - t) // 60 + 1 > 5:
                whole.append((600, block, block))
                if t > block:
                    minus.append((block, t - 60))
                if end < block + 540:
                    minus.append((end + 60, block + 540))
            else:
                plus.append((t, end))
            t = end + 60
    return whole, plus, minus


def sums(conn: Connection, keys: list[Any], conds: list[Any]) -> dict[tuple[Any, ...], Fraction]:
    """Summed difficulty of the slice_sums rows matching `conds`, per `keys`, exactly."""
    return exact_sums(conn, keys, conds, model=SliceSum)


def check(conn: Connection) -> list[str]:
    """Problems with the sums (empty = each span, per account and for the pool, adds up to
    exactly the slices folded so far)."""
    folded = conn.execute(select(SliceRollup.folded_id).where(SliceRollup.id == 1)).scalar()
    if folded is None:
        return ["slice_rollup has no row: run `poold migrate`"]
    want = exact_sums(conn, [ShareSlice.account_id], [ShareSlice.id <= folded])
    total = sum(want.values(), Fraction(0))
    problems = []
    for span in SPANS:
        got = sums(conn, [SliceSum.account_id], [SliceSum.span == span])
        pool = got.pop((POOL,), Fraction(0))
        if got != ({k: v for k, v in want.items() if v} if span in ACCOUNT_SPANS else {}):
            problems.append(
                f"slice sums of span {span} s differ from the slices per account "
                "(`poold ledger refold` rebuilds them)"
            )
        if pool != total:
            problems.append(
                f"slice sums of span {span} s differ from the slices for the pool "
                "(`poold ledger refold` rebuilds them)"
            )
    return problems
