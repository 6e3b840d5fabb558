"""Migration 0011 gives every share slice a credited difficulty for FPPS, on SQLite and
PostgreSQL: a slice FPPS has not booked yet whose difficulty is over what its shares could be
worth (one network difficulty each) is bounded by its share count; booked slices and slices
under the bound keep NULL (credited = difficulty)."""

from __future__ import annotations

from fractions import Fraction

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from poold.chain.targets import network_difficulty
from poold.ledger.db import MIGRATIONS, make_engine, migrate
from poold.ledger.models import ShareSlice

REGTEST = 0x207FFFFF  # network difficulty 65535 / 2**47: every real share is over it


def test_unbooked_slices_over_their_shares_are_bounded(ledger_url: str) -> None:
    engine = make_engine(ledger_url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")
    rows = [  # (id, node, bits, num, den, shares)
        (1, 0, REGTEST, 3, 1, 3),  # node 0's cursor is past it: booked, history
        (2, 0, REGTEST, 5, 2, 4),  # unbooked, over: bounded by 4 x nd
        (3, 1, 0x1D00FFFF, 3, 2, 2),  # network difficulty 1: 1.5 <= 2 shares, kept
        (4, 1, 0x1D00FFFF, 7, 1, 2),  # over: bounded by 2
    ]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO fpps_cursors (node_id, slice_id) VALUES (0, 1)"))
        for sid, node, bits, num, den, shares in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO share_slices (id, node_id, account_id, worker_id, "
                    "slice_start, bits, diff_num, diff_den, shares, first_ms, last_ms) "
                    "VALUES (:id, :n, 1, 1, 60, :b, :num, :den, :k, 1, 2)"
                ),
                {"id": sid, "n": node, "b": bits, "num": str(num), "den": str(den), "k": shares},
            )
    migrate(engine)
    with engine.connect() as conn:
        got = {
            i: (n, d)
            for i, n, d in conn.execute(
                sa.select(ShareSlice.id, ShareSlice.credit_num, ShareSlice.credit_den)
            )
        }
    bound = network_difficulty(REGTEST) * 4
    assert got[1] == (None, None)
    assert Fraction(got[2][0], got[2][1]) == bound
    assert got[3] == (None, None)
    assert got[4] == (2, 1)
    engine.dispose()
