"""The proof of delivered hashrate with two Stratum daemons on one PostgreSQL ledger, their
share logs shipped to the real NATS JetStream, one simnet chain: a simulated fleet mines on
both; the leader mirrors the other node's log from the stream, builds that node's leaf file
there, and commits one work root over both nodes' leaves, whose work is the statement's
delivered TH·s (the fleet's shares on both nodes). Once the beacon is mined the sample is
published and `verify.py` says ok; every node then releases its leaves (the follower's own
keeper too, so its share-log retention is not held for ever)."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from poold.bitcoind.make import make_bitcoind
from poold.ledger.db import make_engine
from poold.ledger.models import StatementRoot, TokenPeriod
from poold.shares.log import read_log
from poold.tokens.settle import set_price
from poold.tokens.transfers import import_transfers, parse_records
from tests.helpers import PATIENCE_S, FakeClock, wait_for
from tests.ledger.conftest import PG_URL, fresh_pg_schema
from tests.shares.test_stream import NATS_URL, drop, stream_config
from tests.tokens.test_work_proof_daemon import PINNED, TOKENS, publish
from tests.verifier import check, mine

pytestmark = pytest.mark.slow


def fleet_work(log: Path, start: int, end: int) -> int:
    return sum(
        int(r["diff_num"]) * 2**32 // int(r["diff_den"])
        for _p, r in read_log(log)
        if r["t"] == "share" and r["account"] == "fleet" and start <= int(r["ts"]) // 1000 < end
    )


async def test_one_work_root_over_two_nodes(
    start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    import asyncio

    stream = stream_config()
    start = 1_800_000_000 // 60 * 60
    end = start + int(TOKENS["period_s"])
    clock = FakeClock(start)
    with fresh_pg_schema() as schema:
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        cfgs = [
            config_factory(
                stratum={"node_id": node, **PINNED},
                sharelog={"path": str(tmp_path / f"log{node}"), "fsync_interval_ms": 2},
                pool={"scheme": "fpps", "fpps_period_s": 5},
                ledger={
                    "url": url,
                    "ingest_interval_s": 0.3,
                    "ingest_open_minutes": True,
                    "auto_migrate": True,
                    "node_lease_s": 3600,
                    "node_wait_s": 3600,
                },
                tokens=TOKENS,
                anchors={"enabled": True, "interval_s": 60},
                bitcoind={"simnet_difficulty": "1/65536"},
                stream={
                    "url": NATS_URL,
                    "stream": stream.stream,
                    "subject": stream.subject,
                    "mirror_path": str(tmp_path / "mirror"),
                    # The test's clock runs ahead of the shipper's real rounds: no lag gate.
                    "max_lag_s": 3600,
                },
            )
            for node in (1, 2)
        ]
        net = make_bitcoind(cfgs[0].bitcoind, clock, cfgs[0].pool.network)
        try:
            first = await start_daemon(cfgs[0], clock=clock, bitcoind=net)
            second = await start_daemon(cfgs[1], clock=clock, bitcoind=net)
            daemons = [first.daemon, second.daemon]
            await wait_for(lambda: any(d.scheduler.metrics.leading() for d in daemons), "a leader")
            leader = next(d for d in daemons if d.scheduler.metrics.leading())
            other = next(d for d in daemons if d is not leader)
            engine = leader.ledger
            import_transfers(
                engine,
                parse_records([{"id": "m", "ts": start, "to": "alice", "amount": "5000000000"}]),
            )
            set_price(engine, start, Fraction(65000), cfgs[0].tokens)
            await mine(net)  # a block before the period: the first tip its shares build on
            fleets = []
            for rd in (first, second):
                host, port = rd.address
                fleets.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "poold",
                        "simulate",
                        "--url",
                        f"stratum+tcp://{host}:{port}",
                        "--miners",
                        "2",
                        "--duration",
                        str(PATIENCE_S),
                        "--account",
                        "fleet",
                        stdout=asyncio.subprocess.DEVNULL,
                    )
                )
            for second_ in range(start + 1, end + TOKENS["settle_delay_s"] + 2):
                seen = [d.metrics.shares_accepted for d in daemons]
                await wait_for(
                    lambda seen=seen: all(
                        d.metrics.shares_accepted > n for d, n in zip(daemons, seen, strict=True)
                    ),
                    "a share on both nodes this second",
                )
                if second_ == start + 30:
                    await mine(net)  # a block in the period: a second tip
                clock.now_s = second_
            for fleet in fleets:
                fleet.terminate()
                await fleet.wait()
            # The leader settles (the lease is taken on the real clock: under load it may have
            # moved to the other daemon since).
            await wait_for(
                lambda: any(d.token_periods for d in daemons), "a leader to settle the period"
            )
            leader = next(d for d in daemons if d.token_periods)
            other = next(d for d in daemons if d is not leader)
            check_engine = make_engine(url)
            with check_engine.connect() as conn:
                inputs = json.loads(conn.execute(sa.select(StatementRoot.inputs)).scalar_one())
                delivered = Fraction(
                    conn.execute(sa.select(TokenPeriod.delivered_th_per_s)).scalar_one()
                )
            # The root's work is the fleet's work of the period on both nodes' share logs.
            works = [fleet_work(c.sharelog.path, start, end) for c in cfgs]
            assert all(w > 0 for w in works) and inputs["work"] == sum(works)
            assert delivered * (end - start) == Fraction(sum(works), 10**12)
            # The other node's leaves were built from the leader's mirror of its log.
            mirrored = leader.scheduler.work_dirs[other.cfg.stratum.node_id]
            assert (
                mirrored
                == cfgs[0].stream.mirror_path / f"node-{other.cfg.stratum.node_id}" / "work"
            )

            doc = await publish(check_engine, net, clock, start)
            lines = check(doc, now=end).lines
            assert lines[0].startswith("ok: 12/12 valid: with 99 % confidence at least"), lines
            assert lines[1] == (
                "delivered: the statement's delivered TH·s equals the root's work exactly"
            )
            # Every node lets its leaves go: the leader's own and its mirror's at the cut,
            # the follower's own keeper once it reads that the sample is published.
            leaf_files = [c.sharelog.path / "work" / f"leaves-{start}.bin" for c in cfgs]
            leaf_files.append(mirrored / f"leaves-{start}.bin")
            await wait_for(
                lambda: not any(f.exists() for f in leaf_files), "every node to release its leaves"
            )
            assert all(d.leaves is not None and start not in d.leaves.held for d in daemons)
            check_engine.dispose()
            for rd in (second, first):
                await rd.shutdown()
        finally:
            await drop(stream)
