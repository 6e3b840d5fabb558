"""The HTTP API over a real ledger (SQLite and PostgreSQL) on a real socket: every route is in
the OpenAPI document and every response matches it; tokens, pagination, errors, CSV, admin."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import sqlalchemy as sa
from aiohttp import web

from poold.api.app import ApiContext, make_app
from poold.api.auth import create_token
from poold.api.openapi import document
from poold.config import TokensConfig
from poold.ledger import nodes
from poold.ledger.ingest import ingest
from poold.ledger.maturity import _apply, _pending
from poold.ledger.settle import settle_pending
from poold.metrics import Metrics
from poold.shares.format import Rejects, WorkerInfo
from poold.shares.log import ShareLog
from poold.tokens.settle import set_price, settle_period
from poold.tokens.transfers import import_transfers, parse_records
from tests.helpers import make_config, regtest_address
from tests.ledger.test_settle import T0, mine
from tests.tokens.test_periods import CFG, END, PRICE, START
from tests.verifier import UNANCHORED
from tests.verifier import check as verify_proof

DOC = document()
BEST_HASH = 0xFFFF * 2**190  # a share of difficulty 2**18


def check(path: str, method: str, status: int, body: Any) -> None:
    """The response matches what the OpenAPI document promises for it."""
    op = DOC["paths"][path][method]
    response = op["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(
        body, {**schema, "components": DOC["components"]}, cls=jsonschema.Draft202012Validator
    )


class Api:
    def __init__(
        self,
        base: str,
        session: aiohttp.ClientSession,
        tokens: dict[str, str],
        ctx: ApiContext | None = None,
    ) -> None:
        self.base, self.session, self.tokens, self.ctx = base, session, tokens, ctx

    async def get(self, url: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens.get(token, token)}"} if token else {}
        async with self.session.get(self.base + url, headers=headers) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.text()

    async def post(self, url: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        async with self.session.post(self.base + url, json=body, headers=headers) as r:
            return r.status, await r.json()


def populate(ledger: sa.Engine, tmp_path: Path) -> dict[str, str]:
    """Shares, two settled blocks (both matured), two holders with a settled day; tokens."""
    mine(tmp_path / "log", 40, {30: True, 39: True})
    log = ShareLog(tmp_path / "log")
    log.open()  # what the node rejected, as its writer records it once a minute
    log.append(Rejects(T0 + 40 * 60_000, 9, {"m0": {"low_difficulty": 1}}).to_json())
    for ts, agent, best in (
        (T0, "cgminer/4.12", BEST_HASH * 4),
        (T0 + 1, "bosminer/23", BEST_HASH),
    ):
        log.append(WorkerInfo(ts, 9, "m0", "rig", agent, f"{best:064x}").to_json())
    log.close()
    ingest(ledger, tmp_path / "log", 9)  # node 9: another daemon's share log
    # Node 9 registered 5 s before the API's clock; its log has no heartbeat yet.
    nodes.register(ledger, 9, "log-9", "host-b:42", now_ms=T0 + 40 * 60_000 - 5000, lease_ms=30_000)
    settle_pending(ledger, pool_fee=Fraction(1, 100))
    for block_hash, entry in _pending(ledger)[:1]:
        _apply(ledger, block_hash, entry, 100)  # one block matures, one stays immature
    import_transfers(
        ledger,
        parse_records(
            [
                {"id": "mint:a", "ts": START - 10, "to": "alice", "amount": "600"},
                {"id": "mint:b", "ts": START + 3600, "to": "bob", "amount": "400"},
            ]
        ),
    )
    set_price(ledger, START, PRICE, CFG)
    for block_hash, entry in _pending(ledger):
        _apply(ledger, block_hash, entry, 100)
    assert settle_period(ledger, CFG, START, now=END + 400).settled is not None
    return {
        "admin": create_token(ledger, "admin"),
        "alice": create_token(ledger, "holder:alice"),
        "bob": create_token(ledger, "holder:bob"),
        "m0": create_token(ledger, "miner:m0"),
    }


@pytest.fixture
async def api(ledger: sa.Engine, tmp_path: Path) -> AsyncIterator[Api]:
    tokens = populate(ledger, tmp_path)
    # The pool fee the blocks above were settled with.
    pool = {"network": "regtest", "payout_address": regtest_address(), "fee": "0.01"}
    cfg = make_config(tmp_path, tokens=CFG.model_dump(), api={"max_page": 50}, pool=pool)
    metrics = Metrics()
    ctx = ApiContext(cfg, metrics, ledger, clock=lambda: T0 / 1000 + 40 * 60)
    runner = web.AppRunner(make_app(ctx))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://{host}:{port}", session, tokens, ctx)
    await runner.cleanup()


def test_every_route_is_documented_and_every_path_routed() -> None:
    cfg = make_config(Path("/tmp"), tokens=TokensConfig().model_dump())
    app = make_app(ApiContext(cfg, Metrics(), None))
    routed = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/v1/")
        and r.method != "HEAD"
    }
    documented = {(p, m) for p, ops in DOC["paths"].items() for m in ops}
    assert routed - {("/api/v1/openapi.json", "get")} == documented


async def test_reads_match_the_document(api: Api) -> None:
    status, pool = await api.get("/api/v1/pool")
    assert status == 200
    check("/api/v1/pool", "get", 200, pool)
    assert pool["blocks"] == {"confirmed": 2} and pool["scheme"] == "pplns"
    # The last block was found in the last minute of shares: the round starts again from 0
    # (the block's minute is its own round's), and the regtest-difficulty window is filled.
    assert pool["round_effort"]["exact"] == "0" and pool["pplns_window_fill"]["exact"] == "1"

    status, listed = await api.get("/api/v1/pool/nodes")
    check("/api/v1/pool/nodes", "get", 200, listed)
    [node9] = listed["nodes"]
    assert (node9["node_id"], node9["status"], node9["host"]) == (9, "live", "host-b:42")
    assert listed["settle_through_ms"] == node9["ingested_through_ms"] == 0  # no heartbeat yet

    status, blocks = await api.get("/api/v1/pool/blocks?limit=1")
    check("/api/v1/pool/blocks", "get", 200, blocks)
    assert [b["height"] for b in blocks["items"]] == [139]
    _, older = await api.get("/api/v1/pool/blocks?limit=1&offset=1")
    assert [b["height"] for b in older["items"]] == [130]

    status, m0 = await api.get("/api/v1/miners/m0")
    check("/api/v1/miners/{account}", "get", 200, m0)
    assert m0["shares_accepted"] == 10 and m0["balance_sat"]["spendable"] >= 0
    assert m0["shares_rejected"] == {"low_difficulty": 1}
    status, credits = await api.get("/api/v1/miners/m0/credits?limit=3")
    check("/api/v1/miners/{account}/credits", "get", 200, credits)
    assert len(credits["items"]) == 3
    status, payouts = await api.get("/api/v1/miners/m0/payouts")
    check("/api/v1/miners/{account}/payouts", "get", 200, payouts)

    status, alice = await api.get("/api/v1/holders/alice", "alice")
    assert status == 200
    check("/api/v1/holders/{holder}", "get", 200, alice)
    assert alice["tokens"] == "600" and alice["balance_sat"] == alice["totals"]["paid_sat"]
    status, statements = await api.get("/api/v1/holders/alice/statements", "alice")
    check("/api/v1/holders/{holder}/statements", "get", 200, statements)
    [day] = statements["items"]
    assert day["period_start"] == START and day["btc_usd"] == str(PRICE)
    # Everything behind the line, exact beside rounded (issue 14's holder view).
    assert day["period"]["start"].startswith("2027-01-15T00:00:00")
    assert day["btc_usd_decimal"] == {"exact": "65432.1", "display": "$65,432.10"}
    assert day["btc"]["paid_btc"] == f"0.{day['paid_sat']:08d}"
    assert set(day["rates"]) == {"w_per_th", "usd_per_kwh", "discount", "service_usd_per_th_day"}
    assert day["rates"]["w_per_th"]["exact"] == "21.5"
    assert day["hashrate"]["delivered_th_per_s"]["display"].endswith("H/s")
    assert day["electricity_kwh"] is not None
    assert day["period_pot_sat"] >= day["gross_sat"] and len(day["blocks"]) == 2

    status, moves = await api.get("/api/v1/holders/bob/transfers", "bob")
    check("/api/v1/holders/{holder}/transfers", "get", 200, moves)
    assert [(m["id"], m["balance_after"]) for m in moves["items"]] == [("mint:b", "400")]

    # The verifiable statement: alice's proof passes the standalone verifier; the chain is
    # public and names the same commitment.
    status, proof = await api.get(f"/api/v1/holders/alice/proofs/{START}", "alice")
    check("/api/v1/holders/{holder}/proofs/{period_start}", "get", 200, proof)
    verify_proof(proof, **UNANCHORED)
    assert proof["line"]["paid_sat"] == day["paid_sat"]
    status, chain = await api.get("/api/v1/statements/roots")
    check("/api/v1/statements/roots", "get", 200, chain)
    assert [r["commitment"] for r in chain["items"]] == [proof["period"]["commitment"]]
    assert (await api.get(f"/api/v1/holders/alice/proofs/{START}", "bob"))[0] == 403
    assert (await api.get(f"/api/v1/holders/alice/proofs/{START + 1}", "alice"))[0] == 404
    assert (await api.get("/api/v1/holders/alice/proofs/x", "alice"))[0] == 400

    status, text = await api.get("/api/v1/holders/alice/statements.csv", "admin")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1 and int(rows[0]["paid_sat"]) == day["paid_sat"]
    assert rows[0]["period_display"] == "2027-01-15"


async def test_tokens_scope_what_can_be_read(api: Api) -> None:
    assert (await api.get("/api/v1/holders/alice/statements"))[0] == 401
    status, body = await api.get("/api/v1/holders/alice/statements", "pk_not-a-real-token")
    assert status == 401 and body == {"error": "unknown token"}
    status, body = await api.get("/api/v1/holders/alice/statements", "bob")
    assert status == 403 and "does not give access" in body["error"]
    check("/api/v1/holders/{holder}/statements", "get", 403, body)
    assert (await api.get("/api/v1/holders/alice/statements", "admin"))[0] == 200
    assert (await api.post("/api/v1/admin/prices", {}, "alice"))[0] == 403


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: must be between 1 and 50, got 0"),
        ("limit=51", "limit: must be between 1 and 50, got 51"),
        ("limit=ten", "limit: expected an integer, got 'ten'"),
        ("offset=-1", "offset: must be between 0"),
    ],
)
async def test_malformed_pages_are_400(api: Api, query: str, message: str) -> None:
    status, body = await api.get(f"/api/v1/pool/blocks?{query}")
    assert status == 400 and message in body["error"]
    check("/api/v1/pool/blocks", "get", 400, body)


async def test_unknown_things_are_404(api: Api) -> None:
    status, body = await api.get("/api/v1/miners/nobody")
    assert status == 404 and body == {"error": "no account 'nobody' in the ledger"}
    status, body = await api.get("/api/v1/holders/zed", "admin")
    assert status == 404 and body == {"error": "no token holder 'zed'"}
    status, body = await api.get("/api/v1/nothing/here")
    assert status == 404 and "error" in body


async def test_admin_imports_and_prices(api: Api) -> None:
    later = START + 2 * 86400
    transfer = {"id": "t:9", "ts": later, "from": "alice", "to": "carol", "amount": "1.5"}
    status, body = await api.post("/api/v1/admin/transfers", [transfer], "admin")
    assert (status, body) == (200, {"added": 1, "unchanged": 0})
    check("/api/v1/admin/transfers", "post", 200, body)
    status, body = await api.post("/api/v1/admin/transfers", [{**transfer, "amount": "2"}], "admin")
    assert status == 400 and "already imported with different content" in body["error"]
    status, body = await api.post(
        "/api/v1/admin/prices", {"period_start": later - later % 86400, "btc_usd": "70000"}, "admin"
    )
    assert status == 200
    check("/api/v1/admin/prices", "post", 200, body)
    status, body = await api.post(
        "/api/v1/admin/prices", {"period_start": START, "btc_usd": 1.5}, "admin"
    )
    assert status == 400 and "not a float" in body["error"]
    status, body = await api.post(
        "/api/v1/admin/prices", {"period_start": START, "btc_usd": "1"}, "admin"
    )
    assert status == 400 and "already settled" in body["error"]


async def test_operations_endpoints(api: Api) -> None:
    assert await api.get("/healthz") == (200, {"status": "ok"})
    status, body = await api.get("/readyz")
    assert (status, body) == (200, {"ready": True, "problems": {}})
    await api.get("/api/v1/pool")  # fills the cached overview /metrics reads
    status, text = await api.get("/metrics")
    assert status == 200 and 'poold_shares_total{reason="",result="accepted"}' in text
    assert 'poold_hashrate_hs{window="10m"}' in text and "poold_ingest_lag_shares 0" in text
    # Every family has HELP and TYPE, and the text parses as Prometheus exposition.
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("poold_reply_latency_seconds", "poold_ingest_lag_seconds"):
        assert families[name].type == "histogram"
    assert families["poold_shares"].type == "counter" and families["poold_leader"].type == "gauge"
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample = line.split("{")[0].split(" ")[0]
            names = {sample} | {sample.removesuffix(x) for x in ("_bucket", "_count", "_sum")}
            assert any(f"# HELP {n} " in text and f"# TYPE {n} " in text for n in names), line
    status, doc = await api.get("/api/v1/openapi.json")
    assert status == 200 and doc == DOC


async def test_the_routes_miningcore_users_expect(api: Api, ledger: sa.Engine) -> None:
    """Per-worker history, a miner's daily earnings, payout settings through the API (its
    miner token), network stats; each response checked against the document."""
    status, series = await api.get("/api/v1/miners/m0/workers/rig/hashrate?window=7d")
    check("/api/v1/miners/{account}/workers/{worker}/hashrate", "get", 200, series)
    assert status == 200 and series["window"] == "7d"
    assert (await api.get("/api/v1/miners/m0/workers/nope/hashrate"))[0] == 404

    status, daily = await api.get("/api/v1/miners/m0/earnings/daily")
    check("/api/v1/miners/{account}/earnings/daily", "get", 200, daily)
    _, credits = await api.get("/api/v1/miners/m0/credits?limit=50")
    assert sum(d["credited_sat"] for d in daily["items"]) == sum(
        c["amount_sat"]
        for c in credits["items"]
        if c["amount_sat"] > 0 and c["balance"] != "voided"
    )
    assert daily["items"] and daily["items"][0]["day"].count("-") == 2

    url = "/api/v1/miners/m0/settings"
    assert (await api.get(url))[0] == 401
    assert (await api.get(url, "alice"))[0] == 403  # a holder's token is not m0's
    status, settings = await api.get(url, "m0")
    check(url.replace("m0", "{account}"), "get", 200, settings)
    assert settings["address"] is None and settings["effective_min_payout_sat"] == 100_000

    address = regtest_address(b"m0's wallet")
    async with api.session.put(
        api.base + url,
        json={"address": address, "min_payout_sat": 5000},
        headers={"Authorization": f"Bearer {api.tokens['m0']}"},
    ) as r:
        assert r.status == 200
        changed = await r.json()
    check(url.replace("m0", "{account}"), "put", 200, changed)
    assert (changed["address"], changed["min_payout_sat"]) == (address, 5000)
    for bad, message in (
        ({"address": "bc1qnope"}, "address 'bc1qnope'"),
        ({"min_payout_sat": 0}, "min_payout_sat: Input should be greater than or equal to 1"),
        ({"min_payout_sat": "5"}, "min_payout_sat: Input should be a valid integer"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({}, "neither was given"),
    ):
        async with api.session.put(
            api.base + url, json=bad, headers={"Authorization": f"Bearer {api.tokens['m0']}"}
        ) as r:
            body = await r.json()
            assert r.status == 400 and message in body["error"], body
            check(url.replace("m0", "{account}"), "put", 400, body)

    assert (await api.get("/api/v1/network"))[0] == 503  # no job: no daemon here
    from poold.api.views import network
    from poold.bitcoind.simnet import SimNet
    from poold.jobs.manager import CoinbaseSpec, JobManager
    from poold.jobs.template import parse_template

    # The demo's chain: difficulty 1/512, six transactions in each template.
    net_ = SimNet(difficulty=Fraction(1, 512), tx_count=6, clock=lambda: 1_800_000_000)
    job = JobManager(CoinbaseSpec(b"\x51", b"/t/", 4, 4)).new_job(
        parse_template(net_.template()), 1_800_000_000
    )
    api.ctx.network = lambda: network(job)
    status, net = await api.get("/api/v1/network")
    check("/api/v1/network", "get", 200, net)
    assert net["height"] == 1 and net["display"]["block_value"] == "50.00003021 BTC"
    # Exactly value x 1e12 x 86400 / (difficulty x 2**32), and shown as a number one can
    # read (the float once printed 51498449392318726144.000, wrong past its 8th digit).
    value = net["coinbase_value_sat"]
    hashprice = Fraction(value * 10**12 * 86_400 * 512, 2**32)
    assert Fraction(Decimal(net["hashprice_sat_per_th_day"]["exact"])) == hashprice
    assert net["hashprice_sat_per_th_day"]["display"] == "≈ 51,498,444.20 sat/(H/s)/day"


async def test_a_new_period_shows_up_at_once(api: Api, ledger: sa.Engine) -> None:
    _, before = await api.get("/api/v1/holders/alice/statements", "alice")
    assert len(before["items"]) == 1
    set_price(ledger, START + 86400, PRICE, CFG)
    assert settle_period(ledger, CFG, START + 86400, now=END + 86400 + 400).settled is not None
    _, after = await api.get("/api/v1/holders/alice/statements", "alice")
    assert [s["period_start"] for s in after["items"]] == [START + 86400, START]


async def test_holders_are_paid_through_the_wallet(api: Api, ledger: sa.Engine) -> None:
    from poold.chain.address import Network
    from poold.ledger.payouts import run_payouts, set_account
    from poold.ledger.settle import verify
    from tests.ledger.test_journal_properties import MemoryWallet

    _, alice = await api.get("/api/v1/holders/alice", "alice")
    owed = alice["balance_sat"]
    assert owed > 0
    address = regtest_address(b"alice's wallet")
    set_account(ledger, "holder:alice", address=address, min_payout_sat=1)
    wallet = MemoryWallet()
    report = await run_payouts(
        ledger, wallet, network=Network.REGTEST, min_payout_sat=1, max_outputs=10, send=True
    )
    # bob has no address (his name is not one): skipped, saying why; so are miners m0..m3
    paid = [(p.account, p.amount_sat) for b in report.batches for p in b]
    assert paid == [("holder:alice", owed)]
    _, runs = await api.get("/api/v1/pool/payments")  # public: txid, total, outputs
    check("/api/v1/pool/payments", "get", 200, runs)
    assert [(r["total_sat"], r["outputs"], r["status"]) for r in runs["items"]] == [
        (owed, 1, "sent")
    ]
    assert "address" not in str(runs)
    assert "no valid regtest payout address" in report.skipped["m2"]
    assert "no valid regtest payout address" in report.skipped["holder:bob"]
    assert wallet.paid() == {address: owed}
    _, payouts = await api.get("/api/v1/holders/alice/payouts", "alice")
    check("/api/v1/holders/{holder}/payouts", "get", 200, payouts)
    assert [(p["amount_sat"], p["address"]) for p in payouts["items"]] == [(owed, address)]
    _, after = await api.get("/api/v1/holders/alice", "alice")
    assert after["balance_sat"] == 0
    assert verify(ledger) == []


async def test_workers_block_effort_miner_proofs_and_the_credit_chain(api: Api) -> None:
    status, listed = await api.get("/api/v1/miners/m0/workers")
    check("/api/v1/miners/{account}/workers", "get", 200, listed)
    [rig] = listed["items"]
    assert (rig["worker"], rig["user_agent"]) == ("rig", "bosminer/23")  # the newest agent
    # The best of the two records, by its hash; the 70-digit exact quotient is not shown.
    assert rig["best_share"] == {
        "hash": f"{BEST_HASH:064x}",
        "difficulty": str(2**18),
        "display": "≈ 262.14 k",
    }
    assert rig["last_seen_ms"] == T0 + 36 * 60_000  # m0's newest share (every 4th minute)

    status, pool = await api.get("/api/v1/pool")
    assert pool["shares"] == {"accepted": 40, "rejected": {"low_difficulty": 1}}  # the ledger's

    _, blocks = await api.get("/api/v1/pool/blocks")
    efforts = [Fraction(b["effort"]["exact"]) for b in blocks["items"]]
    assert len(efforts) == 2 and all(e > 0 for e in efforts)

    _, credits = await api.get("/api/v1/miners/m0/credits?limit=50")
    refs = {c["reference"] for c in credits["items"] if c["reason"] == "pplns_block"}
    assert refs
    for ref in refs:
        url = f"/api/v1/miners/m0/proofs/{ref}"
        assert (await api.get(url))[0] == 401
        assert (await api.get(url, "alice"))[0] == 403
        status, proof = await api.get(url, "m0")
        assert status == 200, proof
        check("/api/v1/miners/{account}/proofs/{reference}", "get", 200, proof)
        verify_proof(proof, **UNANCHORED)
        status, body = await api.get(f"/api/v1/miners/m1/proofs/{ref}", "admin")
        assert status in (200, 404)
    status, body = await api.get("/api/v1/miners/m0/proofs/nothex", "m0")
    assert status == 400 and "reference" in body["error"]
    status, body = await api.get("/api/v1/miners/m0/proofs/" + "ab" * 32, "m0")
    assert status == 404
    status, chain = await api.get("/api/v1/credits/roots")
    check("/api/v1/credits/roots", "get", 200, chain)
    assert (
        len(chain["items"]) == 2
        and chain["items"][0]["previous"] == chain["items"][1]["commitment"]
    )
