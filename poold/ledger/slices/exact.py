"""Exact sums of share-slice difficulty, computed by the database: the shared step of every
read that totals work (API hashrates and charts, pool effort, a token period's delivered
hashrate). Imports SQLAlchemy and the ledger models only.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from sqlalchemy import BigInteger, Numeric, cast, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from poold.ledger.models import ShareSlice


def exact_sums(
    conn: Connection,
    keys: list[Any],
    conds: list[Any],
    joins: tuple[Any, ...] = (),
    *,
    model: Any = ShareSlice,
) -> dict[tuple[Any, ...], Fraction]:
    """Summed difficulty per `keys` of `model`'s rows (share slices, or the slice sums: any
    model with diff_num/diff_den), exactly: the database sums numerators per denominator
    (NUMERIC on PostgreSQL; 64-bit on SQLite, where numerators wider than 18 digits, or a
    group whose sum would overflow, are summed here instead)."""
    pg = conn.dialect.name == "postgresql"
    num = cast(model.diff_num, Numeric if pg else BigInteger)
    wide = func.length(model.diff_num) > 18

    def query(*cols: Any) -> Any:
        q = select(*cols)
        for target, on in joins:
            q = q.join(target, on)
        return q

    every_row = query(*keys, model.diff_den, model.diff_num)
    try:
        rows = list(
            conn.execute(
                query(*keys, model.diff_den, func.sum(num))
                .where(*conds, *([] if pg else [~wide]))
                .group_by(*keys, model.diff_den)
            )
        )
        if not pg:
            rows += conn.execute(every_row.where(*conds, wide)).all()
    except OperationalError:  # SQLite: a group's sum passed 64 bits; sum every row here
        rows = list(conn.execute(every_row.where(*conds)))
    out: dict[tuple[Any, ...], Fraction] = {}
    for *key, den, total in rows:
        k = tuple(key)
        out[k] = out.get(k, Fraction(0)) + Fraction(int(total), int(den))
    return out
