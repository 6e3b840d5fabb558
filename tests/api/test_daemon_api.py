"""The daemon serves the API beside Stratum: what miners do shows up over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from poold.api.app import ApiContext, make_app
from poold.metrics import Metrics
from simulation.fleet import run_fleet
from tests.helpers import PATIENCE_S, make_config, wait_for


async def test_the_daemon_serves_what_its_miners_do(
    start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    cfg = config_factory(
        ledger={
            "url": f"sqlite:///{tmp_path / 'l.db'}",
            "ingest_interval_s": 0.2,
            "ingest_open_minutes": True,
            "auto_migrate": True,
        },
        api={"listen": "127.0.0.1:0"},
    )
    rd = await start_daemon(cfg)
    host, port = rd.address
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        account="acme",
        record_keys=True,
        # Both workers have a share in (on a busy machine one miner can reach 20 alone).
        until=lambda s: s.accepted >= 20 and len({k[1] for k in s.accepted_keys}) == 2,
    )
    d = rd.daemon
    await wait_for(lambda: d.ingested_shares == d.metrics.shares_accepted, "ingest")
    (ahost, aport) = rd.daemon.api_addresses[0]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://{ahost}:{aport}/readyz") as r:
            assert r.status == 200, await r.text()
        async with s.get(f"http://{ahost}:{aport}/api/v1/pool") as r:
            pool = await r.json()
        async with s.get(f"http://{ahost}:{aport}/api/v1/miners/acme") as r:
            acme = await r.json()
        async with s.get(f"http://{ahost}:{aport}/metrics") as r:
            metrics = await r.text()
    assert pool["shares"]["accepted"] == rd.daemon.metrics.shares_accepted > 0
    assert pool["workers_online"] == 2 and pool["miners_online"] == 1
    assert acme["shares_accepted"] > 0 and set(acme["workers"]) == {"acme.rig0", "acme.rig1"}
    assert f'result="accepted"}} {rd.daemon.metrics.shares_accepted}' in metrics
    await rd.shutdown()


async def test_readyz_names_what_is_wrong(tmp_path: Path) -> None:
    from aiohttp import web

    ctx = ApiContext(make_config(tmp_path), Metrics(), None, lambda: {"node": "no answer"})
    runner = web.AppRunner(make_app(ctx))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://{host}:{port}/readyz") as r:
            assert r.status == 503
            assert await r.json() == {"ready": False, "problems": {"node": "no answer"}}
            async with s.get(f"http://{host}:{port}/api/v1/pool") as r2:
                assert r2.status == 503 and "ledger is not enabled" in (await r2.json())["error"]
    finally:
        await runner.cleanup()
