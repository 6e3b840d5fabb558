"""Anchors on the real regtest node, checked with `verify.py --node` against that node: the
daemon's wallet sends an anchor transaction for the miners' credit chain, the pool's blocks
mine it and carry the head in their coinbases, the ledger reads back the evidence of both, and
a miner's proof verifies offline and on the node (best chain, confirmations, the pool's
anchors scanned). The forgeries only a node can see are refused there: a block that does not
exist (cheap on a test chain) and a second history anchored by the same pool."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from poold.chain.address import Network, address_to_script
from poold.jobs.coinbase import statement_script
from poold.ledger.anchors import AnchorPolicy, run_anchors
from poold.ledger.credit_proofs import credit_proof
from poold.ledger.db import make_engine, migrate
from poold.ledger.models import CreditRoot
from simulation.fleet import run_fleet
from tests.helpers import PATIENCE_S

pytestmark = pytest.mark.regtest
ROOT = Path(__file__).resolve().parents[2]


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def first_proof(engine: sa.Engine) -> dict[str, Any] | None:
    """A miner's proof of the first credit settlement, as the API serves it (None: none yet)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(CreditRoot).order_by(CreditRoot.id).limit(1)).first()
        if row is None:
            return None
        lines = json.loads(row.lines)
        account = next(a for a, v in lines.items() if v["credit_sat"])
        return json.loads(json.dumps(credit_proof(conn, account, row.reference)))  # type: ignore[no-any-return]


def kinds(doc: dict[str, Any] | None) -> set[str]:
    return {a["type"] for a in doc["anchors"]} if doc else set()


async def verify_py(
    doc: dict[str, Any], tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(doc))
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "verify.py"), str(path), *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
    )


def fabricated(anchor: dict[str, Any]) -> dict[str, Any]:
    """The same transaction in a block nobody mined: a header of trivial work (regtest's
    target takes one try in two) whose merkle root the transaction climbs to."""
    txid = sha256d(bytes.fromhex(anchor["tx"]))
    sibling = sha256d(b"nothing real")
    root = sha256d(sibling + txid)  # index 1: the sibling on the left
    for nonce in range(1000):
        header = (
            struct.pack("<I", 0x20000000) + sha256d(b"a made-up parent") + root
            + struct.pack("<III", 1_700_000_000, 0x207FFFFF, nonce)
        )  # fmt: skip
        if int.from_bytes(sha256d(header), "little") <= 0x7FFFFF << 232:
            break
    return anchor | {
        "block": sha256d(header)[::-1].hex(),
        "header": header.hex(),
        "index": 1,
        "branch": [sibling.hex()],
    }


async def test_anchors_verify_on_the_node_and_equivocation_is_caught(
    bitcoind, node_rpc, start_daemon, config_factory, tmp_path: Path
) -> None:
    payout = await node_rpc.call("getnewaddress")
    anchor_address = await node_rpc.call("getnewaddress")
    await node_rpc.call("generatetoaddress", 101, anchor_address)  # its coins, matured
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    cfg = config_factory(
        bitcoind={"kind": "rpc", "url": bitcoind.url, "user": "u", "password": "p",
                  "poll_interval_s": 0.1},
        pool={"network": "regtest", "payout_address": payout},
        stratum={"start_difficulty": "1/65536", "min_difficulty": "1/65536"},
        ledger={"url": url, "ingest_interval_s": 0.2, "ingest_open_minutes": True},
        anchors={"enabled": True, "address": anchor_address, "interval_s": 60},
    )  # fmt: skip
    rd = await start_daemon(cfg)
    host, port = rd.address
    # Blocks settle once their minute closes; the credit chain's head is then anchored by a
    # transaction of the pool's wallet (nothing carries it yet), which the pool's next block
    # mines, and by the coinbases of the blocks found after the jobs took it up.
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=1,
        duration_s=PATIENCE_S,
        until=lambda _s: kinds(first_proof(engine)) == {"coinbase", "transaction"},
    )
    await rd.shutdown()
    doc = first_proof(engine)
    engine.dispose()
    assert doc is not None and kinds(doc) == {"coinbase", "transaction"}
    anchor_script = address_to_script(anchor_address, Network.REGTEST).hex()
    assert doc["pool"]["anchor_scripts"] == [anchor_script]
    node = f"http://u:p@{bitcoind.url.removeprefix('http://')}"

    offline = await verify_py(doc, tmp_path)
    assert offline.returncode == 0, offline.stdout
    assert "proof of work trivial (test chain)" in offline.stdout
    assert "\nanchored" not in offline.stdout  # regtest's work establishes nothing
    online = await verify_py(doc, tmp_path, "--node", node, "--scan-blocks", "1000")
    assert online.returncode == 0, online.stdout + online.stderr
    lines = online.stdout.splitlines()
    on_chain = [x for x in lines if x.startswith("anchored:") and "on your node's best chain" in x]
    assert any("in its coinbase" in x for x in on_chain), lines
    assert any("in transaction" in x for x in on_chain), lines
    assert any(
        x.startswith("node: blocks ") and "every one up to the cut on this proof's chain" in x
        for x in lines
    )
    block = doc["anchors"][0]["block"]
    given = await verify_py(doc, tmp_path, "--block", block)
    assert given.returncode == 0 and "the block hash you gave (--block)" in given.stdout

    # A block that does not exist: offline its trivial work establishes nothing, the node
    # refuses it.
    forged = json.loads(json.dumps(doc))
    tx_anchor = next(a for a in forged["anchors"] if a["type"] == "transaction")
    forged["anchors"] = [fabricated(tx_anchor)]
    out = await verify_py(forged, tmp_path)
    assert out.returncode == 0 and "\nanchored" not in out.stdout, out.stdout
    out = await verify_py(forged, tmp_path, "--node", node)
    assert out.returncode == 1 and "your node does not know block" in out.stdout, out.stdout

    # The pool anchors a second history (another credit commitment) from its anchor address.
    # The proof cut before it cannot judge that anchor, and says so; one cut after it (the
    # leader's next anchoring pass records the new best block) fails as equivocation.
    other = b"\x66" * 32
    anchor_script = address_to_script(anchor_address, Network.REGTEST)
    await node_rpc.send_anchor(
        statement_script(None, other),
        address=anchor_address,
        change_script=anchor_script,
        fee_rate_sat_vb=2,
    )
    await node_rpc.call("generatetoaddress", 1, payout)
    old = await verify_py(doc, tmp_path, "--node", node, "--scan-blocks", "1000")
    assert old.returncode == 0, old.stdout
    assert "1 after the cut (a newer proof checks those)" in old.stdout, old.stdout
    engine = make_engine(url)
    policy = AnchorPolicy(
        coinbase_script=address_to_script(payout, Network.REGTEST),
        wallet=node_rpc,
        address=anchor_address,
        change_script=anchor_script,
        interval_s=60,
        fee_rate_sat_vb=2,
    )
    await run_anchors(engine, node_rpc, policy, int(time.time() * 1000))
    fresh = first_proof(engine)
    engine.dispose()
    assert fresh is not None and fresh["cut"]["best_height"] > doc["cut"]["best_height"]
    out = await verify_py(fresh, tmp_path, "--node", node, "--scan-blocks", "1000")
    assert out.returncode == 1, out.stdout
    assert out.stdout.startswith("FAILED: equivocation: the pool anchored commitment 6666"), (
        out.stdout
    )
