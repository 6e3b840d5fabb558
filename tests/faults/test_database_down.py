"""`poold run` with its ledger database down or hung (issue 11, defect 8): Stratum and the
share log start anyway and the ledger connects when it can; SIGTERM while the database stopped
answering still exits in bounded time, with every acknowledged share in the share log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from poold.ledger.db import make_engine
from poold.ledger.ingest import ingest
from poold.shares.log import read_log
from simulation.fleet import FleetStats, run_fleet
from tests.e2e.test_durability import write_config
from tests.faults.proxy import CuttableProxy
from tests.helpers import PATIENCE_S
from tests.ledger.conftest import PG_URL, _pg_available, fresh_pg_schema
from tests.ledger.test_ingest import ledger_totals, log_totals

pytestmark = pytest.mark.slow


class Poold:
    """A real `poold run` process whose JSON log events are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "text", "line": line.decode(errors="replace")})

    async def event(self, name: str, timeout_s: float = PATIENCE_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            for e in self.events:
                if e.get("event") == name:
                    return e
            assert self.proc.returncode is None, f"poold exited: {self.events[-5:]}"
            assert time.monotonic() < deadline, f"no {name} event: {self.events[-5:]}"
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = await self.proc.wait()
        await self._reader
        return code


@pytest.fixture
async def pg_behind_proxy() -> AsyncIterator[tuple[CuttableProxy, str, str]]:
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    proxy = CuttableProxy(("127.0.0.1", 5432))
    port = await proxy.start()
    with fresh_pg_schema() as schema:
        opts = f"?options=-csearch_path%3D{schema}"
        try:
            yield proxy, f"postgresql://postgres@127.0.0.1:{port}/test{opts}", f"{PG_URL}{opts}"
        finally:
            # First: the stalled links hold transactions (and their locks) open on the server;
            # dropping the schema would wait for them forever.
            await proxy.close()


async def start(
    tmp_path: Path, url: str, *, shutdown_wait_s: float = 2, statement_timeout_s: float = 300
) -> Poold:
    cfg = write_config(
        tmp_path,
        extra="",
    )
    cfg.write_text(
        cfg.read_text()
        + f'\n[ledger]\nurl = "{url}"\ningest_interval_s = 0.3\n'
        + "ingest_open_minutes = true\nauto_migrate = true\n"
        f"connect_timeout_s = 2\nshutdown_wait_s = {shutdown_wait_s}\n"
        f"statement_timeout_s = {statement_timeout_s}\n"
        '\n[api]\nlisten = "127.0.0.1:0"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "poold",
        "run",
        "--config",
        str(cfg),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=dict(os.environ),
    )
    return Poold(proc)


async def test_starts_while_the_database_is_down(
    tmp_path: Path, pg_behind_proxy: tuple[CuttableProxy, str, str]
) -> None:
    proxy, url, direct = pg_behind_proxy
    proxy.cut()  # connections refused, as with a stopped server
    # The last ingest at stop must finish even on a loaded machine: this test is about the
    # start, test_sigterm_while_the_database_hangs about a bounded stop.
    poold = await start(tmp_path, url, shutdown_wait_s=30)
    port = (await poold.event("stratum_listening"))["port"]
    api = (await poold.event("api_listening"))["port"]
    assert "cannot connect to the ledger" in (await poold.event("ledger_unavailable"))["error"]
    stats = await run_fleet(f"stratum+tcp://127.0.0.1:{port}", miners=2, duration_s=1.5)
    assert stats.accepted > 0  # miners are served while the ledger is away
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{api}/readyz") as resp,
    ):
        body = await resp.json()
    assert resp.status == 503 and "not connected" in body["problems"]["ledger"]
    proxy.restore()
    await poold.event("ledger_connected")
    assert await poold.stop() == 0
    engine = make_engine(direct)
    assert ledger_totals(engine) == log_totals(tmp_path / "sharelog")
    engine.dispose()


async def test_sigterm_while_the_database_hangs(
    tmp_path: Path, pg_behind_proxy: tuple[CuttableProxy, str, str]
) -> None:
    """The stalled-but-acknowledging database of issue 26 (a SIGSTOPped server, a stuck
    middlebox): the stop shares one `shutdown_wait_s` budget (it took three of them, one per
    step, and longer), and nothing acknowledged is lost: the next ingest has it all."""
    proxy, url, direct = pg_behind_proxy
    wait_s = 8
    poold = await start(tmp_path, url, shutdown_wait_s=wait_s, statement_timeout_s=wait_s)
    port = (await poold.event("stratum_listening"))["port"]
    await poold.event("ledger_connected")
    stats = FleetStats()
    await run_fleet(
        f"stratum+tcp://127.0.0.1:{port}",
        miners=2,
        duration_s=1.0,
        record_keys=True,
        stats=stats,
    )
    proxy.stall()  # the server stops answering; every connection stays open
    await asyncio.sleep(1.5)  # ledger passes are now stuck inside database calls
    began = time.monotonic()
    code = await asyncio.wait_for(poold.stop(), PATIENCE_S)
    took = time.monotonic() - began
    assert code == 0, poold.events[-5:]
    # One budget, not one per step (bench/failover_bench.py measures it: wait_s + ~0.2 s).
    assert took < 2 * wait_s, f"SIGTERM took {took:.1f} s with shutdown_wait_s = {wait_s}"
    logged = {
        (r["job"], r["en1"], r["en2"], r["ntime"], r["nonce"])
        for _pos, r in read_log(tmp_path / "sharelog")
        if r["t"] == "share"
    }
    assert stats.accepted_keys and set(stats.accepted_keys) <= logged
    proxy.cut()  # the stalled sessions end (their transactions roll back, nothing half-kept)
    engine = make_engine(direct)
    try:
        ingest(engine, tmp_path / "sharelog", 0)
        assert ledger_totals(engine) == log_totals(tmp_path / "sharelog")
    finally:
        engine.dispose()
