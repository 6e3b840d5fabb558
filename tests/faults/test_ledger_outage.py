"""A database cut at every step of a ledger pass: the daemon lives, Stratum keeps answering
`true` only for logged shares, and once the database returns everything reaches the ledger once.
(Issue 11, defect 2: a raw SQLAlchemy error from FPPS booking or block following ended the
daemon, after which Stratum kept accepting against a closed share log.)"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa

import poold.ledger.scheduler
from poold.ledger.db import LedgerError
from tests.faults.proxy import CuttableProxy
from tests.helpers import PATIENCE_S, StratumClient, wait_for
from tests.ledger.conftest import _pg_available, fresh_pg_schema
from tests.stratum.test_server import current_job, submit_params

STEPS = ["ingest", "settle_blocks", "book_fpps", "settle_tokens", "follow_blocks"]


@pytest.fixture
async def pg_proxy() -> AsyncIterator[tuple[CuttableProxy, str]]:
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    proxy = CuttableProxy(("127.0.0.1", 5432))
    port = await proxy.start()
    with fresh_pg_schema() as schema:
        url = (
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/test?options=-csearch_path%3D{schema}"
        )
        try:
            yield proxy, url
        finally:
            await proxy.close()  # before the schema is dropped: no link may hold a lock


def _cut_first_call(proxy: CuttableProxy, fn: Callable[..., Any], hit: asyncio.Event) -> Any:
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not hit.is_set():
            proxy.cut()
            hit.set()
        return await fn(*args, **kwargs)

    return wrapped


# A connection SQLAlchemy's pool dropped while the proxy cut it mid-reply is left for the
# garbage collector, and psycopg warns when it is collected (it may be in a later test): not
# one poold holds. Collected at the end of each run below, and that one warning let through.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*BaseConnection.__del__:pytest.PytestUnraisableExceptionWarning"
)
@pytest.mark.parametrize("step", STEPS)
async def test_database_cut_at_each_step(
    step: str,
    start_daemon: Any,
    config_factory: Any,
    pg_proxy: tuple[CuttableProxy, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, url = pg_proxy
    cfg = config_factory(
        pool={"scheme": "fpps", "fpps_period_s": 1},
        ledger={
            "url": url,
            "ingest_interval_s": 0.2,
            "ingest_open_minutes": True,
            "auto_migrate": True,
        },
        tokens={"enabled": True, "fleet_accounts": ["acct"], "period_s": 60},
    )
    hit = asyncio.Event()
    if step == "follow_blocks":  # runs in the daemon process itself
        monkeypatch.setattr(
            poold.ledger.scheduler,
            "follow_blocks",
            _cut_first_call(proxy, poold.ledger.scheduler.follow_blocks, hit),
        )
    rd = await start_daemon(cfg)
    daemon = rd.daemon
    if step == "book_fpps":
        sched = daemon.scheduler
        monkeypatch.setattr(sched, "book_fpps", _cut_first_call(proxy, sched.book_fpps, hit))
    elif step != "follow_blocks":  # a step of the ledger process
        worker = daemon.scheduler.worker
        assert worker is not None
        monkeypatch.setattr(worker, step, _cut_first_call(proxy, getattr(worker, step), hit))

    c = await StratumClient.connect(rd.address)
    await c.handshake("acct.w1")
    _diff, params = await current_job(c)
    nonce = 0

    async def submit_some(n: int) -> None:
        nonlocal nonce
        for _ in range(n):
            nonce += 1
            sp = submit_params("acct.w1", params, bytes(4), nonce)
            assert (await c.request("mining.submit", sp))["result"] is True

    await submit_some(5)
    await asyncio.wait_for(hit.wait(), PATIENCE_S)
    await wait_for(lambda: "ledger" in daemon.readiness(), "readyz to name the ledger")
    await submit_some(5)  # the outage does not reach miners
    failed = daemon.metrics.ledger_pass_failures
    await wait_for(  # several passes fail while miners are served
        lambda: daemon.metrics.ledger_pass_failures >= failed + 2, "two failed passes"
    )
    assert not rd.task.done(), "the daemon stopped on a database outage"
    proxy.restore()
    await submit_some(5)
    await wait_for(
        lambda: daemon.ingested_shares == 15 and daemon.scheduler.problem is None,
        "the ledger to catch up after the outage",
    )
    await c.close()
    await rd.shutdown()
    # Straight to the server: the proxy runs on this (now blocked) event loop.
    engine = sa.create_engine(url.replace(f":{proxy.port}/", ":5432/"))
    with engine.connect() as conn:
        shares = conn.execute(sa.text("SELECT sum(shares) FROM share_slices")).scalar()
    engine.dispose()
    assert shares == 15  # every acknowledged share, once
    gc.collect()  # what the cut left behind is collected here, not in another test


def test_entry_points_convert_database_errors() -> None:
    """One wrapper: a driver error leaves any public ledger entry point as LedgerError."""
    from poold.ledger.settle import balances

    engine = sa.create_engine("sqlite:///file:nowhere?mode=ro&uri=true")
    with pytest.raises(LedgerError, match="balances: the ledger database failed"):
        balances(engine)
