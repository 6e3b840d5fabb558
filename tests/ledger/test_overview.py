"""The pool overview's one-pass rule gives exactly what the per-window, per-worker scans gave
(the reference below), on SQLite and PostgreSQL: random slices over 30 hours, with and without a
block found, windows that do and do not fill."""

from __future__ import annotations

from fractions import Fraction

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Connection

from poold.chain.targets import network_difficulty
from poold.ledger.models import Block, ShareSlice
from poold.ledger.queries import MinuteCache, PoolOverview, hashrates, pool_overview
from poold.ledger.slices.exact import exact_sums
from poold.ledger.slices.window import window
from tests.ledger.slices.test_window import BITS, T0, load

NOW = T0 + 30 * 3600 + 17  # 30 h after the first possible slice


def reference(conn: Connection, now: int, factor: Fraction) -> PoolOverview:
    """The overview as it was computed before: one scan per window, per worker, and a scan of
    everything after the last block for the effort."""
    rates = hashrates(conn, now)
    online = [k for k, v in rates.workers.items() if "10m" in v]  # any share in 10 min
    blocks = conn.execute(sa.select(Block.status, sa.func.count()).group_by(Block.status)).all()
    last = conn.execute(
        sa.select(sa.func.max(Block.found_ms)).where(Block.accepted.is_(True))
    ).scalar()
    # The round: every slice whose last share came after the last block (ingest cuts slices
    # at block times, so none straddles it).
    sums = exact_sums(conn, [ShareSlice.bits], [ShareSlice.last_ms > (last or -1)])
    effort = sum((v / network_difficulty(int(k[0])) for k, v in sums.items()), Fraction(0))
    covered = sum((d / n for _a, d, n in window(conn, now * 1000, factor)), Fraction(0))
    fill = min(Fraction(1), covered / factor)
    return PoolOverview(
        rates.total,
        len(online),
        len({k.split(".", 1)[0] for k in online}),
        {s: int(n) for s, n in blocks},
        effort,
        fill,
    )


END = (NOW // 60 * 60 - T0) // 60  # minute index of "now"
# Minutes on and around every edge (10 min, 1 h, 24 h ago, now), so slices, blocks and window
# edges often share a minute.
MINUTES = sorted({0, 1, *(END - k + d for k in (0, 10, 60, 1440) for d in (-1, 0, 1))})

slices = st.lists(
    st.tuples(
        st.sampled_from(MINUTES),
        st.integers(1, 4),
        st.integers(0, 1),
        st.sampled_from(BITS),
        st.integers(1, 2**40),
        st.sampled_from([2**32, 3, 1]),
    ),
    max_size=40,
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=slices,
    block_minute=st.none() | st.sampled_from(MINUTES),
    factor=st.sampled_from([Fraction(1, 10**6), Fraction(2), Fraction(10**6)]),
)
def test_one_pass_overview_equals_the_scans(
    ledger: sa.Engine,
    rows: list[tuple[int, int, int, int, int, int]],
    block_minute: int | None,
    factor: Fraction,
) -> None:
    with ledger.begin() as conn:
        conn.execute(sa.delete(Block))
    load(ledger, rows)
    with ledger.begin() as conn:
        if block_minute is not None:
            conn.execute(
                sa.insert(Block).values(
                    hash="ab" * 32,
                    node_id=0,
                    height=1,
                    account_id=1,
                    worker_id=10,
                    reward_sat=1,
                    bits=BITS[0],
                    found_ms=(T0 + block_minute * 60) * 1000 + 1234,
                    accepted=True,
                    status="pending",
                )
            )
    cache = MinuteCache()  # each example is a new ledger under the same URL
    with ledger.connect() as conn:
        assert pool_overview(conn, NOW, cache, factor) == reference(conn, NOW, factor)
    # A new slice in a recent minute shows at once; old minutes now come from the cache.
    with ledger.begin() as conn:
        conn.execute(
            sa.insert(ShareSlice).values(
                node_id=0,
                account_id=2,
                worker_id=21,
                slice_start=T0 + END * 60,
                bits=BITS[1],
                diff_num=12345,
                diff_den=7,
                shares=1,
                first_ms=(T0 + END * 60) * 1000,
                last_ms=(T0 + END * 60) * 1000,
            )
        )
    with ledger.connect() as conn:
        assert pool_overview(conn, NOW, cache, factor) == reference(conn, NOW, factor)
