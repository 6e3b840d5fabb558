"""FPPS through the daemon on the real regtest node: every share there is over the network
difficulty (bits 207fffff), so each must be credited exactly one block's value, never more.
Each booking's lines equal floor(shares x (subsidy + average fees) x (1 - fee) + carried in),
every miner's proof passes the standalone verifier, and the pool pays no more than the shares
it counted are worth (before the cap, one minute booked 4.26 M BTC to one miner)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from poold.ledger.credit_proofs import credit_proof
from poold.ledger.db import make_engine
from poold.ledger.models import CreditRoot
from simulation.fleet import FleetStats, run_fleet
from tests.helpers import PATIENCE_S, wait_for
from tests.verifier import check

pytestmark = pytest.mark.regtest
FEE = Fraction(1, 100)


async def test_no_fpps_booking_pays_more_than_a_block_per_share(
    bitcoind, node_rpc, start_daemon, config_factory, tmp_path: Path
) -> None:
    address = await node_rpc.call("getnewaddress")
    cfg = config_factory(
        bitcoind={
            "kind": "rpc",
            "url": bitcoind.url,
            "user": "u",
            "password": "p",
            "poll_interval_s": 0.1,
        },
        pool={
            "network": "regtest",
            "payout_address": address,
            "scheme": "fpps",
            "fee": "1/100",
            "fpps_period_s": 1,
        },
        stratum={"start_difficulty": "1/65536", "min_difficulty": "1/65536"},
        ledger={
            "url": f"sqlite:///{tmp_path / 'ledger.db'}",
            "ingest_interval_s": 0.2,
            "ingest_open_minutes": True,
            "auto_migrate": True,
        },
    )
    rd = await start_daemon(cfg)
    host, port = rd.address
    stats = FleetStats()
    await run_fleet(
        f"stratum+tcp://{host}:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        stats=stats,
        until=lambda s: s.accepted >= 20,
    )
    assert stats.accepted
    engine = make_engine(cfg.ledger.url)

    def booked_shares() -> int:
        with engine.connect() as conn:
            lines = conn.execute(sa.select(CreditRoot.lines)).scalars().all()
        return sum(int(v["shares"]) for doc in lines for v in json.loads(doc).values())

    # Every accepted share reaches a booking (the daemon books every second).
    await wait_for(lambda: booked_shares() >= stats.accepted, "every share booked")
    await rd.shutdown()
    with engine.connect() as conn:
        roots = conn.execute(sa.select(CreditRoot).order_by(CreditRoot.id)).all()
    assert roots
    carry: dict[str, Fraction] = {}
    for root in roots:
        inputs, lines = json.loads(root.inputs), json.loads(root.lines)
        block = (inputs["subsidy_sat"] + Fraction(inputs["avg_fees_sat"])) * (1 - FEE)
        assert inputs["subsidy_sat"] == 5_000_000_000  # regtest, below the first halving
        for account, line in lines.items():
            value = block * line["shares"] + carry.get(account, Fraction(0))
            assert Fraction(line["score"]) == line["shares"]  # each share: one block exactly
            assert line["credit_sat"] == value.numerator // value.denominator
            assert line["credit_sat"] <= block * line["shares"] + 1
            carry[account] = value - line["credit_sat"]
            with engine.connect() as conn:
                doc = credit_proof(conn, account, root.reference)
            assert doc is not None
            check(doc)
        assert inputs["booked_sat"] <= block * sum(v["shares"] for v in lines.values()) + len(lines)
    engine.dispose()
