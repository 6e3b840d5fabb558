"""Shares -> slices: the array path ingest uses equals the plain loop, and slices reach both
databases exactly (binary COPY on PostgreSQL), including numerators past 64 bits."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from hypothesis import given, settings
from hypothesis import strategies as st

from poold.ledger.db import MIGRATIONS, copy_columns, copy_payload, make_engine, migrate
from poold.ledger.models import Account, ShareSlice, Worker
from poold.ledger.settle import verify
from poold.ledger.slices.build import slices_from_arrays, slices_from_tuples
from poold.shares.log import LogPosition
from poold.shares.scan import ArrayBatch

NAMES = [(b"acct0", b"rig0"), (b"acct0", b"rig1"), (b"acct1", b"rig0"), (b"b\xc3\xa9", b"")]
U64_MAX = (1 << 64) - 1

shares = st.lists(
    st.tuples(
        st.integers(1_800_000_000_000, 1_800_000_600_000),  # ts ms: ten minutes
        st.sampled_from([0x1D00FFFF, 0x1C00FFFF, 0x207FFFFF]),
        st.one_of(st.integers(1, 1 << 20), st.integers(1 << 60, U64_MAX)),
        st.sampled_from([1, 1, 1, 2, 4, 3, 1 << 40]),
        st.integers(0, len(NAMES) - 1),
    ),
    max_size=300,
)


def as_batch(rows: list[tuple[int, int, int, int, int]], groups_per_name: int) -> ArrayBatch:
    """An array batch where each name owns `groups_per_name` groups (as after several chunks)."""
    names = [n for n in NAMES for _ in range(groups_per_name)]
    group = [g * groups_per_name + i % groups_per_name for i, (*_r, g) in enumerate(rows)]
    return ArrayBatch(
        np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.uint64),
        np.array([r[3] for r in rows], np.uint64),
        np.array(group, np.int64),
        names,
        [],
        len(rows),
        LogPosition(1, 0),
        [],
    )


cuts = st.lists(st.integers(1_800_000_000_000, 1_800_000_600_000), max_size=4)


@settings(max_examples=200, deadline=None)
@given(shares, st.integers(1, 3), cuts)
def test_array_slicing_equals_the_loop(
    rows: list[tuple[int, int, int, int, int]], k: int, blocks: list[int]
) -> None:
    """Same rows (ids, minute, bits, exact reduced difficulty, count, first/last ms), whatever
    the denominators, the 64-bit numerators, how many groups one name has, or where blocks
    were found; and no slice holds shares from both sides of a block's time."""
    ids = {n: (10 + 3 * i, 100 + i // 2) for i, n in enumerate(NAMES)}
    batch = as_batch(rows, k)
    wid = np.array([ids[n][0] for n in batch.names], np.int64)
    aid = np.array([ids[n][1] for n in batch.names], np.int64)
    got = slices_from_arrays(batch, wid, aid, blocks)
    assert got is not None
    want = slices_from_tuples([(t, b, x, d, *NAMES[g]) for t, b, x, d, g in rows], ids, blocks)
    assert got.tuples() == want
    assert sum(r[6] for r in want) == len(rows)
    for *_key, first, last, _cn, _cd in want:
        assert all(last <= cut or first > cut for cut in blocks)
    if not blocks:  # without blocks: one row per (worker, minute, bits), as before
        keys = [(r[1], r[2], r[3]) for r in want]
        assert len(keys) == len(set(keys))


def test_a_key_too_wide_for_64_bits_is_left_to_the_loop() -> None:
    """workers x minutes x bits x denominators past 2**62: None (ingest then takes the loop)."""
    n = 2000
    spread = ArrayBatch(
        np.linspace(0, 2**62, n).astype(np.int64),
        np.array([0x1D00FFFF, 0x1C00FFFF, 0x207FFFFF, 0x1B00FFFF] * (n // 4), np.int64),
        np.ones(n, np.uint64),
        (np.arange(n, dtype=np.uint64) % 8) + 1,
        np.arange(n, dtype=np.int64),
        [(b"a", str(i).encode()) for i in range(n)],
        [],
        n,
        LogPosition(1, 0),
        [],
    )
    ids = np.arange(n, dtype=np.int64)
    assert slices_from_arrays(spread, ids, ids) is None
    spread.ts_ms //= 1 << 20  # a narrower span of minutes: fits again
    assert slices_from_arrays(spread, ids, ids) is not None


def test_binary_copy_payload_layout() -> None:
    """One row, checked against the format by hand: header, field count, then per field a
    length and big-endian bytes, then the trailer."""
    data = copy_payload(
        [("a", "int4", [7]), ("b", "text", [12345678901234567890123]), ("c", "int8", [-2])]
    )
    head = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    row = (
        (3).to_bytes(2, "big")
        + (4).to_bytes(4, "big")
        + (7).to_bytes(4, "big")
        + (23).to_bytes(4, "big")
        + b"12345678901234567890123"
        + (8).to_bytes(4, "big")
        + (-2).to_bytes(8, "big", signed=True)
    )
    assert data == head + row + b"\xff\xff"


def test_slices_reach_the_database_exactly(ledger: sa.Engine) -> None:
    """copy_columns writes every row, text columns of any width (up to the column's 80
    digits), on both backends; verify accepts them, and names a slice whose worker does not
    exist."""
    with ledger.begin() as conn:
        conn.execute(sa.insert(Account), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        conn.execute(sa.insert(Worker), [{"id": 5, "account_id": 1, "name": "w"}])
        conn.execute(sa.insert(Worker), [{"id": 6, "account_id": 2, "name": "w"}])
    nums = [1, 10**19, 2**64 + 1, 10**79 + 7, 42]
    n = len(nums)
    with ledger.begin() as conn:
        copy_columns(
            conn,
            ShareSlice.__table__,  # type: ignore[arg-type]
            [
                ("node_id", "int4", np.full(n, 3)),
                ("account_id", "int4", np.array([1, 2, 1, 2, 1])),
                ("worker_id", "int4", np.array([5, 6, 5, 6, 5])),
                ("slice_start", "int8", np.arange(n) * 60 + 1_800_000_000),
                ("bits", "int8", np.full(n, 0x1D00FFFF)),
                ("diff_num", "text", nums),
                ("diff_den", "text", [1, 3, 1, 2**70, 1]),
                ("shares", "int4", np.arange(n) + 1),
                ("first_ms", "int8", np.full(n, -(2**40))),
                ("last_ms", "int8", np.full(n, 2**62)),
            ],
        )
    with ledger.connect() as conn:
        got = conn.execute(
            sa.select(
                ShareSlice.node_id,
                ShareSlice.account_id,
                ShareSlice.worker_id,
                ShareSlice.diff_num,
                ShareSlice.diff_den,
                ShareSlice.shares,
                ShareSlice.first_ms,
                ShareSlice.last_ms,
            ).order_by(ShareSlice.slice_start)
        ).all()
    assert [tuple(r) for r in got] == [
        (3, a, w, x, d, i + 1, -(2**40), 2**62)
        for i, (a, w, x, d) in enumerate(
            zip([1, 2, 1, 2, 1], [5, 6, 5, 6, 5], nums, [1, 3, 1, 2**70, 1], strict=True)
        )
    ]
    assert verify(ledger) == []
    with ledger.begin() as conn:
        copy_columns(
            conn,
            ShareSlice.__table__,  # type: ignore[arg-type]
            [
                ("node_id", "int4", [0, 0]),
                ("account_id", "int4", [2, 1]),
                ("worker_id", "int4", [5, 99]),  # worker 5 is account 1's; 99 does not exist
                ("slice_start", "int8", [0, 0]),
                ("bits", "int8", [1, 1]),
                ("diff_num", "text", [1, 1]),
                ("diff_den", "text", [1, 1]),
                ("shares", "int4", [1, 1]),
                ("first_ms", "int8", [0, 0]),
                ("last_ms", "int8", [0, 0]),
            ],
        )
    assert verify(ledger) == ["2 share slices name no worker of their account"]


def test_migration_0005_keeps_every_slice(ledger_url: str) -> None:
    """A ledger at 0004 (slices with foreign keys) upgrades with its slices intact, and the
    foreign keys are gone."""
    engine = make_engine(ledger_url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    with engine.begin() as conn:
        assert sa.inspect(conn).get_foreign_keys("share_slices")
        conn.execute(sa.insert(Account), [{"id": 1, "name": "a"}])
        conn.execute(sa.insert(Worker), [{"id": 1, "account_id": 1, "name": "w"}])
        conn.execute(
            sa.text(
                "INSERT INTO share_slices (node_id, account_id, worker_id, slice_start, bits, "
                "diff_num, diff_den, shares, first_ms, last_ms) VALUES "
                "(0, 1, 1, 60, 7, '123456789012345678901234567890', '3', 4, 5, 6)"
            )
        )
    migrate(engine)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_foreign_keys("share_slices") == []
        row = conn.execute(sa.select(ShareSlice.diff_num, ShareSlice.shares)).one()
        names = {i["name"] for i in sa.inspect(conn).get_indexes("share_slices")}
    assert tuple(row) == (123456789012345678901234567890, 4)
    assert {"ix_slices_account_start", "ix_slices_start"} <= names
    assert verify(engine) == []
    engine.dispose()
