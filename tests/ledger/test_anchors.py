"""The ledger's anchoring pass (`ledger.anchors`) on the simnet, on SQLite and PostgreSQL: an
anchor transaction is sent for heads no anchor carries, at most once per interval; once mined
its evidence is read back, and so is a found block's coinbase; proofs carry both with their
evidence and `verify.py` checks them; an orphaned block's anchor leaves every proof and comes
back with it; a wallet that cannot send is reported, not fatal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from poold.bitcoind.client import BitcoindError
from poold.ledger.anchors import AnchorPolicy, run_anchors
from poold.ledger.credit_proofs import credit_proof
from poold.ledger.ingest import ingest
from poold.ledger.models import Account, Block, ChainAnchor, ChainView, CreditRoot, Worker
from poold.ledger.settle import settle_pending
from tests.ledger.test_settle import mine as mine_log
from tests.verifier import ANCHOR_SCRIPT, NOW, PAYOUT, check, mine, simnet

NOW_MS = NOW * 1000


def policy(wallet: Any) -> AnchorPolicy:
    return AnchorPolicy(
        coinbase_script=PAYOUT,
        wallet=wallet,
        address="the anchor address",
        change_script=ANCHOR_SCRIPT,
        interval_s=3600,
        fee_rate_sat_vb=1,
    )


def head(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(CreditRoot.commitment).order_by(CreditRoot.id.desc()).limit(1)
            ).scalar_one()
        )


def record_found_block(engine: sa.Engine, block_hash: str, height: int, credit: str) -> None:
    """What ingest writes for a block the pool found whose coinbase carries `credit`."""
    with engine.begin() as conn:
        account = conn.execute(sa.select(Account.id).limit(1)).scalar_one()
        worker = conn.execute(sa.select(Worker.id).limit(1)).scalar_one()
        conn.execute(
            sa.insert(Block).values(
                hash=block_hash, node_id=0, height=height, account_id=account, worker_id=worker,
                reward_sat=5_000_000_000, bits=0x207FFFFF, found_ms=NOW_MS, accepted=True,
                status="pending", credit_commitment=credit,
            )
        )  # fmt: skip


def proof(engine: sa.Engine, reference: str) -> dict[str, Any]:
    with engine.connect() as conn:
        lines = json.loads(
            conn.execute(
                sa.select(CreditRoot.lines).where(CreditRoot.reference == reference)
            ).scalar_one()
        )
        account = next(a for a, v in lines.items() if v["credit_sat"])
        found = credit_proof(conn, account, reference)
    assert found is not None
    return json.loads(json.dumps(found))  # type: ignore[no-any-return]


def anchors(engine: sa.Engine) -> list[tuple[str, str, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(ChainAnchor.kind, ChainAnchor.status, ChainAnchor.height).order_by(
                ChainAnchor.id
            )
        ).all()
    return [(k, s, h) for k, s, h in rows]


def test_anchor_transactions_and_coinbases_reach_the_proofs(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    mine_log(tmp_path / "log", 40, {25: True, 39: True})
    ingest(ledger, tmp_path / "log", 0)
    settled = settle_pending(ledger, scheme="pplns")
    first, last = (s.block_hash for s in settled)
    net = simnet()
    anchoring = policy(net)

    async def run(at_ms: int) -> list[str]:
        return [a.event for a in await run_anchors(ledger, net, anchoring, at_ms)]

    async def scenario() -> None:
        # The heads are carried by nothing: an anchor transaction goes out at once, and no
        # second one while it waits to be mined.
        assert await run(NOW_MS) == ["anchor_sent"]
        assert await run(NOW_MS + 1000) == []
        assert anchors(ledger) == [("transaction", "sent", None)]
        with ledger.connect() as conn:
            view = conn.execute(sa.select(ChainView)).one()
        assert (view.best_height, json.loads(view.anchor_scripts)) == (0, [ANCHOR_SCRIPT.hex()])
        # The pool finds a block: its coinbase carries the credit head, and it mines the
        # anchor transaction waiting in the mempool.
        credit = head(ledger)
        found = await mine(net, credit=bytes.fromhex(credit))
        record_found_block(ledger, found, 1, credit)
        assert sorted(await run(NOW_MS + 2000)) == ["anchor_mined", "anchor_recorded"]
        assert sorted(anchors(ledger)) == [("coinbase", "mined", 1), ("transaction", "mined", 1)]
        for reference in (first, last):
            doc = proof(ledger, reference)
            assert {a["type"] for a in doc["anchors"]} == {"coinbase", "transaction"}
            assert doc["cut"]["head"] == credit and doc["pool"]["anchor_interval_s"] == 3600
            verdict = check(doc, min_work=1)
            assert sum(x.startswith("anchored: block " + found) for x in verdict.lines) == 2
        # The block leaves the best chain: no proof names it; the transaction waits again.
        net.reorg(1)
        assert sorted(await run(NOW_MS + 3000)) == ["anchor_orphaned", "anchor_orphaned"]
        orphaned = [("coinbase", "orphaned", 1), ("transaction", "sent", None)]
        assert sorted(anchors(ledger)) == orphaned
        assert proof(ledger, last)["anchors"] == []
        # It comes back: so does its coinbase anchor, and the transaction is found in it again.
        net.readopt()
        assert sorted(await run(NOW_MS + 4000)) == ["anchor_mined", "anchor_restored"]
        assert len(proof(ledger, last)["anchors"]) == 2
        # An anchor recorded after the leader's last look at the chain waits for the next
        # proof: a cut naming best block 0 carries no anchor at height 1 (a verifier refuses
        # an anchor above the cut).
        with ledger.begin() as conn:
            conn.execute(sa.update(ChainView).values(best_height=0))
        doc = proof(ledger, last)
        assert doc["anchors"] == [] and doc["cut"]["best_height"] == 0
        assert check(doc, min_work=1).lines[-1].startswith("not anchored on chain yet")
        with ledger.begin() as conn:
            conn.execute(sa.update(ChainView).values(best_height=1))
        assert len(proof(ledger, last)["anchors"]) == 2
        # A new head waits for the interval since the last anchor transaction.
        mine_log(tmp_path / "log2", 3, {1: True})
        ingest(ledger, tmp_path / "log2", 1)
        assert settle_pending(ledger, scheme="pplns")
        assert await run(NOW_MS + 3_599_999) == []
        assert await run(NOW_MS + 3_600_000) == ["anchor_sent"]
        # Stuck unmined for the interval (its fee too low, say), it no longer counts: the
        # heads go out again.
        assert await run(NOW_MS + 7_199_999) == []
        assert await run(NOW_MS + 7_200_000) == ["anchor_sent"]

    asyncio.run(scenario())


class EmptyWallet:
    """A bitcoind wallet holding no coin of the anchor address: it refuses every send."""

    async def send_anchor(
        self, script: bytes, *, address: str, change_script: bytes, fee_rate_sat_vb: int
    ) -> str:
        raise BitcoindError(f"the wallet holds no confirmed coin of {address}: fund it")

    async def tx_block(self, txid: str) -> str | None:
        return None


def test_a_found_block_bitcoind_cannot_give_back_holds_back_no_other(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    """A block on the chain whose bytes bitcoind cannot give back (as a pruned node; here a
    foreign simnet block, which the simnet keeps as a header only) is reported and skipped;
    the others' evidence is still read back."""
    mine_log(tmp_path / "log", 30, {25: True})
    ingest(ledger, tmp_path / "log", 0)
    assert settle_pending(ledger, scheme="pplns")
    net = simnet()
    credit = head(ledger)

    async def scenario() -> list[tuple[str, str | None]]:
        lost = net.mine_external_block().hash[::-1].hex()
        record_found_block(ledger, lost, 1, credit)
        found = await mine(net, credit=bytes.fromhex(credit))
        record_found_block(ledger, found, 2, credit)
        changes = await run_anchors(ledger, net, policy(None), NOW_MS)
        return sorted((a.event, a.block_hash) for a in changes)

    changes = asyncio.run(scenario())
    [recorded] = anchors_blocks(ledger)
    assert [e for e, _b in changes] == ["anchor_evidence_unavailable", "anchor_recorded"]
    assert changes[1][1] == recorded != changes[0][1]


def anchors_blocks(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [b for (b,) in conn.execute(sa.select(ChainAnchor.block_hash))]


def test_a_wallet_that_cannot_send_is_reported(ledger: sa.Engine, tmp_path: Path) -> None:
    mine_log(tmp_path / "log", 30, {25: True})
    ingest(ledger, tmp_path / "log", 0)
    assert settle_pending(ledger, scheme="pplns")
    changes = asyncio.run(run_anchors(ledger, simnet(), policy(EmptyWallet()), NOW_MS))
    assert [(a.event, a.error) for a in changes] == [
        ("anchor_send_failed", "the wallet holds no confirmed coin of the anchor address: fund it")
    ]
    assert anchors(ledger) == []


def test_the_scheduler_reports_a_refusal_and_asks_again_a_minute_later(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    from poold.events import EventHub
    from poold.ledger.scheduler import LedgerScheduler
    from poold.metrics import Metrics
    from tests.helpers import make_config

    mine_log(tmp_path / "log", 30, {25: True})
    ingest(ledger, tmp_path / "log", 0)
    assert settle_pending(ledger, scheme="pplns")
    clock = [float(NOW)]
    metrics = Metrics()
    scheduler = LedgerScheduler(
        make_config(tmp_path, anchors={"enabled": True}),
        simnet(),
        metrics,
        EventHub(),
        lambda: clock[0],
        anchor_wallet=EmptyWallet(),
    )
    asyncio.run(scheduler.anchor(ledger))
    assert metrics.anchor_failures == 1
    assert "fund it" in scheduler.readiness()["anchors"]
    clock[0] += 59
    asyncio.run(scheduler.anchor(ledger))
    assert metrics.anchor_failures == 1  # not asked again yet
    clock[0] += 1
    asyncio.run(scheduler.anchor(ledger))
    assert metrics.anchor_failures == 2
