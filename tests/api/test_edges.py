"""The API at its edges, on both ledgers over a real socket: every error is JSON naming what was
wrong (405 included), a query parameter a route does not take is refused, the pool's cached
views are never served old after an idle spell, a failing refresh is logged, counted and
reported, and the CSV exports hold exact values that reconcile."""

from __future__ import annotations

import asyncio
import csv
import io
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from poold.api.app import ApiContext, make_app
from poold.api.base import CACHE, Cached
from poold.ledger.db import LedgerError
from poold.ledger.ingest import ingest
from poold.metrics import Metrics
from tests.api.test_api import Api, api, check, populate
from tests.helpers import make_config
from tests.ledger.test_settle import T0, mine
from tests.tokens.test_periods import CFG

__all__ = ["api"]


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_every_error_is_json_naming_what_was_wrong(api: Api) -> None:
    async with api.session.post(api.base + "/api/v1/pool") as r:
        assert r.status == 405 and r.content_type == "application/json"
        assert r.headers["Allow"] == "GET"
        assert (await r.json()) == {"error": "POST is not allowed on /api/v1/pool; it takes GET"}
    async with api.session.delete(api.base + "/api/v1/miners/m0/settings") as r:
        body = await r.json()
        assert r.status == 405 and "it takes GET, PUT" in body["error"]
    status, body = await api.get("/api/v1/nothing/here")
    assert status == 404 and body == {"error": "no such endpoint: /api/v1/nothing/here"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # Miningcore's paging: silently ignored, it showed page one as if it were page 3.
        ("/api/v1/pool/blocks?page=3&pageSize=10", "unknown query parameter 'page': this "
         "route takes limit, offset"),
        ("/api/v1/pool?limit=5", "unknown query parameter 'limit': this route takes no query "
         "parameters"),
        ("/api/v1/pool/hashrate?window=1h&windw=7d", "unknown query parameter 'windw'"),
    ],
)  # fmt: skip
async def test_a_query_parameter_the_route_does_not_take_is_refused(
    api: Api, url: str, message: str
) -> None:
    status, body = await api.get(url)
    assert status == 400 and message in body["error"], body
    check(url.split("?")[0], "get", 400, body)


async def test_the_pool_is_not_served_old_after_an_idle_spell(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    """The first /api/v1/pool after minutes without a request showed the snapshot of the
    last request before them (944 shares while the ledger held 1,732)."""
    populate(ledger, tmp_path)
    metrics = Metrics()
    ctx = ApiContext(
        make_config(tmp_path, tokens=CFG.model_dump()), metrics, ledger,
        clock=lambda: T0 / 1000 + 40 * 60, cache_ttl_s=5,
    )  # fmt: skip
    app = make_app(ctx)
    clock = FakeMonotonic()
    app[CACHE] = Cached(ctx.cache_ttl_s, metrics, monotonic=clock)
    async with serve(app) as get:
        first = await get("/api/v1/pool")
        assert first["shares"]["accepted"] == 40
        mine(tmp_path / "log2", 7, {})  # another node's seven shares reach the ledger
        await asyncio.to_thread(ingest, ledger, tmp_path / "log2", 10)
        clock.now += 1  # within the ttl: the same snapshot, as promised
        assert (await get("/api/v1/pool"))["shares"]["accepted"] == 40
        clock.now += 10 * 60  # an idle spell: the first answer after it is fresh
        assert (await get("/api/v1/pool"))["shares"]["accepted"] == 47


async def test_a_failing_refresh_is_logged_counted_and_reported(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    populate(ledger, tmp_path)
    metrics = Metrics()
    ctx = ApiContext(
        make_config(tmp_path, tokens=CFG.model_dump()), metrics, ledger,
        clock=lambda: T0 / 1000 + 40 * 60,
    )  # fmt: skip
    app = make_app(ctx)
    clock = FakeMonotonic()
    app[CACHE] = cache = Cached(5, metrics, monotonic=clock)
    async with serve(app) as get:
        await get("/api/v1/pool")

        async def broken(_fn: Any, *_args: Any) -> Any:
            raise LedgerError("the ledger process is gone")

        ctx.offload = broken  # the overview is computed in the (dead) ledger process now
        clock.now += 6  # stale: served, and refreshed in the background, which fails
        await get("/api/v1/pool")
        await cache.refreshed()
        assert metrics.api_cache_failures == 1
        ready = await get("/readyz", status=503)
        assert ready["problems"]["api_cache:pool"] == (
            "refreshing it failed: LedgerError: the ledger process is gone"
        )
        text = await get("/metrics", text=True)
        assert "poold_api_cache_failures_total 1.0" in text
        clock.now += 60  # too old to serve: the caller gets the error, as JSON
        body = await get("/api/v1/pool", status=503)
        assert body == {"error": "the ledger did not answer: the ledger process is gone"}
        ctx.offload = None  # the ledger is back: the next refresh clears the problem
        await get("/api/v1/pool")
        assert "api_cache:pool" not in (await get("/readyz"))["problems"]


class serve:
    """An app on 127.0.0.1, port 0; `get(path)` answers the JSON (or text) of a GET."""

    def __init__(self, app: web.Application) -> None:
        self.runner = web.AppRunner(app)

    async def __aenter__(self) -> Any:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.session = aiohttp.ClientSession()

        async def get(path: str, *, status: int = 200, text: bool = False) -> Any:
            async with self.session.get(f"http://{host}:{port}{path}") as r:
                body = await (r.text() if text else r.json())
                assert r.status == status, body
                return body

        return get

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.runner.cleanup()


async def test_a_bug_is_a_json_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from poold.ledger import queries

    def bug(*_args: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(queries, "blocks", bug)
    status, body = await api.get("/api/v1/pool/blocks")
    assert status == 500 and body == {
        "error": "internal error: the server could not answer (it is logged)"
    }


async def test_the_miner_csv_reconciles_every_line(api: Api) -> None:
    """A miner can follow its balance line by line: every credit and debit, oldest first,
    with what the pool owes after each; the last equals immature + spendable."""
    status, text = await api.get("/api/v1/miners/m0/credits.csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    _, m0 = await api.get("/api/v1/miners/m0")
    _, listed = await api.get("/api/v1/miners/m0/credits?limit=50")
    assert [int(r["entry"]) for r in rows] == sorted(c["entry"] for c in listed["items"])
    owed = 0
    for r in rows:
        owed += 0 if r["balance"] == "voided" else int(r["amount_sat"])
        assert int(r["owed_after_sat"]) == owed
        assert Fraction(r["amount_btc"]) == Fraction(int(r["amount_sat"]), 10**8)
        assert r["time_display"].endswith(" UTC")
    assert owed == m0["balance_sat"]["immature"] + m0["balance_sat"]["spendable"]
    assert (await api.get("/api/v1/miners/nobody/credits.csv"))[0] == 404


async def test_the_statement_csv_is_exact(api: Api) -> None:
    """The CSV's value columns are exact (they held "2.00 kH/s", "100.00 %", "0.000"); what
    the page shows is in the *_display columns beside them."""
    _, text = await api.get("/api/v1/holders/alice/statements.csv", "alice")
    [row] = list(csv.DictReader(io.StringIO(text)))
    _, listed = await api.get("/api/v1/holders/alice/statements", "alice")
    [day] = listed["items"]
    for column, exact in (
        ("nominal_th_per_s", day["hashrate"]["nominal_th_per_s"]["exact"]),
        ("delivered_th_per_s", day["hashrate"]["delivered_th_per_s"]["exact"]),
        ("delivery_ratio", day["hashrate"]["delivery_ratio"]["exact"]),
        ("electricity_kwh", day["electricity_kwh"]["exact"]),
        ("usd_per_kwh", day["rates"]["usd_per_kwh"]["exact"]),
    ):
        assert row[column] == exact and Fraction(exact) > 0
    assert Fraction(row["nominal_th_per_s"]) == Fraction(day["ths_nominal"])
    assert row["nominal_display"].endswith("H/s") and row["delivery_display"].endswith("%")
    assert int(row["net_sat"]) == day["net_sat"] and row["period_display"] == "2027-01-15"


async def test_a_worker_quiet_for_an_hour_has_zero_in_the_windows_it_missed(
    api: Api, ledger: sa.Engine, tmp_path: Path
) -> None:
    """A worker with shares only more than an hour ago has no 10-minute or 1-hour rate in the
    ledger's sums: it shows 0 there, as the document promises (the rates object missed those
    keys before)."""
    from tests.ledger.slices.test_effort import write_log

    # Worker m0.rig11 (node 11): three shares 80 minutes before the API's clock.
    write_log(tmp_path / "old", 11, [T0 - 80 * 60_000 + k * 1000 for k in range(3)], {})
    await asyncio.to_thread(ingest, ledger, tmp_path / "old", 11)
    status, body = await api.get("/api/v1/miners/m0")
    assert status == 200, body
    check("/api/v1/miners/{account}", "get", 200, body)
    assert body["workers"]["m0.rig11"]["10m"] == 0 and body["workers"]["m0.rig11"]["24h"] > 0
    status, listed = await api.get("/api/v1/miners/m0/workers")
    assert status == 200, listed
    check("/api/v1/miners/{account}/workers", "get", 200, listed)
