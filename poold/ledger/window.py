"""The PPLNS window over share slices: which slices a block's split walks, and in what order.

The rule (`window_shares`, the reference): every slice up to and including the block's minute,
oldest first, ordered by content (minute, account id, worker id, bits) so the result never
depends on how ingest batched the log; rows with the same key are adjacent and belong to one
account, so merging them changes nothing.

`window` gives the same split input without loading every slice into Python: the database sums
slice difficulties per (minute, bits, denominator) newest first until the window is covered
(exactly, in Fractions) — that minute is the edge; minutes after it are summed per account
(they count in full, so their order does not matter), and only the edge minute's slices come
back one by one. Sums are exact: NUMERIC on PostgreSQL, 64-bit integers on SQLite with their
width checked (anything wider falls back to the reference path). Imports the ledger models
and difficulty math only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

from sqlalchemy import BigInteger, Numeric, cast, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from poold.ledger.models import Account, ShareSlice
from poold.shares.difficulty import network_difficulty

#: A slice as the window sees it: (minute start s, account id, worker id, bits, difficulty).
SliceRow = tuple[int, int, int, int, Fraction]
Share = tuple[str, Fraction, Fraction]  # (account, difficulty, network difficulty)

FIRST_PAGE_S = 6 * 3600


def minute_of(found_ms: int) -> int:
    return found_ms // 60_000 * 60


class _Nets(dict[int, Fraction]):
    def __missing__(self, bits: int) -> Fraction:
        self[bits] = net = network_difficulty(bits)
        return net


def window_shares(rows: Sequence[SliceRow], found_ms: int, names: Mapping[int, str]) -> list[Share]:
    """The reference rule over slices held in memory."""
    last = minute_of(found_ms)
    nets = _Nets()
    return [
        (names[a], diff, nets[bits])
        for _t, a, _w, bits, diff in sorted((r for r in rows if r[0] <= last), key=lambda r: r[:4])
    ]


def _names(conn: Connection) -> dict[int, str]:
    return {int(i): n for i, n in conn.execute(select(Account.id, Account.name))}


def _all_rows(conn: Connection, last: int) -> list[SliceRow]:
    return [
        (int(t), int(a), int(w), int(b), Fraction(int(n), int(d)))
        for t, a, w, b, n, d in conn.execute(
            select(
                ShareSlice.slice_start,
                ShareSlice.account_id,
                ShareSlice.worker_id,
                ShareSlice.bits,
                ShareSlice.diff_num,
                ShareSlice.diff_den,
            ).where(ShareSlice.slice_start <= last)
        )
    ]


def window(conn: Connection, found_ms: int, factor: Fraction) -> list[Share]:
    """The split input for a block found at `found_ms` (same result as `window_shares`)."""
    names = _names(conn)
    try:
        fast = _window_sql(conn, minute_of(found_ms), factor, names)
    except (OverflowError, OperationalError):  # SQLite: a sum beyond 64 bits
        fast = None
    if fast is not None:
        return fast
    return window_shares(_all_rows(conn, minute_of(found_ms)), found_ms, names)


def _window_sql(
    conn: Connection, last: int, factor: Fraction, names: Mapping[int, str]
) -> list[Share] | None:
    pg = conn.dialect.name == "postgresql"
    num = cast(ShareSlice.diff_num, Numeric if pg else BigInteger)
    width = func.max(func.length(ShareSlice.diff_num))
    oldest = conn.execute(
        select(func.min(ShareSlice.slice_start)).where(ShareSlice.slice_start <= last)
    ).scalar()
    if oldest is None:
        return []
    nets = _Nets()
    remaining = factor
    edge: int | None = None
    hi, span = last, FIRST_PAGE_S
    while edge is None and hi >= oldest:
        lo = hi - span
        groups = conn.execute(
            select(
                ShareSlice.slice_start,
                ShareSlice.bits,
                ShareSlice.diff_den,
                func.sum(num),
                width,
            )
            .where(ShareSlice.slice_start > lo, ShareSlice.slice_start <= hi)
            .group_by(ShareSlice.slice_start, ShareSlice.bits, ShareSlice.diff_den)
            .order_by(ShareSlice.slice_start.desc())
        ).all()
        scores: dict[int, Fraction] = {}  # minute -> score, newest first
        for t, bits, den, total, w in groups:
            if not pg and int(w) > 18:
                return None  # could exceed 64 bits on SQLite: the reference path
            scores[t] = scores.get(t, Fraction(0)) + Fraction(int(total), int(den)) / nets[bits]
        for minute, score in scores.items():
            if score >= remaining:
                edge = minute
                break
            remaining -= score
        hi, span = lo, span * 4

    full_from = edge if edge is not None else oldest - 1
    aggregates = conn.execute(
        select(ShareSlice.account_id, ShareSlice.bits, ShareSlice.diff_den, func.sum(num), width)
        .where(ShareSlice.slice_start > full_from, ShareSlice.slice_start <= last)
        .group_by(ShareSlice.account_id, ShareSlice.bits, ShareSlice.diff_den)
    ).all()
    if not pg and any(int(w) > 18 for *_, w in aggregates):
        return None
    out: list[Share] = []
    if edge is not None:
        merged: dict[tuple[int, int, int], Fraction] = {}
        for a, wk, bits, n, d in conn.execute(
            select(
                ShareSlice.account_id,
                ShareSlice.worker_id,
                ShareSlice.bits,
                ShareSlice.diff_num,
                ShareSlice.diff_den,
            ).where(ShareSlice.slice_start == edge)
        ):
            key = (int(a), int(wk), int(bits))
            merged[key] = merged.get(key, Fraction(0)) + Fraction(int(n), int(d))
        out += [(names[k[0]], merged[k], nets[k[2]]) for k in sorted(merged)]
    full: dict[tuple[int, int], Fraction] = {}
    for a, bits, den, total, _w in aggregates:
        ba = (int(bits), int(a))
        full[ba] = full.get(ba, Fraction(0)) + Fraction(int(total), int(den))
    out += [(names[a], full[(bits, a)], nets[bits]) for bits, a in sorted(full)]
    return out
