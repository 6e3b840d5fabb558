"""The proof of delivered hashrate through the whole daemon on the simnet: a simulated fleet
mines one token period; the daemon writes the period's leaf file, settles the period with
the work root in its published inputs (its work equal to the statement's delivered TH·s),
anchors the commitment, and once the beacon block after the anchor is mined publishes the
sample on the public route; `verify.py` says ok; the leaf file is released with the cut."""

from __future__ import annotations

import asyncio
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
import sqlalchemy as sa

from poold.ledger.db import make_engine
from poold.ledger.models import ChainAnchor, StatementRoot, TokenPeriod, WorkRoot
from poold.shares.log import read_log
from poold.tokens.settle import set_price
from poold.tokens.transfers import import_transfers, parse_records
from tests.helpers import PATIENCE_S, FakeClock, wait_for
from tests.verifier import check, mine

pytestmark = pytest.mark.slow

TOKENS = {
    "enabled": True,
    "th_per_token": "1/1000000000",
    "fleet_accounts": ["fleet"],
    "period_s": 120,
    "settle_delay_s": 2,
    "work_proof_k": 12,
    "beacon_depth": 2,
}
#: One share difficulty, no vardiff: the test's clock is fake and jumps, so vardiff would
#: read the fleet's real-time shares as a flood and raise the difficulty until shares come
#: rarely (on a busy machine, too rarely for the test). 2^-24: about 256 hashes a share, one
#: share in 256 a block of the simnet's 2^-16.
PINNED = {k: "1/16777216" for k in ("start_difficulty", "min_difficulty", "max_difficulty")}


async def test_work_proof_through_the_daemon(
    start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    cfg = config_factory(
        stratum=PINNED,
        pool={"scheme": "fpps", "fpps_period_s": 5},  # no block to wait to mature
        ledger={
            "url": f"sqlite:///{tmp_path / 'l.db'}",
            "ingest_interval_s": 0.3,
            "ingest_open_minutes": True,
            "auto_migrate": True,
        },
        tokens=TOKENS,
        anchors={"enabled": True, "interval_s": 60},
        api={"listen": "127.0.0.1:0"},
        bitcoind={"simnet_difficulty": "1/65536"},  # the fleet finds few blocks: we mine
    )
    start = 1_800_000_000 // 60 * 60
    end = start + int(TOKENS["period_s"])
    clock = FakeClock(start)
    rd = await start_daemon(cfg, clock=clock)
    d = rd.daemon
    engine = d.ledger
    import_transfers(
        engine, parse_records([{"id": "m", "ts": start, "to": "alice", "amount": "5000000000"}])
    )
    set_price(engine, start, Fraction(65000), cfg.tokens)
    net = d.bitcoind
    await mine(net)  # a block before the period: the first tip its shares build on
    host, port = rd.address
    fleet = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "poold", "simulate", "--url", f"stratum+tcp://{host}:{port}",
        "--miners", "2", "--duration", str(PATIENCE_S), "--account", "fleet",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    metrics = d.metrics
    for second in range(start + 1, end + cfg.tokens.settle_delay_s + 2):
        seen = metrics.shares_accepted
        await wait_for(lambda seen=seen: metrics.shares_accepted > seen, "a share this second")
        if second == start + 30:
            await mine(net)  # a block in the period: a second tip
        clock.now_s = second
    fleet.terminate()
    await fleet.wait()
    await wait_for(lambda: d.token_periods, "the daemon to settle the period")
    check_engine = make_engine(cfg.ledger.url)
    with check_engine.connect() as conn:
        inputs = json.loads(conn.execute(sa.select(StatementRoot.inputs)).scalar_one())
        delivered = Fraction(conn.execute(sa.select(TokenPeriod.delivered_th_per_s)).scalar_one())
    # The root's work is the fleet's work of the period straight from the share log.
    work = sum(
        int(r["diff_num"]) * 2**32 // int(r["diff_den"])
        for _p, r in read_log(cfg.sharelog.path)
        if r["t"] == "share" and r["account"] == "fleet" and start <= int(r["ts"]) // 1000 < end
    )
    assert work > 0 and inputs["work"] == work
    assert delivered * (end - start) == Fraction(work, 10**12)
    leaf_file = cfg.sharelog.path / "work" / f"leaves-{start}.bin"
    assert leaf_file.exists() and d.leaves is not None and start in d.leaves.held

    await publish(check_engine, net, clock, start)
    ahost, aport = d.api_addresses[0]
    url = f"http://{ahost}:{aport}/api/v1/tokens/periods/{start}/work-proof"
    raw = await asyncio.to_thread(lambda: urlopen(url, timeout=PATIENCE_S).read())
    doc = json.loads(raw)
    workers = {str(r["worker"]) for _p, r in read_log(cfg.sharelog.path) if r["t"] == "share"}
    text = raw.decode()
    assert workers and not any(f'"{w}"' in text for w in workers | {"fleet"})  # tags, no names
    lines = check(doc, now=end).lines
    assert lines[0].startswith("ok: 12/12 valid: with 99 % confidence at least")
    assert lines[1] == "delivered: the statement's delivered TH·s equals the root's work exactly"
    assert "re-rolled for free" in lines[2]  # the simnet's blocks cost nothing
    # The holder's statement: flagged (the tokens promise far more than the fleet delivered),
    # pointing at the work proof; the CSV says the same.
    from poold.api.auth import create_token

    admin = create_token(engine, "admin")
    base = f"http://{ahost}:{aport}/api/v1/holders/alice/statements"

    def get(url: str) -> bytes:
        from urllib.request import Request

        req = Request(url, headers={"Authorization": f"Bearer {admin}"})
        with urlopen(req, timeout=PATIENCE_S) as r:
            return bytes(r.read())

    [statement] = json.loads(await asyncio.to_thread(get, base))["items"]
    assert statement["delivery_flagged"] is True and statement["make_good_sat"] == 0
    assert statement["work_proof"] == f"/api/v1/tokens/periods/{start}/work-proof"
    import csv

    text = (await asyncio.to_thread(get, base + ".csv")).decode()
    [row] = list(csv.DictReader(text.splitlines()))
    assert row["delivery_flagged"] == "yes" and row["work_proof"] == statement["work_proof"]
    # The dashboard: the holder's statement row checks its statement proof and its work proof
    # in the browser (the work proof's verdict is verify.py's), and the row's detail says both.
    seen = await asyncio.to_thread(_in_the_page, f"http://{ahost}:{aport}", admin)
    assert seen["statement"].startswith("verified: the statement of"), seen
    assert seen["work"].splitlines()[:3] == lines[:3], seen
    assert "work proof\na published sample of the period's shares" in seen["detail"], seen
    assert "delivery under the threshold\nyes" in seen["detail"], seen
    await wait_for(lambda: not leaf_file.exists(), "the cut to release the leaf file")
    assert start not in d.leaves.held
    await rd.shutdown()
    check_engine.dispose()


async def publish(engine: sa.Engine, net: Any, clock: FakeClock, start: int) -> dict[str, Any]:
    """Move the clock and the chain as the leader gets on, until the period's work proof is
    published (returned). The clock moves on only until an anchor transaction carries the
    period's commitment, and never as far as the next period's settlement (whose head would
    take this one's place); then blocks are mined: the anchor's and the beacon's. Each step
    waits for the daemon's last one: a busy machine is slow, never wrong."""
    last = start + 2 * int(TOKENS["period_s"])  # the next period settles after this
    state: dict[str, Any] = {"mined": 0}

    async def step() -> bool:
        with engine.connect() as conn:
            proof = conn.execute(
                sa.select(WorkRoot.proof).where(WorkRoot.period_start == start)
            ).scalar_one()
            if proof is not None:
                state["proof"] = json.loads(proof)
                return True
            commitment = conn.execute(
                sa.select(StatementRoot.commitment).where(StatementRoot.period_start == start)
            ).scalar_one()
            anchors = conn.execute(
                sa.select(ChainAnchor.status).where(ChainAnchor.statement == commitment)
            ).all()
        if anchors and state["mined"] < 1 + int(TOKENS["beacon_depth"]):
            await mine(net)  # the anchor transaction's block, then the beacon's
            state["mined"] += 1
        elif not anchors and clock.now_s + 5 < last:
            clock.advance(5)  # the anchor transaction is due a while after the head is new
        return False

    await wait_for(step, "the work proof to be published", every_s=0.3)
    return dict(state["proof"])


def _in_the_page(base: str, token: str) -> dict[str, str]:
    """Look alice up in headless Chromium, press her row's "verify" then "work" buttons and
    open the row's detail; the verdicts and the detail as the page shows them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.api.test_dashboard import DESKTOP, browser

    web = browser(DESKTOP)
    try:
        web.get(base + "/")
        wait = WebDriverWait(web, PATIENCE_S)
        wait.until(lambda w: w.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        web.find_element(By.ID, "holder-name").send_keys("alice")
        web.find_element(By.ID, "holder-token").send_keys(token)
        web.find_element(By.CSS_SELECTOR, "#holder-form button").click()
        row = "#holder-table tbody tr"
        wait.until(lambda w: w.find_elements(By.CSS_SELECTOR, f"{row} button.work"))
        seen = {}
        for button, key in (("button.verify:not(.work)", "statement"), ("button.work", "work")):
            web.find_element(By.CSS_SELECTOR, f"{row} {button}").click()
            wait.until(
                lambda w: (
                    w.find_element(By.ID, "holder-verify").get_attribute("class") in ("ok", "error")
                )
            )
            seen[key] = web.find_element(By.ID, "holder-verify").text
            web.execute_script("document.getElementById('holder-verify').className = ''")
        web.find_element(By.CSS_SELECTOR, f"{row} td").click()
        wait.until(lambda w: w.find_element(By.ID, "holder-detail").is_displayed())
        seen["detail"] = web.find_element(By.ID, "holder-detail").text
        return seen
    finally:
        web.quit()
