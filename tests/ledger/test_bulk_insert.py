"""Bulk inserts (COPY on PostgreSQL, executemany on SQLite) store every value as given."""

from __future__ import annotations

import sqlalchemy as sa

from poold.ledger.db import bulk_insert_tuples
from poold.ledger.models import HolderSalt

AWKWARD = [
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    "back\\slash",
    "\\N",  # the text a NULL is written as, as a real string
    "\\\\t",
    "ünïcödé ✓",
    "",
]


def test_strings_survive_bulk_insert_exactly(ledger: sa.Engine) -> None:
    rows = [(f"holder-{i}-{s}", s or "-") for i, s in enumerate(AWKWARD)]
    with ledger.begin() as conn:
        bulk_insert_tuples(conn, HolderSalt.__table__, ["holder", "salt"], rows)  # type: ignore[arg-type]
    with ledger.connect() as conn:
        back = conn.execute(sa.select(HolderSalt.holder, HolderSalt.salt)).all()
    assert sorted(map(tuple, back)) == sorted(rows)
