"""The daemon ingests its own share log: everything answered `true` reaches the ledger, once,
even across a real network cut between the daemon and PostgreSQL."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from poold.ledger.db import make_engine
from poold.ledger.models import Block, ChainFees, JournalEntry
from poold.ledger.settle import balances, settle_pending, verify
from simulation.fleet import run_fleet
from tests.faults.proxy import CuttableProxy
from tests.helpers import PATIENCE_S, wait_for
from tests.ledger.conftest import PG_URL, _pg_available, fresh_pg_schema
from tests.ledger.test_ingest import ledger_totals, log_totals


async def test_daemon_ingests_everything_once(
    start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    cfg = config_factory(
        ledger={
            "url": f"sqlite:///{tmp_path / 'l.db'}",
            "ingest_interval_s": 0.2,
            "ingest_open_minutes": True,
            "auto_migrate": True,
        }
    )
    rd = await start_daemon(cfg)
    host, port = rd.address
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        until=lambda s: s.accepted >= 20,
    )
    # The loop runs while the daemon serves (the final pass at shutdown would hide it).
    await wait_for(lambda: rd.daemon.ingested_shares > 0, "the ledger loop to ingest")
    await rd.shutdown()  # the final pass picks up the rest
    engine = make_engine(cfg.ledger.url)
    assert ledger_totals(engine) == log_totals(cfg.sharelog.path)
    engine.dispose()


async def test_database_outage_delays_ingest_but_loses_nothing(
    start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    with fresh_pg_schema() as schema:
        proxy = CuttableProxy(("127.0.0.1", 5432))
        pport = await proxy.start()
        url = (
            f"postgresql+psycopg://postgres@127.0.0.1:{pport}/test?options=-csearch_path%3D{schema}"
        )
        try:
            cfg = config_factory(
                ledger={
                    "url": url,
                    "ingest_interval_s": 0.2,
                    "ingest_open_minutes": True,
                    "auto_migrate": True,
                }
            )
            rd = await start_daemon(cfg)
            host, port = rd.address
            proxy.cut()  # the database goes away while miners keep submitting
            stats = await run_fleet(
                f"stratum+tcp://{host}:{port}",
                miners=2,
                duration_s=PATIENCE_S,
                record_keys=True,
                until=lambda s: s.accepted >= 20,
            )
            assert stats.accepted > 0  # shares kept being accepted during the outage
            during = rd.daemon.ingested_shares
            assert during == 0  # the cut was real: nothing reached the ledger meanwhile
            proxy.restore()
            await wait_for(lambda: rd.daemon.ingested_shares > during, "ingest to resume by itself")
            await rd.shutdown()
            direct = make_engine(f"{PG_URL}?options=-csearch_path%3D{schema}")
            assert ledger_totals(direct) == log_totals(cfg.sharelog.path)
            direct.dispose()
        finally:
            await proxy.close()


async def test_daemon_books_fpps_every_period(
    start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    cfg = config_factory(
        pool={"scheme": "fpps", "fpps_period_s": 1, "fee": "1/100"},
        bitcoind={"kind": "simnet", "simnet_difficulty": "1/65536", "poll_interval_s": 0.05},
        ledger={
            "url": f"sqlite:///{tmp_path / 'l.db'}",
            "ingest_interval_s": 0.2,
            "ingest_open_minutes": True,
            "auto_migrate": True,
        },
    )
    rd = await start_daemon(cfg)
    host, port = rd.address
    runs = rd.daemon.metrics.settlement_runs
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        until=lambda s: s.accepted >= 20 and runs["fpps"] >= 2,
    )
    await wait_for(lambda: runs["fpps"] >= 2, "two FPPS bookings")
    await rd.shutdown()
    engine = make_engine(cfg.ledger.url)
    # The daemon settles a block once its minute has closed; the last minute's are left to
    # `poold settle` (this test does not wait for the minute to end).
    settle_pending(engine, pool_fee=Fraction(1, 100), scheme="fpps")
    with engine.connect() as conn:
        periods = (
            conn.execute(
                sa.select(JournalEntry.reference).where(JournalEntry.kind == "fpps_period")
            )
            .scalars()
            .all()
        )
        heights = conn.execute(sa.select(ChainFees.height).order_by(ChainFees.height)).scalars()
        recorded = list(heights)
        rewards = conn.execute(
            sa.select(sa.func.sum(Block.reward_sat)).where(Block.accepted.is_(True))
        ).scalar()
    assert len(periods) >= 2 and len(set(periods)) == len(periods)  # one booking per period
    # Every chain block's fees up to some recent tip are recorded, for the average.
    assert recorded == list(range(1, len(recorded) + 1))
    assert 1 <= len(recorded) <= await rd.daemon.bitcoind.tip_height()
    bal = balances(engine)
    assert bal["pool:fpps_paid"] > 0
    assert bal["pool:fpps_paid"] == -sum(v for k, v in bal.items() if k.startswith("miner:"))
    # Blocks found under FPPS are the pool's, pending until they mature.
    assert rewards and balances(engine, "pending")["pool:blocks"] == -rewards
    assert verify(engine) == []
    engine.dispose()
