"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, installed by
scripts/test): served by a running daemon whose miners are mining, its charts drawn from real
data, a holder's statements looked up with their token. The screenshot is kept in artifacts/."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from poold.chain.address import Network
from poold.ledger.db import make_engine, migrate
from poold.ledger.models import ChainAnchor
from poold.ledger.payouts import run_payouts, set_account
from simulation.fleet import run_fleet
from tests.accounting.test_merkle_sum import END
from tests.api.test_api import START, populate
from tests.helpers import PATIENCE_S, regtest_address, wait_for
from tests.ledger.test_journal_properties import MemoryWallet
from tests.verifier import NOW, mine, verifier

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


def anchor_status(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [s for (s,) in conn.execute(sa.select(ChainAnchor.status))]


def forged_proofs() -> list[tuple[str, str, float, list[str]]]:
    """(name, proof text, now, verify.py's verdict lines) for the page to match: a genuine
    anchored proof, one with amounts past 2^53, and every kind of forgery."""
    from tests.accounting.test_merkle_sum import documents, settle
    from tests.test_verify import HOLDERS, _genuine, _move_one_sat, anchored_doc

    genuine = json.loads(_genuine())
    lines, inputs = settle(HOLDERS)
    big_lines, big_inputs = settle(
        {"whale": 10**12, "minnow": 3}, period_earnings_sat=2**60, delivered_th_per_s=10**12
    )
    big = documents(big_lines, big_inputs)["whale"]
    assert big["line"]["atom_seconds"] > 2**53 and big["line"]["paid_sat"] > 2**53
    docs: list[tuple[str, Any, float]] = [
        ("genuine", genuine, NOW),
        ("past 2^53", big, NOW),
        ("a rebuilt tree anchored in a made-up block", asyncio.run(
            anchored_doc(_move_one_sat(lines), inputs, "bob")), NOW),
    ]  # fmt: skip
    plus_one = copy.deepcopy(big)
    plus_one["line"]["paid_sat"] += 1  # lost in a float past 2^53
    docs.append(("+1 past 2^53", plus_one, NOW))

    def edit(name: str, change: Any, now: float = NOW) -> None:
        d = copy.deepcopy(genuine)
        change(d)
        docs.append((name, d, now))

    edit(
        "the anchors pointed at the rebuilt commitments",
        lambda d: d["anchors"][0].update(commitment=d["anchors"][1]["commitment"]),
    )
    edit(
        "a header of another block",
        lambda d: d["anchors"][1].update(
            header=d["anchors"][0]["header"], block=d["anchors"][0]["block"]
        ),
    )
    edit("a wrong branch", lambda d: d["anchors"][1]["branch"].__setitem__(0, "00" * 32))
    edit(
        "a block that does not exist",
        lambda d: d["anchors"][0].update(block="00000000deadbeef" + "00" * 24),
    )
    edit("a truncated chain", lambda d: d["chain"].pop())
    edit("dropped anchors past the grace", lambda d: d.update(anchors=[]), now=END + 10**6)
    edit("a string amount", lambda d: d["line"].update(paid_sat="160689713"))
    edit("a float amount", lambda d: d["line"].update(paid_sat=160689713.9))
    edit("a boolean", lambda d: d["line"].update(debt_in_sat=False))
    edit("a side X", lambda d: d["path"][0].update(side="X"))
    edit("a huge number", lambda d: d["line"].update(gross_sat=10**50))
    edit("a zero price", lambda d: d["period"]["inputs"].update(btc_usd="0"))
    edit("a zero denominator", lambda d: d["period"]["inputs"].update(btc_usd="1/0"))
    edit("version 1", lambda d: d.update(version=1))
    out = [(name, json.dumps(d), now) for name, d, now in docs]
    raw = json.dumps(genuine)
    out.append(
        ("duplicate keys", raw.replace('"paid_sat": ', '"paid_sat": 1, "paid_sat": ', 1), NOW)
    )
    out.append(("wrapped in a list", f"[{raw}]", NOW))
    out.append(("1e400", raw.replace('"paid_sat": ', '"paid_sat": 1e400, "x": ', 1), NOW))
    checked = []
    for name, text, now in out:
        try:
            want = verifier.check(text.encode(), verifier.Options(now=now)).lines
        except verifier.Failed as exc:
            want = [f"FAILED: {exc}"]
        checked.append((name, text, now, want))
    return checked


def browser() -> webdriver.Chrome:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromedriver are needed: scripts/test installs them (apt)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=420,1400"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


async def test_dashboard_in_chromium(
    start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    tokens = populate(engine, tmp_path)
    # Alice is paid once through a wallet: the pool's payments and her payouts list it.
    set_account(engine, "holder:alice", address=regtest_address(b"alice"), min_payout_sat=1)
    report = await run_payouts(
        engine, MemoryWallet(), network=Network.REGTEST, min_payout_sat=1, max_outputs=10,
        send=True,
    )  # fmt: skip
    [[paid]] = report.batches
    cfg = config_factory(
        ledger={"url": url, "ingest_interval_s": 0.2, "ingest_open_minutes": True},
        api={"listen": "127.0.0.1:0"},
        anchors={"enabled": True, "interval_s": 60},
        # Easy enough that this test mines a block on the daemon's simnet in a few hundred
        # tries: the block that mines the anchor transaction.
        bitcoind={"simnet_difficulty": "1/16777216"},
    )
    rd = await start_daemon(cfg)
    host, port = rd.address
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        account="acme",
        until=lambda s: s.accepted >= 20,
    )
    d = rd.daemon
    await wait_for(lambda: d.ingested_shares == d.metrics.shares_accepted, "ingest")
    # The chains' heads are anchored: by a block the miners found (its coinbase), or else by
    # the daemon's anchor transaction, which a block on its simnet then mines. The next pass
    # reads the evidence back, and every proof carries it.
    await wait_for(lambda: bool(anchor_status(engine)), "an anchor")
    if "sent" in anchor_status(engine):
        await mine(d.bitcoind)
    await wait_for(lambda: "mined" in anchor_status(engine), "an anchor's evidence")
    engine.dispose()
    ahost, aport = rd.daemon.api_addresses[0]
    checks = await asyncio.to_thread(forged_proofs)  # it runs its own simnet loops

    def drive() -> dict[str, Any]:
        web = browser()
        try:
            web.get(f"http://{ahost}:{aport}/")
            wait = WebDriverWait(web, 20)
            try:
                wait.until(
                    lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")
                )
            except Exception:
                print(
                    "PAGE",
                    web.find_element(By.ID, "pool-stats").text,
                    web.get_log("browser") if hasattr(web, "get_log") else "",
                )
                raise
            pool_chart = web.find_element(By.ID, "pool-hashrate")
            blocks = web.find_elements(By.CSS_SELECTOR, "#pool-blocks tbody tr")
            points_24h = pool_chart.get_attribute("data-points")
            max_24h = pool_chart.get_attribute("data-max")
            rows = [[td.text for td in b.find_elements(By.TAG_NAME, "td")] for b in blocks]
            block_cells = next(r for r in rows if r[3] == "confirmed")  # a populated one
            payments = [
                [td.text for td in r.find_elements(By.TAG_NAME, "td")]
                for r in web.find_elements(By.CSS_SELECTOR, "#pool-payments tbody tr")
            ]
            wait.until(lambda d: "hashprice" in d.find_element(By.ID, "network-stats").text)
            network = web.find_element(By.ID, "network-stats").text
            # The ranges: 1 h is 60 one-minute points, 30 d 60 points of 12 h.
            ranges = {}
            for window in ("1h", "30d"):
                web.find_element(By.CSS_SELECTOR, f'#pool-ranges [data-window="{window}"]').click()
                wait.until(
                    lambda d, w=window: (
                        d.find_element(By.ID, "pool-hashrate").get_attribute("data-window") == w
                    )
                )
                ranges[window] = pool_chart.get_attribute("data-points")
            # A phone's width: nothing scrolls sideways but the tables inside their boxes.
            sideways = web.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            web.find_element(By.ID, "miner-account").send_keys("acme")
            web.find_element(By.CSS_SELECTOR, "#miner-form button").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#miner-workers tbody tr"))
            workers = [
                [td.text for td in r.find_elements(By.TAG_NAME, "td")]
                for r in web.find_elements(By.CSS_SELECTOR, "#miner-workers tbody tr")
            ]
            # A worker's own chart, then the miner's ranges redraw both charts.
            web.find_element(By.CSS_SELECTOR, "#miner-workers tbody button.worker").click()
            wait.until(
                lambda d: d.find_element(By.ID, "worker-hashrate").get_attribute("data-worker")
            )
            worker_chart = web.find_element(By.ID, "worker-hashrate")
            worker_24h = (
                worker_chart.get_attribute("data-worker"),
                worker_chart.get_attribute("data-window"),
                worker_chart.get_attribute("data-points"),
            )
            web.find_element(By.CSS_SELECTOR, '#miner-ranges [data-window="1h"]').click()
            wait.until(
                lambda d: (
                    d.find_element(By.ID, "worker-hashrate").get_attribute("data-window") == "1h"
                )
            )
            miner_chart = web.find_element(By.ID, "miner-hashrate")
            miner_1h = (
                miner_chart.get_attribute("data-window"),
                miner_chart.get_attribute("data-points"),
                float(miner_chart.get_attribute("data-max") or 0),
            )
            worker_1h = worker_chart.get_attribute("data-points")
            # m0 with its miner token: its credits, each verified in the browser.
            web.find_element(By.ID, "miner-account").clear()
            web.find_element(By.ID, "miner-account").send_keys("m0")
            web.find_element(By.ID, "miner-token").send_keys(tokens["m0"])
            web.find_element(By.CSS_SELECTOR, "#miner-form button").click()
            wait.until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#miner-credits tbody tr button.verify")
            )
            web.find_element(By.CSS_SELECTOR, "#miner-credits tbody tr button.verify").click()
            wait.until(lambda d: d.find_element(By.ID, "miner-verify").text.startswith(("v", "V")))
            miner_verified = web.find_element(By.ID, "miner-verify").text
            credit_ref = web.execute_script(
                "return [...document.querySelectorAll('#miner-credits tbody tr')].length"
            )
            web.find_element(By.ID, "holder-name").send_keys("alice")
            web.find_element(By.ID, "holder-token").send_keys(tokens["alice"])
            web.find_element(By.CSS_SELECTOR, "#holder-form button").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#holder-table tbody tr"))
            statement = [
                td.text for td in web.find_elements(By.CSS_SELECTOR, "#holder-table tbody td")
            ]
            holder_payouts = [
                [td.text for td in r.find_elements(By.TAG_NAME, "td")]
                for r in web.find_elements(By.CSS_SELECTOR, "#holder-payouts tbody tr")
            ]
            holder_stats = web.find_element(By.ID, "holder-stats").text
            earnings = web.find_element(By.ID, "holder-earnings")
            web.find_element(By.CSS_SELECTOR, '#holder-ranges [data-days="7"]').click()
            holder_days = earnings.get_attribute("data-days")
            # The verify button checks the statement's Merkle-sum proof in the browser.
            web.find_element(By.CSS_SELECTOR, "#holder-table tbody tr button.verify").click()
            wait.until(lambda d: d.find_element(By.ID, "holder-verify").text.startswith(("v", "V")))
            verified = web.find_element(By.ID, "holder-verify").text
            # The same in-browser check on tampered proofs fails, naming why.
            tampered = web.execute_async_script(
                """
                const done = arguments[arguments.length - 1];
                (async () => {
                  const auth = {Authorization: "Bearer " + arguments[1]};
                  const r = await fetch(arguments[0], {headers: auth});
                  const good = await r.text(), out = [];
                  for (const bad of [
                    (p) => { p.line.paid_sat += 1n; },
                    (p) => { p.path[0].sums[1] -= 5n; },
                    (p) => { p.period.inputs.btc_usd = "70000"; },
                    (p) => { p.line.electricity_sat += 1n; },
                  ]) {
                    const p = V.parse(good); bad(p);
                    try { await V.check(V.dump(p)); out.push("passed"); }
                    catch (e) { out.push(e.message); }
                  }
                  done(out);
                })();
                """,
                f"/api/v1/holders/alice/proofs/{START}",
                tokens["alice"],
            )
            # And a miner's credit proof, tampered: the credit, the score, the fee.
            tampered_credit = web.execute_async_script(
                """
                const done = arguments[arguments.length - 1];
                (async () => {
                  const auth = {Authorization: "Bearer " + arguments[1]};
                  const listed = await fetch("/api/v1/miners/m0/credits", {headers: auth});
                  const credits = await listed.json();
                  const ref = credits.items.find((c) => c.reason === "pplns_block").reference;
                  const r = await fetch(`/api/v1/miners/m0/proofs/${ref}`, {headers: auth});
                  const good = await r.text(), out = [];
                  for (const bad of [
                    (p) => {},
                    (p) => { p.line.credit_sat += 1n; },
                    (p) => { p.line.score = "1"; },
                    (p) => { p.period.inputs.fee_sat += 1n; },
                  ]) {
                    const p = V.parse(good); bad(p);
                    try { await V.check(V.dump(p)); out.push("passed"); }
                    catch (e) { out.push(e.message); }
                  }
                  done(out);
                })();
                """,
                "",
                tokens["m0"],
            )
            # Forged proofs made here, checked in the page: the page's verdict is verify.py's,
            # word for word.
            forged = web.execute_async_script(
                """
                const done = arguments[arguments.length - 1];
                (async () => {
                  const out = [];
                  for (const [text, now] of arguments[0]) {
                    try { out.push((await V.check(text, {now}))); } catch (e) {
                      out.push([(e instanceof V.Failed ? "FAILED: " : "CRASH: ") + e.message]);
                    }
                  }
                  done(out);
                })();
                """,
                [[text, now] for _name, text, now, _want in checks],
            )
            web.find_element(By.ID, "holder-csv").click()
            wait.until(lambda d: d.find_element(By.ID, "holder-csv").get_attribute("data-bytes"))
            csv_bytes = int(web.find_element(By.ID, "holder-csv").get_attribute("data-bytes") or 0)
            ARTIFACTS.mkdir(exist_ok=True)
            web.save_screenshot(str(ARTIFACTS / "dashboard.png"))
            # A wrong token shows the API's message, not a broken page.
            web.find_element(By.ID, "holder-token").clear()
            web.find_element(By.ID, "holder-token").send_keys(tokens["bob"])
            web.find_element(By.CSS_SELECTOR, "#holder-form button").click()
            wait.until(lambda d: d.find_element(By.ID, "holder-error").text)
            return {
                "points": points_24h,
                "max": max_24h,
                "block_cells": block_cells,
                "network": network,
                "ranges": ranges,
                "sideways": sideways,
                "blocks": len(blocks),
                "workers": workers,
                "worker_24h": worker_24h,
                "worker_1h": worker_1h,
                "miner_1h": miner_1h,
                "holder_days": holder_days,
                "statement": statement,
                "earnings_points": earnings.get_attribute("data-points"),
                "error": web.find_element(By.ID, "holder-error").text,
                "verified": verified,
                "csv_bytes": csv_bytes,
                "stats_after_error": web.find_element(By.ID, "holder-stats").text,
                "tampered": tampered,
                "payments": payments,
                "holder_payouts": holder_payouts,
                "holder_stats": holder_stats,
                "tampered_credit": tampered_credit,
                "miner_verified": miner_verified,
                "credit_rows": credit_ref,
                "forged": forged,
            }
        finally:
            web.quit()

    seen = await asyncio.to_thread(drive)
    await rd.shutdown()
    assert seen["points"] == "48" and float(seen["max"] or 0) > 1  # the miners' hashrate, drawn
    assert seen["blocks"] >= 2  # the two populated; a block the daemon finds itself may join
    assert seen["ranges"] == {"1h": "60", "30d": "60"} and seen["sideways"] <= 0
    assert "height" in seen["network"] and "sat/TH/day" in seen["network"]
    _height, found, short_hash, status, confirmations, effort, reward, _ = seen["block_cells"]
    assert found[:2] == "20" and short_hash.endswith("…") and reward.startswith("50.0")
    assert status == "confirmed" and confirmations == "100 / 100"
    assert effort.endswith("%") and float(effort[:-1]) > 0  # the block's round, settled
    workers = sorted(seen["workers"])
    assert [w[0] for w in workers] == ["rig0", "rig1"]
    for _name, _m10, _h1, _h24, last_seen, best, agent in workers:
        assert last_seen[:2] == "20" and best != "—" and agent == "poold-sim/0.1"
    assert seen["worker_24h"] == ("rig0", "24h", "48") and seen["worker_1h"] == "60"
    assert seen["miner_1h"][:2] == ("1h", "60") and seen["miner_1h"][2] > 1
    assert seen["holder_days"] == "7"
    assert seen["statement"][0] == "2027-01-15" and seen["earnings_points"] == "1"
    assert "does not give access" in seen["error"]
    assert seen["csv_bytes"] > 100 and seen["stats_after_error"] == ""  # no stale numbers
    assert seen["verified"].startswith("verified: the statement of 2027-01-15"), seen["verified"]
    # It says what the anchor establishes (the simnet's work: nothing) and whose code ran.
    assert "\nproof of work trivial (test chain)" in seen["verified"], seen["verified"]
    assert "\nanchored" not in seen["verified"]
    assert "code the pool serves" in seen["verified"] and "verify.py" in seen["verified"]
    assert "\nproof of work trivial (test chain)" in seen["miner_verified"]
    passing = {"genuine", "past 2^53", "a rebuilt tree anchored in a made-up block"}
    for (name, _text, _now, want), got in zip(checks, seen["forged"], strict=True):
        assert got == want, (name, got, want)  # the page's verdict is verify.py's
        assert got[0].startswith("ok:" if name in passing else "FAILED: "), (name, got)
        assert not any(x.startswith("anchored") for x in got)  # the simnet's work, trivial
    assert [m.split(" (")[0] for m in seen["tampered"]] == [
        "the line does not climb to the period's root",
        "the line does not climb to the period's root",
        "the period's commitment is not H(root, sums, inputs, previous)",
        "the line does not climb to the period's root",
    ], seen["tampered"]
    [payment] = seen["payments"]  # sent (UTC), total (BTC), outputs, status, txid
    assert payment[2:4] == ["1", "sent"] and len(payment[4]) == 64
    assert payment[1] == f"{paid.amount_sat // 10**8}.{paid.amount_sat % 10**8:08d}"
    [payout] = seen["holder_payouts"]  # sent, amount (sat), status, txid
    assert payout[1].replace(",", "") == str(paid.amount_sat) and payout[3] == payment[4]
    assert f"sent on chain\n{paid.amount_sat:,} sat" in seen["holder_stats"], seen["holder_stats"]
    assert seen["miner_verified"].startswith("verified: this credit"), seen["miner_verified"]
    assert seen["credit_rows"] >= 1
    assert [m.split(" (")[0] for m in seen["tampered_credit"]] == [
        "passed",
        "the line does not climb to the period's root",
        "the line does not climb to the period's root",
        "the period's commitment is not H(root, sums, inputs, previous)",
    ], seen["tampered_credit"]
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
