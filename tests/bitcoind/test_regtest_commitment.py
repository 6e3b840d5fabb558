"""The latest token-statement and miner-credit commitments in the coinbase of the blocks poold
finds, on the real regtest node: the node accepts those blocks, their coinbase carries
OP_RETURN "pold" + the commitments, the ledger records which block carries which commitment,
and the public chains and every proof name those blocks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from accounting.merkle_sum import GENESIS, Node, commitment, inputs_digest
from poold.jobs.coinbase import read_commitments
from poold.ledger.credit_proofs import credit_roots
from poold.ledger.db import make_engine, migrate
from poold.ledger.models import Block, StatementRoot
from poold.tokens.proofs import roots
from simulation.fleet import run_fleet
from tests.helpers import PATIENCE_S, wait_for

pytestmark = pytest.mark.regtest


async def test_found_blocks_carry_the_latest_statement_commitment(
    bitcoind, node_rpc, start_daemon, config_factory, tmp_path: Path
) -> None:
    address = await node_rpc.call("getnewaddress")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    inputs = {"period_start": 1_800_000_000, "note": "a settled period"}
    root = Node(bytes(range(32)), (5, 7))
    done = commitment(root, inputs_digest(inputs), GENESIS)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(StatementRoot).values(
                period_start=1_800_000_000,
                root_hash=root.hash.hex(),
                sums=json.dumps(list(root.sums)),
                inputs=json.dumps(inputs, sort_keys=True),
                previous=GENESIS.hex(),
                commitment=done.hex(),
            )
        )
    cfg = config_factory(
        bitcoind={"kind": "rpc", "url": bitcoind.url, "user": "u", "password": "p",
              "poll_interval_s": 0.1},
        pool={"network": "regtest", "payout_address": address},
        stratum={"start_difficulty": "1/65536", "min_difficulty": "1/65536"},
        ledger={"url": url, "ingest_interval_s": 0.2, "ingest_open_minutes": True},
    )  # fmt: skip
    rd = await start_daemon(cfg)
    await wait_for(
        lambda: rd.daemon.jobs.statement_commitment == done, "the commitment in the jobs"
    )
    host, port = rd.address
    # Until a block found after the commitment was picked up is accepted.
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        until=lambda _s: any(b.accepted and b.commitment for b in rd.daemon.blocks),
    )
    # The blocks found settle once their minute closes; each settlement's credit tree joins
    # the miners' chain, and blocks found after that carry its commitment too.
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=1,
        duration_s=PATIENCE_S,
        until=lambda _s: any(b.accepted and b.credit_commitment for b in rd.daemon.blocks),
    )
    await rd.shutdown()
    credited = [b for b in rd.daemon.blocks if b.accepted and b.credit_commitment]
    assert credited, rd.daemon.blocks
    for b in credited:
        block = await node_rpc.call("getblock", b.hash_hex, 2)
        scripts = [bytes.fromhex(o["scriptPubKey"]["hex"]) for o in block["tx"][0]["vout"]]
        found = [c for c in map(read_commitments, scripts) if c is not None]
        assert found == [(done, bytes.fromhex(b.credit_commitment))], scripts
    with engine.connect() as conn:
        recorded = dict(
            conn.execute(
                sa.select(Block.hash, Block.credit_commitment).where(
                    Block.credit_commitment.is_not(None)
                )
            ).all()
        )
        chain = {r["commitment"]: r for r in credit_roots(conn, 10**6, 0)}
    # Every credited block the ledger has ingested records the commitment it carries, and the
    # public chain names it as an anchor of that commitment.
    ingested = [b for b in credited if b.hash_hex in recorded]
    assert ingested
    for b in ingested:
        assert recorded[b.hash_hex] == b.credit_commitment
        assert b.hash_hex in {a["hash"] for a in chain[b.credit_commitment]["blocks"]}
    carried = [b.hash_hex for b in rd.daemon.blocks if b.accepted and b.commitment]
    assert carried, rd.daemon.blocks
    magic = "6a24" + b"pold".hex() + done.hex()  # OP_RETURN PUSH36 "pold" <commitment>
    for h in carried:
        block = await node_rpc.call("getblock", h, 2)
        outputs = block["tx"][0]["vout"]
        marked = [o for o in outputs if o["scriptPubKey"]["hex"].startswith("6a")]
        assert len(marked) == 1 and marked[0]["value"] == 0, outputs
        script = marked[0]["scriptPubKey"]["hex"]
        # PUSH68 "pold" <statement> <credit> once a block's credits are committed too.
        assert script == magic or (script.startswith("6a44" + magic[4:]) and len(script) == 140)
    with engine.connect() as conn:
        recorded = dict(conn.execute(sa.select(Block.hash, Block.commitment)).all())
        chain = roots(conn, 10, 0)
    assert all(recorded[h] == done.hex() for h in carried)
    assert {b["hash"] for b in chain[0]["blocks"]} >= set(carried)
    engine.dispose()
    await asyncio.sleep(0)


async def test_a_payout_address_the_node_cannot_pay_is_refused_at_start(
    bitcoind, tmp_path: Path
) -> None:
    """The regtest node is a Bitcoin SV build (no segwit): a bech32 regtest address passes
    the config's own check, but the node does not accept it, so poold refuses to start."""
    import subprocess
    import sys

    from tests.bitcoind.conftest import free_port

    cfg = tmp_path / "poold.toml"
    cfg.write_text(
        f"""
[stratum]
listen = "127.0.0.1:{free_port()}"
[bitcoind]
kind = "rpc"
url = "{bitcoind.url}"
user = "u"
password = "p"
[pool]
network = "regtest"
payout_address = "bcrt1q2gxggvp0sywjxshxylx4ta30xu80fnqdt5pekn"
[sharelog]
path = "{tmp_path / "log"}"
"""
    )
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poold", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
    )
    assert out.returncode == 1, out.stderr
    assert "does not accept the payout address 'bcrt1q2gxggvp0" in out.stderr
