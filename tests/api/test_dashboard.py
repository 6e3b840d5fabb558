"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, installed by
scripts/test), at a desktop's 1400 px and a phone's 390 px: served by a running daemon whose
miners are mining, its charts drawn from real data, a miner and a holder looked up with their
tokens. Every number on the page is the API's display text (exact, or marked "≈"); the
screenshots are kept in artifacts/."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
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
from tests.tokens.test_periods import CFG
from tests.verifier import NOW, mine, verifier

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
DESKTOP, PHONE = (1400, 1000), (390, 844)


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
    docs += make_good_docs() + work_docs()
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


def make_good_docs() -> list[tuple[str, Any, float]]:
    """A statement proof of a period delivered under the threshold and made good (its inputs
    carry the make-good and the network's hashprice), and the same with the total off by one."""
    from tests.accounting.test_merkle_sum import START as P_START
    from tests.accounting.test_merkle_sum import documents, settle

    lines, inputs = settle({"alice": 2 * 10**6, "bob": 10**6}, delivered_th_per_s=Fraction(1, 10))
    atoms = sum(int(line["atom_seconds"]) for line in lines.values())
    nominal = Fraction(atoms, int(str(inputs["atoms_per_token"]))) * Fraction(
        str(inputs["th_per_token"])
    )
    delivered = Fraction(str(inputs["delivered_th_per_s"])) * (END - P_START)
    assert delivered < nominal * Fraction(95, 100)
    hashprice = Fraction(823975142816162109375, 16)
    total = math.floor((nominal - delivered) * hashprice / 86400)
    made_good = {"delivery_threshold": "19/20", "network_hashprice": str(hashprice)}
    genuine = documents(lines, {**inputs, **made_good, "make_good_sat": total})["alice"]
    off = documents(lines, {**inputs, **made_good, "make_good_sat": total + 1})["alice"]
    return [("made good", genuine, NOW), ("made good, one sat more", off, NOW)]


def work_docs() -> list[tuple[str, Any, float]]:
    """A genuine work proof (real shares on the simnet), each forgery it exists to stop, and
    edits of the genuine one (a node of 2^128 - 1 hashes among them)."""
    from tests.test_verify_work import _genuine
    from tests.work_scenario import work_doc

    genuine = json.loads(_genuine())
    out: list[tuple[str, Any, float]] = [("work: genuine", genuine, NOW)]
    for kind in ("other pool", "old tip", "stale link", "low difficulty", "duplicate", "inflated"):
        out.append((f"work: {kind}", asyncio.run(work_doc(kind)), NOW))

    def edit(name: str, change: Any) -> None:
        d = copy.deepcopy(genuine)
        change(d)
        out.append((f"work: {name}", d, NOW))

    def heavy(d: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(d["nodes"][0][2]))
        raw[32:48] = (2**128 - 1).to_bytes(16, "big")
        d["nodes"][0][2] = base64.b64encode(bytes(raw)).decode()

    def doubled(d: dict[str, Any]) -> None:
        d["samples"][3]["leaf"]["weight"] *= 2

    def nonce(d: dict[str, Any]) -> None:
        d["samples"][0]["share"]["nonce"] ^= 1

    edit("a doubled weight", doubled)
    edit("a node dropped", lambda d: d["nodes"].pop(0))
    edit("samples reversed", lambda d: d["samples"].reverse())
    edit("a sample dropped", lambda d: d["samples"].pop())
    edit("links dropped", lambda d: d["links"].clear())
    edit("a header repeated", lambda d: d["headers"].__setitem__(1, d["headers"][0]))
    edit("a foreign tag", lambda d: d["fleet_tags"].__setitem__(0, "00" * 32))
    edit("another nonce", nonce)
    edit("a work of 2^128 - 1", heavy)
    edit("a node given twice", lambda d: d["nodes"].append(d["nodes"][0]))
    edit("a string weight", lambda d: d["samples"][0]["leaf"].update(weight="5"))
    edit("tips out of order", lambda d: d["tips"].__setitem__(1, 4))
    return out


def browser(size: tuple[int, int]) -> webdriver.Chrome:
    """Headless Chromium with a viewport of `size` CSS pixels (a phone's through Chromium's
    device emulation: a headless window is never narrower than 500 px)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromedriver are needed: scripts/test installs them (apt)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        opts.add_argument(arg)
    width, height = size
    if width < 500:
        metrics = {"width": width, "height": height, "pixelRatio": 3.0, "touch": True}
        opts.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    else:
        opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(driver), options=opts)


def texts(web: WebDriver, selector: str) -> list[list[str]]:
    """The cells of each row a selector finds, as text."""
    return [
        [td.get_attribute("textContent") or "" for td in r.find_elements(By.TAG_NAME, "td")]
        for r in web.find_elements(By.CSS_SELECTOR, selector)
    ]


def data(web: WebDriver, element_id: str, key: str) -> Any:
    return json.loads(web.find_element(By.ID, element_id).get_attribute(f"data-{key}") or "null")


OVERFLOWING = """
return [...document.querySelectorAll(arguments[0])]
  .filter((e) => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
  .map((e) => e.id || e.textContent.slice(0, 60));
"""
# Cells (of visible tables) whose right edge is past the viewport: what a phone would hide.
OFF_SCREEN = """
const right = window.innerWidth + 1;
return [...document.querySelectorAll(arguments[0])]
  .filter((td) => td.offsetParent !== null && td.getBoundingClientRect().right > right)
  .map((td) => (td.dataset.label || "") + ": " + td.textContent);
"""


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
        pool={"fee": "0.01"},
        tokens=CFG.model_dump(mode="json"),
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
    # The leader samples the network (the statements' and the fleet's benchmark).
    await wait_for(lambda: bool(_network_sampled(d)), "a network sample")
    # The chains' heads are anchored: by a block the miners found (its coinbase), or else by
    # the daemon's anchor transaction, which a block on its simnet then mines. The next pass
    # reads the evidence back, and every proof carries it.
    await wait_for(lambda: bool(anchor_status(engine)), "an anchor")
    if "sent" in anchor_status(engine):
        await mine(d.bitcoind)
    await wait_for(lambda: "mined" in anchor_status(engine), "an anchor's evidence")
    engine.dispose()
    checks = await asyncio.to_thread(forged_proofs)  # it runs its own simnet loops
    ahost, aport = d.api_addresses[0]
    base = f"http://{ahost}:{aport}"

    def api(path: str, token: str = "") -> Any:
        req = Request(base + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urlopen(req, timeout=PATIENCE_S) as r:
            return json.loads(r.read())

    def open_page(web: WebDriver) -> WebDriverWait[WebDriver]:
        web.get(base + "/")
        wait = WebDriverWait(web, PATIENCE_S)
        wait.until(lambda w: w.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        return wait

    def look_up_holder(web: WebDriver, wait: WebDriverWait[WebDriver], token: str) -> None:
        web.find_element(By.ID, "holder-name").clear()
        web.find_element(By.ID, "holder-name").send_keys("alice")
        web.find_element(By.ID, "holder-token").clear()
        web.find_element(By.ID, "holder-token").send_keys(token)
        web.find_element(By.CSS_SELECTOR, "#holder-form button").click()
        wait.until(
            lambda w: w.find_element(By.ID, "holder-stats").get_attribute("data-holder") == "alice"
        )

    def look_up_miner(
        web: WebDriver, wait: WebDriverWait[WebDriver], name: str, token: str
    ) -> None:
        web.find_element(By.ID, "miner-account").clear()
        web.find_element(By.ID, "miner-account").send_keys(name)
        web.find_element(By.ID, "miner-token").clear()
        web.find_element(By.ID, "miner-token").send_keys(token)
        web.find_element(By.CSS_SELECTOR, "#miner-form button").click()
        wait.until(
            lambda w: w.find_element(By.ID, "miner-stats").get_attribute("data-account") == name
        )

    def desktop() -> dict[str, Any]:
        web = browser(DESKTOP)
        try:
            wait = open_page(web)
            seen: dict[str, Any] = {}
            wait.until(lambda w: "hashprice" in w.find_element(By.ID, "network-stats").text)
            seen["network"] = web.find_element(By.ID, "network-stats").text
            seen["network_api"] = api("/api/v1/network")
            seen["stats_overflow"] = web.execute_script(OVERFLOWING, ".stat")
            seen["pool_yticks"] = data(web, "pool-hashrate", "yticks")
            seen["pool_xlabels"] = data(web, "pool-hashrate", "xlabels")
            seen["pool_points"] = web.find_element(By.ID, "pool-hashrate").get_attribute(
                "data-points"
            )
            seen["pool_series"] = api("/api/v1/pool/hashrate?window=24h")
            seen["blocks"] = texts(web, "#pool-blocks tbody tr")
            seen["blocks_api"] = api("/api/v1/pool/blocks?limit=10")
            seen["payments"] = texts(web, "#pool-payments tbody tr")
            wait.until(lambda w: w.find_elements(By.CSS_SELECTOR, "#fleet-table tbody tr"))
            seen["fleet"] = texts(web, "#fleet-table tbody tr")
            seen["fleet_api"] = api("/api/v1/fleet/daily?limit=30")
            # The ranges: 1 h is 60 one-minute points, 30 d 60 points of 12 h.
            ranges = {}
            for window in ("1h", "30d"):
                web.find_element(By.CSS_SELECTOR, f'#pool-ranges [data-window="{window}"]').click()
                wait.until(
                    lambda w, x=window: (
                        w.find_element(By.ID, "pool-hashrate").get_attribute("data-window") == x
                    )
                )
                ranges[window] = web.find_element(By.ID, "pool-hashrate").get_attribute(
                    "data-points"
                )
            seen["ranges"] = ranges
            # A miner: its workers, every line of its account (credits and debits), its
            # payouts, its days, its settings (with its token), a credit verified.
            look_up_miner(web, wait, "acme", "")
            seen["workers"] = texts(web, "#miner-workers tbody tr")
            web.find_element(By.CSS_SELECTOR, "#miner-workers tbody button.worker").click()
            wait.until(
                lambda w: w.find_element(By.ID, "worker-hashrate").get_attribute("data-worker")
            )
            seen["worker_points"] = web.find_element(By.ID, "worker-hashrate").get_attribute(
                "data-points"
            )
            look_up_miner(web, wait, "m0", tokens["m0"])
            wait.until(lambda w: "Paid to" in w.find_element(By.ID, "miner-settings").text)
            seen["settings"] = web.find_element(By.ID, "miner-settings").text
            seen["credits"] = texts(web, "#miner-credits tbody tr")
            seen["credits_api"] = api("/api/v1/miners/m0/credits?limit=20")
            seen["daily"] = texts(web, "#miner-daily tbody tr")
            web.find_element(By.CSS_SELECTOR, "#miner-credits tbody tr button.verify").click()
            wait.until(lambda w: w.find_element(By.ID, "miner-verify").text.startswith(("v", "V")))
            seen["miner_verified"] = web.find_element(By.ID, "miner-verify").text
            web.find_element(By.ID, "miner-csv").click()
            wait.until(lambda w: w.find_element(By.ID, "miner-csv").get_attribute("data-bytes"))
            seen["miner_csv_bytes"] = int(
                web.find_element(By.ID, "miner-csv").get_attribute("data-bytes") or 0
            )
            # Its payout settings, changed from the page with its token.
            web.find_element(By.ID, "miner-address").clear()
            web.find_element(By.ID, "miner-address").send_keys(regtest_address(b"m0 on the page"))
            web.find_element(By.ID, "miner-minimum").clear()
            web.find_element(By.ID, "miner-minimum").send_keys("5000")
            web.find_element(By.CSS_SELECTOR, "#miner-settings-form button").click()
            wait.until(lambda w: "5,000 sat" in w.find_element(By.ID, "miner-settings").text)
            seen["settings_after"] = api("/api/v1/miners/m0/settings", tokens["m0"])
            # The holder: what she holds, was credited, was sent, is owed, and each statement
            # with everything behind it.
            look_up_holder(web, wait, tokens["alice"])
            seen["holder_stats"] = web.find_element(By.ID, "holder-stats").text
            seen["reconcile"] = web.find_element(By.ID, "holder-reconcile").text
            seen["rates"] = web.find_element(By.ID, "holder-rates").text
            seen["statement"] = texts(web, "#holder-table tbody tr")[0]
            seen["statement_api"] = api("/api/v1/holders/alice/statements", tokens["alice"])[
                "items"
            ][0]
            seen["holder_payouts"] = texts(web, "#holder-payouts tbody tr")
            seen["earnings_caption"] = web.find_element(By.ID, "holder-earnings-caption").text
            web.find_element(By.CSS_SELECTOR, "#holder-table tbody tr td").click()
            wait.until(lambda w: w.find_element(By.ID, "holder-detail").is_displayed())
            seen["detail"] = web.find_element(By.ID, "holder-detail").text
            web.find_element(By.CSS_SELECTOR, '#holder-ranges [data-count="7"]').click()
            seen["holder_count"] = web.find_element(By.ID, "holder-earnings").get_attribute(
                "data-count"
            )
            # The verify button checks the statement's Merkle-sum proof in the browser.
            web.find_element(By.CSS_SELECTOR, "#holder-table tbody tr button.verify").click()
            wait.until(lambda w: w.find_element(By.ID, "holder-verify").text.startswith(("v", "V")))
            seen["verified"] = web.find_element(By.ID, "holder-verify").text
            seen["tampered"] = web.execute_async_script(
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
            seen["tampered_credit"] = web.execute_async_script(
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
            seen["forged"] = web.execute_async_script(
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
            wait.until(lambda w: w.find_element(By.ID, "holder-csv").get_attribute("data-bytes"))
            seen["csv_bytes"] = int(
                web.find_element(By.ID, "holder-csv").get_attribute("data-bytes") or 0
            )
            # The live feed: a heartbeat in UTC while nothing happens.
            WebDriverWait(web, PATIENCE_S).until(
                lambda w: "heartbeat" in w.find_element(By.ID, "live-status").text
            )
            seen["live"] = web.find_element(By.ID, "live-status").text
            seen["sideways"] = web.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            seen["stats_overflow_after"] = web.execute_script(OVERFLOWING, ".stat")
            ARTIFACTS.mkdir(exist_ok=True)
            web.save_screenshot(str(ARTIFACTS / "dashboard-desktop.png"))
            # A wrong token shows the API's message, not a broken page.
            look_up_error(web, wait, tokens["bob"])
            seen["error"] = web.find_element(By.ID, "holder-error").text
            seen["stats_after_error"] = web.find_element(By.ID, "holder-stats").text
            return seen
        finally:
            web.quit()

    def look_up_error(web: WebDriver, wait: WebDriverWait[WebDriver], token: str) -> None:
        web.find_element(By.ID, "holder-token").clear()
        web.find_element(By.ID, "holder-token").send_keys(token)
        web.find_element(By.CSS_SELECTOR, "#holder-form button").click()
        wait.until(lambda w: w.find_element(By.ID, "holder-error").text)

    def phone() -> dict[str, Any]:
        web = browser(PHONE)
        try:
            wait = open_page(web)
            seen: dict[str, Any] = {"width": web.execute_script("return window.innerWidth")}
            look_up_miner(web, wait, "m0", tokens["m0"])
            look_up_holder(web, wait, tokens["alice"])
            seen["sideways"] = web.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            seen["off_screen"] = web.execute_script(OFF_SCREEN, "td")
            seen["stats_overflow"] = web.execute_script(OVERFLOWING, ".stat")
            # Each statement is a card: its money lines labelled, on screen.
            seen["card"] = web.execute_script(
                "return [...document.querySelectorAll('#holder-table tbody tr:first-child td')]"
                ".map((td) => [td.dataset.label, td.textContent, "
                "td.getBoundingClientRect().right <= window.innerWidth])"
            )
            ARTIFACTS.mkdir(exist_ok=True)
            web.save_screenshot(str(ARTIFACTS / "dashboard-phone.png"))
            return seen
        finally:
            web.quit()

    seen = await asyncio.to_thread(desktop)
    small = await asyncio.to_thread(phone)
    await rd.shutdown()

    # 1. Every number right or marked rounded, and inside its card.
    net = seen["network_api"]
    assert f"hashprice\n{net['hashprice_sat_per_th_day']['display']}" in seen["network"]
    assert f"difficulty\n{net['difficulty']['display']}" in seen["network"]
    assert seen["stats_overflow"] == [] and seen["stats_overflow_after"] == []
    # 2. Each block's own effort, as the API computed it, on its row.
    for row, block in zip(seen["blocks"], seen["blocks_api"]["items"], strict=True):
        assert row[0] == str(block["height"]) and row[6] == block["display"]["reward"]
        if block["effort"] is not None:
            assert row[5] == block["effort"]["display"]
    # A populated (confirmed) block: blocks the daemon finds itself may join, still pending.
    confirmed = next(r for r in seen["blocks"] if r[3] == "confirmed")
    _height, found, short_hash, status, confirmations, effort, reward, _ = confirmed
    assert found.endswith(" UTC") and short_hash.endswith("…") and reward.startswith("50.0")
    assert status == "confirmed" and confirmations == "100 / 100" and effort.endswith("%")
    # 3. A miner follows its money: debits shown (m0 is a fleet account: the holders' share
    # of the token period is taken from it), payouts and days listed, settings read and set.
    api_lines = seen["credits_api"]["items"]
    assert [r[1] for r in seen["credits"]] == [c["description"] for c in api_lines]
    assert [r[2] for r in seen["credits"]] == [c["display"]["amount"] for c in api_lines]
    assert any(c["amount_sat"] < 0 and c["reason"] == "token_period" for c in api_lines)
    assert seen["daily"] and seen["daily"][0][0].count("-") == 2
    assert (
        seen["settings"].startswith("Paid to — (no address") and "100,000 sat" in seen["settings"]
    )
    assert (seen["settings_after"]["min_payout_sat"], seen["settings_after"]["address"]) == (
        5000,
        regtest_address(b"m0 on the page"),
    )
    assert seen["miner_verified"].startswith("verified: this credit")
    assert seen["miner_csv_bytes"] > 100
    # 4. The holder sees what she pays for and when: rates, periods with their times, a
    # chart that says what its points are, the benchmark, and every satoshi reconciled.
    day = seen["statement_api"]
    assert seen["statement"][0] == "2027-01-15" == day["period"]["display"]
    assert seen["statement"][1:8] == [
        day["display"][k]
        for k in ("gross", "electricity", "service", "net", "debt_in", "paid", "debt_out")
    ]
    assert seen["statement"][8] == day["benchmark"]["gross_vs_hashprice"]["display"]
    assert seen["rates"] == f"Rates of 2027-01-15: {day['display']['rates']}"
    assert "21.5 W/TH" in seen["rates"] and "$0.05/kWh" in seen["rates"]
    assert "10.00 %" in seen["rates"] and "$0.01/TH/day" in seen["rates"]
    assert seen["earnings_caption"].startswith("net per statement period (1 day each), in sat")
    for words in ("network hashprice", "your tokens at plain hashprice", "the pool fee",
                  day["benchmark"]["hashprice_value_sat"]["display"], "21.5 W/TH",
                  day["electricity_kwh"]["display"], day["display"]["btc_usd"]):  # fmt: skip
        assert words in seen["detail"], (words, seen["detail"])
    assert seen["reconcile"].endswith("✓"), seen["reconcile"]
    assert f"sent on chain\n{paid.amount_sat:,} sat" in seen["holder_stats"]
    [payout] = seen["holder_payouts"]  # sent, amount, status, confirmations, txid
    assert payout[1] == f"{paid.amount_sat:,} sat" and len(payout[4]) == 64
    [payment] = seen["payments"]  # sent (UTC), total (BTC), outputs, status, txid
    assert payment[2:5] == ["1", "sent", payout[4]]
    assert payment[1] == f"{paid.amount_sat // 10**8}.{paid.amount_sat % 10**8:08d} BTC"
    assert seen["holder_count"] == "7"
    assert seen["verified"].startswith("verified: the statement of 2027-01-15"), seen["verified"]
    # It says what the anchor establishes (the simnet's work: nothing) and whose code ran.
    assert "\nproof of work trivial (test chain)" in seen["verified"], seen["verified"]
    assert "\nanchored" not in seen["verified"]
    assert "code the pool serves" in seen["verified"] and "verify.py" in seen["verified"]
    assert "\nproof of work trivial (test chain)" in seen["miner_verified"]
    passing = {"genuine", "past 2^53", "a rebuilt tree anchored in a made-up block", "made good",
               "work: genuine"}  # fmt: skip
    for (name, _text, _now, want), got in zip(checks, seen["forged"], strict=True):
        assert got == want, (name, got, want)  # the page's verdict is verify.py's
        assert got[0].startswith("ok:" if name in passing else "FAILED: "), (name, got)
        assert not any(x.startswith("anchored") for x in got)  # the simnet's work, trivial
    verdicts = {c[0]: got for c, got in zip(checks, seen["forged"], strict=True)}
    assert verdicts["work: genuine"][0].startswith("ok: 10/10 valid: with 99 % confidence")
    assert any(x.startswith("make-good: ") for x in verdicts["made good"])
    assert "over 2^128 hashes" in verdicts["work: a work of 2^128 - 1"][0]
    assert [m.split(" (")[0] for m in seen["tampered"]] == [
        "the line does not climb to the period's root",
        "the line does not climb to the period's root",
        "the period's commitment is not H(root, sums, inputs, previous)",
        "the line does not climb to the period's root",
    ], seen["tampered"]
    assert [m.split(" (")[0] for m in seen["tampered_credit"]] == [
        "passed",
        "the line does not climb to the period's root",
        "the line does not climb to the period's root",
        "the period's commitment is not H(root, sums, inputs, previous)",
    ], seen["tampered_credit"]
    assert seen["csv_bytes"] > 100
    assert "does not give access" in seen["error"] and seen["stats_after_error"] == ""
    # The fleet against hashprice, as the API says.
    fleet = seen["fleet_api"]["items"]
    assert [r[0] for r in seen["fleet"]] == [x["display"]["period"] for x in fleet]
    assert seen["fleet"][0][2] == fleet[0]["hashprice_sat_per_th_day"]["display"]
    # 6. Charts: round ticks up the y axis, five UTC labels along x, the last at the series'
    # end (the newest point's end: now), not at the last point's start.
    assert len(seen["pool_yticks"]) >= 3 and all(t.endswith("H/s") for t in seen["pool_yticks"])
    end = seen["pool_series"]["end"]
    from datetime import UTC, datetime

    assert seen["pool_xlabels"][-1] == datetime.fromtimestamp(end, UTC).strftime("%H:%M")
    assert len(seen["pool_xlabels"]) == 5 and seen["pool_points"] == "48"
    assert seen["ranges"] == {"1h": "60", "30d": "60"} and seen["worker_points"] == "48"
    assert [w[0] for w in sorted(seen["workers"])] == ["rig0", "rig1"]
    # 8. The live feed: a heartbeat in UTC.
    assert seen["live"].startswith("live · heartbeat 20") and seen["live"].endswith(" UTC")
    assert seen["sideways"] <= 0
    # 7. A phone: nothing scrolls sideways, no cell is off screen, the statement is a card.
    assert small["width"] <= 400
    assert small["sideways"] <= 0 and small["off_screen"] == [], small["off_screen"][:5]
    assert small["stats_overflow"] == []
    labels = [label for label, _text, _on in small["card"]]
    assert labels[:8] == ["period (UTC)", "gross", "electricity", "service", "net", "debt in",
                          "credited", "debt out"]  # fmt: skip
    assert all(on for _l, _t, on in small["card"])
    for name in ("desktop", "phone"):
        assert (ARTIFACTS / f"dashboard-{name}.png").stat().st_size > 10_000


def _network_sampled(daemon: Any) -> int:
    from sqlalchemy import func, select

    from poold.ledger.models import NetworkSample

    with daemon.ledger.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(NetworkSample)).scalar_one())
