"""Several daemons on one ledger: heartbeats and watermarks, closed-minute ingest, node
registration and leases, one leader (issue 13's defects 1-5, each a test that failed before).

Two "daemons" here are two LedgerSchedulers with share logs of their own, on one ledger; the
real-process, real-node version is tests/e2e/test_three_daemons.py."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from accounting import reference
from poold.bitcoind.simnet import SimNet
from poold.events import EventHub
from poold.ledger import nodes
from poold.ledger.ingest import ingest
from poold.ledger.leader import Leadership
from poold.ledger.models import Account, ShareSlice
from poold.ledger.scheduler import LedgerScheduler
from poold.ledger.settle import exclusions, settle_pending
from poold.ledger.slices.window import window_shares
from poold.metrics import Metrics
from poold.shares.format import encode_share
from poold.shares.log import ShareLog, ShareLogError, read_log
from poold.shares.writer import ShareWriter
from poold.stratum import protocol as p
from tests.helpers import make_config
from tests.ledger.test_prop_solo import journal_credits
from tests.ledger.test_settle import BITS, T0
from tests.stratum.test_session import NOW, jobs, make_session

__all__ = ["jobs"]

MIN = 60_000
REWARD = 5_000_000_000
DIFF = Fraction(1, 2**33)


def write(path: Path, node: int, records: list[tuple[Any, ...]]) -> None:
    """Append records: ("share", ts_ms, account) / ("beat", ts_ms, through_ms[, final]) /
    ("block", ts_ms, account, hash)."""
    log = ShareLog(path)
    log.open()
    for rec in records:
        if rec[0] == "share":
            _, ts, account = rec
            log.append_payload(
                encode_share(
                    ts, node, account, "rig", "1", 100, BITS, DIFF.numerator, DIFF.denominator,
                    bytes((node, 0, 0, 1)), ts.to_bytes(8, "big")[-4:], 1, ts & 0xFFFF,
                    0x20000000, False,
                )
            )  # fmt: skip
        elif rec[0] == "beat":
            final = rec[3] if len(rec) > 3 else False
            log.append({"t": "beat", "ts": rec[1], "node": node, "through": rec[2], "final": final})
        else:
            _, ts, account, h = rec
            log.append(
                {
                    "t": "block", "ts": ts, "node": node, "height": 100, "hash": h,
                    "accepted": True, "reason": None, "account": account, "worker": "rig",
                    "reward_sat": REWARD, "bits": BITS,
                }
            )  # fmt: skip
    log.flush()
    log.close()


def shares(account: str, first_minute: int, last_minute: int, per_minute: int) -> list[Any]:
    return [
        ("share", T0 + m * MIN + k * 1000, account)
        for m in range(first_minute, last_minute + 1)
        for k in range(per_minute)
    ]


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def scheduler(tmp_path: Path, url: str, node_id: int, clock: Clock, **ledger: Any) -> Any:
    cfg = make_config(
        tmp_path,
        stratum={"node_id": node_id},
        sharelog={"path": str(tmp_path / f"log{node_id}")},
        ledger={"url": url, "auto_migrate": True, **ledger},
    )
    node = SimNet(difficulty=Fraction(1, 64))
    return LedgerScheduler(
        cfg,
        node,
        Metrics(),
        EventHub(),
        clock,
        log_id=lambda: f"log-{node_id}",
        host=f"test:{node_id}",
    )


def rule_over_final_ledger(
    engine: sa.Engine, found_ms: int, fee: Fraction, reward: int = REWARD, key: str = ""
) -> tuple[Any, ...]:
    """PPLNS (factor 2) of the block over every slice the ledger holds at the end, by the
    reference rule (`window.window_shares`, `reference.pplns`); less, for a settlement made
    without a lapsed node (`key`), what that node brought in afterwards."""
    with engine.connect() as conn:
        excl = exclusions(conn, key)
        rows = [
            (int(t), a, w, int(b), Fraction(int(n), int(d)))
            for sid, nid, t, a, w, b, n, d in conn.execute(
                sa.select(
                    ShareSlice.id,
                    ShareSlice.node_id,
                    ShareSlice.slice_start,
                    ShareSlice.account_id,
                    ShareSlice.worker_id,
                    ShareSlice.bits,
                    ShareSlice.diff_num,
                    ShareSlice.diff_den,
                )
            )
            if not (nid in excl and sid > excl[nid][0])
        ]
        names = dict(conn.execute(sa.select(Account.id, Account.name)).all())
    credits, fee_sat, unallocated, _ = reference.pplns(
        reward, window_shares(rows, found_ms, names), Fraction(2), fee
    )
    return {a: c for a, c in credits.items() if c}, fee_sat, unallocated


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
async def test_a_block_waits_for_the_lagging_node_and_pays_its_miners(
    ledger_url: str, tmp_path: Path
) -> None:
    """Defect 1: node 1 (alice, who found the block) is ingested past the block's minute;
    node 2 (bob) is not yet. Nothing settles until node 2's watermark passes the minute, and
    then bob is paid as the rule over the final ledger says. Node 2, not the leader, never
    settles and never follows blocks (defect 4: its node does not know the block)."""
    clock = Clock(T0 + 20 * MIN)
    write(
        tmp_path / "log1",
        1,
        [*shares("alice", 0, 5, 3), ("block", T0 + 5 * MIN + 2500, "alice", "ab" * 32)],
    )
    write(tmp_path / "log1", 1, [("beat", T0 + 6 * MIN, T0 + 6 * MIN)])
    write(tmp_path / "log2", 2, [*shares("bob", 0, 2, 3), ("beat", T0 + 3 * MIN, T0 + 3 * MIN)])
    one = scheduler(tmp_path, ledger_url, 1, clock)
    two = scheduler(tmp_path, ledger_url, 2, clock)
    await one.attach()
    await two.attach()
    try:
        await one.run_pass()  # the leader: first to ask
        await two.run_pass()
        await one.run_pass()
        assert (one.metrics.leader, two.metrics.leader) == (1, 0)
        engine = one.ledger
        assert one.gate.through_ms == T0 + 3 * MIN  # node 2 holds it
        assert journal_credits(engine, "ab" * 32) == ({}, 0, 0)  # waits for node 2
        # Node 2 catches up: bob's shares of minutes 3..5 and a heartbeat past the block.
        write(tmp_path / "log2", 2, [*shares("bob", 3, 5, 3), ("beat", T0 + 6 * MIN, T0 + 6 * MIN)])
        await two.run_pass()
        await one.run_pass()
        got = journal_credits(engine, "ab" * 32)
        want = rule_over_final_ledger(engine, T0 + 5 * MIN + 2500, one.cfg.pool.fee)
        assert got == want and got[0].get("bob", 0) > 0
        # The follower's bitcoind knows nothing of the block: were it following blocks, the
        # credits would be reversed.
        await two.run_pass()
        assert journal_credits(engine, "ab" * 32) == want
    finally:
        await one.close(5)
        await two.close(5)
        await one.bitcoind.close()
        await two.bitcoind.close()


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
async def test_a_lapsed_node_is_waited_for_then_excluded_and_named(
    ledger_url: str, tmp_path: Path
) -> None:
    clock = Clock(T0 + 10 * MIN)
    write(
        tmp_path / "log1",
        1,
        [*shares("alice", 0, 5, 2), ("block", T0 + 5 * MIN, "alice", "cd" * 32)],
    )
    write(tmp_path / "log1", 1, [("beat", T0 + 6 * MIN, T0 + 6 * MIN)])
    write(tmp_path / "log2", 2, [*shares("bob", 0, 1, 2), ("beat", T0 + 2 * MIN, T0 + 2 * MIN)])
    one = scheduler(tmp_path, ledger_url, 1, clock, node_lease_s=30, node_wait_s=120)
    two = scheduler(tmp_path, ledger_url, 2, clock, node_lease_s=30, node_wait_s=120)
    await one.attach()
    await two.attach()
    try:
        await one.run_pass()
        await two.run_pass()  # node 2's last renewal: it dies here
        engine = one.ledger
        clock.ms += 60_000  # its lease lapsed 30 s ago: waited for
        write(tmp_path / "log1", 1, [("beat", clock.ms, clock.ms)])
        await one.run_pass()
        assert journal_credits(engine, "cd" * 32) == ({}, 0, 0)
        assert one.gate.waiting and "node 2" in one.gate.waiting[0]
        assert "node 2" in one.readiness()["nodes"]
        assert one.metrics.nodes[2][0] == "lapsed"
        clock.ms += 120_000  # past node_wait_s: settled without it, and said so
        write(tmp_path / "log1", 1, [("beat", clock.ms, clock.ms)])
        await one.run_pass()
        assert journal_credits(engine, "cd" * 32)[0]
        assert one.gate.excluded and "node 2" in one.gate.excluded[0]
        assert one.metrics.nodes[2][0] == "excluded"
        assert 'poold_node_ingest_lag_seconds{node="2",status="excluded"}' in (
            one.metrics.render_prometheus()
        )
    finally:
        await one.close(5)
        await two.close(5)
        await one.bitcoind.close()
        await two.bitcoind.close()


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_cleanly_stopped_node_holds_nothing_back(ledger_url: str, tmp_path: Path) -> None:
    """Node 2 started at minute 1 and stopped cleanly at minute 2 (its final heartbeat):
    a block of minute 5 settles at once, without waiting for node 2's lease to lapse."""
    clock = Clock(T0 + 1 * MIN)
    write(
        tmp_path / "log1",
        1,
        [*shares("alice", 0, 5, 2), ("block", T0 + 5 * MIN, "alice", "ef" * 32)],
    )
    write(tmp_path / "log1", 1, [("beat", T0 + 6 * MIN, T0 + 6 * MIN)])
    write(
        tmp_path / "log2", 2, [*shares("bob", 0, 1, 2), ("beat", T0 + 2 * MIN, T0 + 2 * MIN, True)]
    )
    one = scheduler(tmp_path, ledger_url, 1, clock)
    two = scheduler(tmp_path, ledger_url, 2, clock)
    await one.attach()
    await two.attach()
    try:
        await one.run_pass()  # the leader
        await two.run_pass()
        clock.ms = T0 + 10 * MIN
        await one.run_pass()
        assert journal_credits(one.ledger, "ef" * 32)[0]  # node 2 is stopped, not lagging
        assert one.gate.through_ms == T0 + 6 * MIN
        assert one.metrics.nodes[2][0] == "stopped"
    finally:
        await one.close(5)
        await two.close(5)
        await one.bitcoind.close()
        await two.bitcoind.close()


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
async def test_an_overlapping_node_id_is_refused(ledger_url: str, tmp_path: Path) -> None:
    """Defect 5: a second share log registering a node id already held is refused, naming
    the id and what to change; the holder goes on."""
    clock = Clock(T0)
    one = scheduler(tmp_path, ledger_url, 2, clock)
    await one.attach()
    other = scheduler(tmp_path / "other", ledger_url, 2, clock)
    (tmp_path / "other").mkdir()
    other.log_id = lambda: "another-log"
    try:
        with pytest.raises(nodes.NodeConflict, match=r"node id 2 belongs to another share log"):
            await other.attach()
        assert other.ledger is None
        await one.run_pass()  # its lease renews
    finally:
        await one.close(5)
        await one.bitcoind.close()
        await other.bitcoind.close()


def test_a_share_log_refuses_a_second_writer_and_another_node(tmp_path: Path) -> None:
    first = ShareLog(tmp_path, node_id=1)
    first.open()
    with pytest.raises(ShareLogError, match="in use by another process"):
        ShareLog(tmp_path, node_id=1).open()
    first.close()
    with pytest.raises(ShareLogError, match="belongs to node 1, but this daemon is node 2"):
        ShareLog(tmp_path, node_id=2).open()
    again = ShareLog(tmp_path, node_id=1)
    again.open()  # the lock went with the first writer
    assert again.log_id == first.log_id
    again.close()


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
def test_closed_minute_ingest_writes_each_minute_once(ledger_url: str, tmp_path: Path) -> None:
    """Defect 2: ingest every few seconds wrote a slice row per pass for the open minute.
    In closed-minute mode each (worker, minute) is one row, whatever the passes."""
    from poold.ledger.db import make_engine, migrate

    engine = make_engine(ledger_url)
    migrate(engine)
    log = tmp_path / "log"
    passes = 0
    for m in range(4):
        write(log, 0, [("beat", T0 + m * MIN, T0 + m * MIN)])  # the writer's minute beat
        for k in range(6):  # six ingest passes a minute, shares between them
            write(log, 0, [("share", T0 + m * MIN + k * 9000, a) for a in ("x", "y")])
            ingest(engine, log, 0, closed_only=True)
            passes += 1
    write(log, 0, [("beat", T0 + 4 * MIN, T0 + 4 * MIN)])
    done = ingest(engine, log, 0, closed_only=True)
    assert done.through_ms == T0 + 4 * MIN
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ShareSlice.slice_start, ShareSlice.shares)).all()
    assert len(rows) == 8  # 2 workers x 4 minutes, after 24 passes
    assert sum(r.shares for r in rows) == 48
    # Without the mode (the CLI on a stopped node's log) everything is written at once.
    write(log, 0, [("share", T0 + 4 * MIN + 1, "x")])
    assert ingest(engine, log, 0).shares == 1
    engine.dispose()


def test_one_leader_at_a_time_and_the_next_takes_over(ledger_url: str) -> None:
    """One lease row: one holder at a time; a holder that stops renewing (kill -9, a silent
    partition) loses it when its lease ends, and the next takes it with the epoch raised; a
    clean release hands it over at once."""
    from poold.ledger.db import make_engine, migrate
    from poold.ledger.leader import current

    now = [1000.0]
    engines = [make_engine(ledger_url) for _ in range(3)]
    migrate(engines[0])
    leaders = [
        Leadership(e, holder=f"d{i}", lease_s=10, clock=lambda: now[0], monotonic=lambda: now[0])
        for i, e in enumerate(engines)
    ]
    try:
        assert [x.hold() for x in leaders] == [True, False, False]
        assert leaders[0].epoch == 1 and leaders[0].taken
        now[0] += 5
        assert [x.hold() for x in leaders] == [True, False, False]  # renewed, same epoch
        assert leaders[0].epoch == 1 and not leaders[0].taken
        # Leader 0 goes silent: it stops leading by itself before its lease ends...
        now[0] += 8.5
        assert not leaders[0].leading()
        assert [x.hold() for x in leaders[1:]] == [False, False]  # ...and others wait for it
        now[0] += 2
        assert [x.hold() for x in leaders[1:]] == [True, False]
        assert leaders[1].epoch == 2 and current(engines[0])[:2] == (2, "d1")  # type: ignore[index]
        # The old leader comes back: it is told, and never leads with its old epoch again.
        assert leaders[0].hold() is False and leaders[0].epoch is None
        leaders[1].release()
        assert leaders[2].hold() is True and leaders[2].epoch == 3
    finally:
        for e in engines:
            e.dispose()


def test_the_writer_beats_before_each_new_minute_and_holds_at_unrecorded_blocks(
    jobs: Any, tmp_path: Path
) -> None:
    log = ShareLog(tmp_path)
    log.open()
    writer = ShareWriter(log, Metrics(), 3, lambda share, hex_: None)
    s = make_session(jobs, writer)  # type: ignore[arg-type]
    s.vardiff.reset(Fraction(1, 2**32), NOW)
    s.handle(p.Subscribe(1, "x", None), NOW)
    s.handle(p.Authorize(2, "acct.w", "x"), NOW)
    job = jobs.current()
    minute = int(NOW * 1000) // MIN * MIN
    times = [minute / 1000 + 1, minute / 1000 + 2, minute / 1000 + 61, minute / 1000 + 62]
    for n, t in enumerate(times):
        s.submit(p.Submit(10 + n, "acct.w", job.job_id, bytes(4), job.ntime, n, None), t)
    writer.flush()
    writer.unrecorded_since = lambda: minute + 61_500  # a block in flight since then
    writer.beat(minute + 2 * MIN + 5000)
    log.close()
    records = [r for _p, r in read_log(tmp_path) if r["t"] != "worker"]  # (agent, best share)
    kinds = [(r["t"], r.get("through")) for r in records]
    assert kinds == [
        ("beat", minute),  # the first share of the run starts a minute
        ("job", None),  # its job, logged once before its first share
        ("share", None),
        ("share", None),
        ("beat", minute + MIN),  # before the first share of the next minute
        ("share", None),
        ("share", None),
        ("beat", minute + 61_500),  # held at the block still in flight
    ]


def test_settlement_without_a_gate_is_unchanged(tmp_path: Path) -> None:
    """`settle_pending` called directly (tools, tests) is not gated: the gate is the
    scheduler's."""
    from poold.ledger.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    migrate(engine)
    write(
        tmp_path / "log",
        0,
        [*shares("alice", 0, 2, 2), ("block", T0 + 2 * MIN, "alice", "11" * 32)],
    )
    ingest(engine, tmp_path / "log", 0)
    assert [s.block_hash for s in settle_pending(engine)] == ["11" * 32]
    engine.dispose()


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_two_ingesters_adding_one_new_account_at_once_both_commit(ledger_url: str) -> None:
    """Defect 7: a second daemon inserting the same new account while the first's batch is
    open waited, then failed on the unique key and rolled its whole batch back."""
    import threading

    from poold.ledger.db import make_engine, migrate
    from poold.ledger.ingest import _Names

    engine = make_engine(ledger_url)
    migrate(engine)
    got: dict[str, Any] = {}

    def second() -> None:
        try:
            with engine.begin() as conn:
                got["b"] = _Names().resolve(conn, {("zed", "r1"), ("amy", "r2")})
        except Exception as exc:  # what the test reports
            got["error"] = exc

    with engine.begin() as conn:
        got["a"] = _Names().resolve(conn, {("zed", "r1")})
        t = threading.Thread(target=second)
        t.start()
        t.join(0.5)  # it waits on our uncommitted row
    t.join(10)
    assert "error" not in got, got.get("error")
    assert got["b"][("zed", "r1")] == got["a"][("zed", "r1")]
    engine.dispose()


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
def test_a_broken_constraint_is_not_read_as_already_posted(ledger_url: str) -> None:
    """Defect 7: only the idempotency key's uniqueness means "posted already"."""
    from poold.ledger import journal
    from poold.ledger.db import make_engine, migrate

    engine = make_engine(ledger_url)
    migrate(engine)
    lines = [(journal.pool("wallet"), 5), (journal.miner("a"), -5)]
    with engine.begin() as conn:
        journal.post(conn, kind="test", reference="r", key="k1", lines=lines)
    with pytest.raises(journal.AlreadyPosted), engine.begin() as conn:
        journal.post(conn, kind="test", reference="r", key="k1", lines=lines)
    with pytest.raises(journal.JournalError, match="refused by the ledger"), engine.begin() as conn:
        journal.post(conn, kind="test", reference="r", key=None, lines=lines)  # type: ignore[arg-type]
    engine.dispose()


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
async def test_an_fpps_period_waits_for_the_lagging_node(ledger_url: str, tmp_path: Path) -> None:
    """An FPPS period is booked once every node is ingested past its end, with every node's
    shares of the period in it."""
    clock = Clock(T0 + 10 * MIN)
    fpps = {"scheme": "fpps", "fpps_period_s": 60}
    write(tmp_path / "log1", 1, [*shares("alice", 0, 5, 2), ("beat", T0 + 6 * MIN, T0 + 6 * MIN)])
    write(tmp_path / "log2", 2, [*shares("bob", 0, 1, 2), ("beat", T0 + 2 * MIN, T0 + 2 * MIN)])
    one = scheduler(tmp_path, ledger_url, 1, clock)
    two = scheduler(tmp_path, ledger_url, 2, clock)
    for s in (one, two):
        s.cfg = s.cfg.model_copy(update={"pool": s.cfg.pool.model_copy(update=fpps)})
    await one.attach()
    await two.attach()
    try:
        await one.run_pass()
        await two.run_pass()
        await one.run_pass()
        engine = one.ledger
        with engine.connect() as conn:
            booked = conn.execute(sa.text("SELECT key FROM settlements")).scalars().all()
        assert booked == [f"fpps:{(T0 + 2 * MIN) // 1000}"]  # up to node 2's watermark only
        write(tmp_path / "log2", 2, [*shares("bob", 2, 5, 2), ("beat", T0 + 6 * MIN, T0 + 6 * MIN)])
        await two.run_pass()
        await one.run_pass()
        with engine.connect() as conn:
            booked = (
                conn.execute(sa.text("SELECT key FROM settlements ORDER BY key")).scalars().all()
            )
            unbooked = conn.execute(
                sa.text(
                    "SELECT count(*) FROM share_slices s WHERE s.id > coalesce("
                    "(SELECT slice_id FROM fpps_cursors c WHERE c.node_id = s.node_id), 0)"
                )
            ).scalar()
        assert booked[-1] == f"fpps:{(T0 + 6 * MIN) // 1000}" and unbooked == 0
    finally:
        await one.close(5)
        await two.close(5)
        await one.bitcoind.close()
        await two.bitcoind.close()


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
async def test_a_clean_stop_ingests_the_final_heartbeat(ledger_url: str, tmp_path: Path) -> None:
    """Shares of the last minute lie before the final heartbeat: closed-minute ingest stops
    at that minute's first heartbeat, so the daemon's last ingest (at close) reads everything,
    and the node reads as stopped at once instead of holding settlement for node_wait_s."""
    clock = Clock(T0 + 4 * MIN)  # started (registered) before it wrote anything
    write(
        tmp_path / "log1",
        1,
        [
            ("beat", T0 + 5 * MIN, T0 + 5 * MIN),
            *shares("alice", 5, 5, 4),
            ("beat", T0 + 5 * MIN + 30_000, T0 + 5 * MIN + 30_000, True),
        ],
    )
    one = scheduler(tmp_path, ledger_url, 1, clock)
    await one.attach()
    try:
        await one.ingest()  # closed minutes only: the final beat is not reached
        with one.ledger.connect() as conn:
            [state] = nodes.states(conn, now_ms=clock.ms, wait_ms=600_000)
        assert state.status == "live" and one.ingested_shares == 0
    finally:
        await one.close(5)  # the last ingest reads to the end
        await one.bitcoind.close()
    from poold.ledger.db import make_engine

    engine = make_engine(ledger_url)
    with engine.connect() as conn:
        [state] = nodes.states(conn, now_ms=clock.ms + 10**6, wait_ms=600_000)
    assert state.status == "stopped" and state.through_ms == T0 + 5 * MIN + 30_000
    engine.dispose()
