"""The seeded simulator for several daemons on one ledger (`poold sim --nodes N`).

Each seed draws a run of N stratum nodes writing their share logs as the share writer does
(shares, a heartbeat before each new minute and every step, blocks whose records may wait
while their submission is in flight, holding the heartbeats back), and the faults the issue
names, several at once: a node whose ingest lags, a node stopped (SIGSTOP) past its lease
but within `node_wait_s`, the leader killed (its leadership released, its passes stopped),
a clean stop and restart, and a host lost for good (its log's tail never ingested: waited
for, then excluded). Every node runs the real ingest (closed minutes), the real node
registration and lease renewal, the real leadership (an flock beside the SQLite ledger) and,
where it leads, the real gate and settlement, on a fake clock.

At the end every accepted block in the ledger must be settled once, its credits must equal
the scheme's rule over the final ledger (`window.window_shares` / `window.round_rows` with
`accounting.reference`), replay over every node's log and `verify` must pass. A failing seed
replays exactly. Imports the ledger and the share log; never Stratum or asyncio.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from accounting import reference
from poold.ledger import journal, leader, nodes
from poold.ledger.db import Deposed, Fence, fence_set, make_engine, migrate
from poold.ledger.ingest import ingest
from poold.ledger.leader import Leadership
from poold.ledger.models import (
    Account,
    Block,
    JournalLine,
    Settlement,
    ShareSlice,
)
from poold.ledger.replay import replay_nodes
from poold.ledger.settle import exclusions, settle_pending, verify
from poold.ledger.slices.window import minute_of, round_rows, window_shares
from poold.shares.format import Beat, BlockRecord, encode_share
from poold.shares.log import ShareLog

T0 = 1_800_000_000_000
BITS = 0x207FFFFF  # regtest: a window is a few shares
REWARD = 5_000_000_000
FEE = Fraction(1, 100)
LEASE_MS, WAIT_MS = 20_000, 90_000
NODE_FAULTS = (
    "lag",
    "pause",
    "leader_kill",
    "clean_stop",
    "host_lost",
    "in_flight",
    "partition",
    "deposed_resume",
)


@dataclass
class NodesReport:
    seed: int
    nodes: int
    steps: int = 0
    shares: int = 0
    blocks: int = 0
    settled: int = 0
    leaders: int = 0  # leadership changes
    refused: int = 0  # writes of a deposed epoch refused (as they must be)
    deposed_accepted: int = 0  # writes of a deposed epoch that went through (must be 0)
    faults: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems[:5])
        return (
            f"seed {self.seed}: {self.nodes} nodes, {self.steps} steps, {self.shares} shares, "
            f"{self.blocks} blocks ({self.settled} settled), {self.leaders} leadership "
            f"changes, {self.refused} deposed writes refused, {self.deposed_accepted} "
            f"accepted, faults: {faults} — {verdict}"
        )


class _Node:
    """One stratum node as its share writer and ledger scheduler would behave."""

    def __init__(self, sim: NodesSimulation, node_id: int) -> None:
        self.sim, self.node_id = sim, node_id
        self.dir = sim.root / f"log{node_id}"
        self.log: ShareLog | None = None
        self.minute = 0
        self.in_flight: list[tuple[int, int, BlockRecord]] = []  # (due step, found ms, record)
        self.paused_until = -1  # no passes, no writes (SIGSTOP) until this step
        self.lagging_until = -1  # writes, but no ingest
        self.stopped_until = -1  # cleanly stopped until this step
        self.lost = False
        # A pass cut off after it read and before it wrote (a silent partition, a pause), as
        # (fence, gate), resumed at `suspended_until`.
        self.suspended: tuple[Fence | None, nodes.Gate] | None = None
        self.suspended_until = -1
        self.runs = 0
        self.leadership = self._leadership()
        self.mined = 0

    def _leadership(self) -> Leadership:
        """A new process's view of the lease (each start is a new holder), on the run's clock."""
        self.runs += 1
        now_s = lambda: self.sim.now / 1000  # noqa: E731
        return Leadership(
            self.sim.engine,
            holder=f"sim node {self.node_id} run {self.runs}",
            lease_s=LEASE_MS / 1000,
            clock=now_s,
            monotonic=now_s,
        )

    def start(self, now: int) -> None:
        self.leadership = self._leadership()
        self.log = ShareLog(self.dir, node_id=self.node_id)
        self.log.open()
        self.minute = 0
        assert self.log.log_id is not None
        nodes.register(
            self.sim.engine,
            self.node_id,
            self.log.log_id,
            f"sim:{self.node_id}",
            now_ms=now,
            lease_ms=LEASE_MS,
        )

    def _through(self, ms: int) -> int:
        return min([ms] + [found for _due, found, _r in self.in_flight])

    def _beat(self, now: int, through: int, final: bool = False) -> None:
        assert self.log is not None
        self.log.append(Beat(now, self.node_id, through, final).to_json())

    def write(self, step: int, now: int, rng: random.Random) -> None:
        """A step of mining: shares, maybe a block, records coming back, a heartbeat."""
        assert self.log is not None
        for k in range(rng.randint(0, 4)):
            ts = now + k
            minute = ts // 60_000 * 60_000
            if minute > self.minute:  # the writer's heartbeat before a new minute
                self.minute = minute
                self._beat(ts, self._through(minute))
            account = rng.choice(self.sim.accounts)
            diff = Fraction(1, 2**33 + rng.randint(0, 7) * 2**30)
            is_block = rng.random() < self.sim.block_rate
            self.mined += 1
            self.log.append_payload(
                encode_share(
                    ts, self.node_id, account, f"rig{self.node_id}", "1", 100, BITS,
                    diff.numerator, diff.denominator, bytes((self.node_id, 0, 0, 1)),
                    self.mined.to_bytes(4, "big"), 1, self.mined & 0xFFFFFFFF, 0x20000000,
                    is_block,
                )
            )  # fmt: skip
            self.sim.report.shares += 1
            if is_block:
                self.sim.report.blocks += 1
                h = f"{self.node_id:02x}{self.sim.report.blocks:062x}"
                record = BlockRecord(
                    ts, self.node_id, 100, h, True, None, account, f"rig{self.node_id}",
                    REWARD, BITS,
                )  # fmt: skip
                if rng.random() < self.sim.rates["in_flight"]:
                    self.sim.report.faults["in_flight"] += 1
                    self.in_flight.append((step + rng.randint(1, 30), ts, record))
                else:
                    self.log.append(record.to_json())
        for item in [x for x in self.in_flight if x[0] <= step]:
            self.in_flight.remove(item)
            self.log.append(item[2].to_json())
        self._beat(now + 4, self._through(now + 4))  # every step, after what it wrote
        self.log.flush()

    def stop(self, now: int, final: bool) -> None:
        assert self.log is not None
        if final:
            for _due, _found, record in self.in_flight:  # a clean stop drains submissions
                self.log.append(record.to_json())
            self.in_flight = []
            self._beat(now, now, final=True)
            self.log.close()
        else:
            self.log.abandon()
        self.log = None
        self.suspended, self.suspended_until = None, -1  # a pass in flight dies with it
        if final:
            self.leadership.release()  # a kill -9 leaves its lease to end by itself

    def ledger_pass(self, step: int, now: int) -> None:
        """What the daemon's ledger scheduler does in one pass."""
        assert self.log is not None and self.log.log_id is not None
        engine = self.sim.engine
        if step > self.lagging_until:
            ingest(engine, self.dir, self.node_id, closed_only=True)
        nodes.renew(engine, self.node_id, self.log.log_id, now_ms=now, lease_ms=LEASE_MS)
        if not self.leadership.hold():
            return
        if self.leadership.taken:
            self.sim.report.leaders += 1
            # The worst moment for a cut-off leader to come back: right after another took
            # over, before the new leader has written anything.
            self.sim.heal_now(self)
        with engine.connect() as conn:
            gate = self.sim.gate(conn, now)
        fence = self.leadership.fence()
        cut = self.sim.cut_mid_pass(step, self, gate)
        if cut:
            self.suspended = (fence, gate)  # it read; its write waits on the cut-off link
            self.suspended_until = step + cut
            return
        self.settle(fence, gate)

    def resume(self) -> None:
        """The suspended pass goes on where it stopped: its write, with the fence it read under
        (another daemon may have taken over meanwhile: then the write must be refused)."""
        assert self.suspended is not None
        fence, gate = self.suspended
        self.suspended, self.suspended_until = None, -1
        if fence is not None and (leader.current(self.sim.engine) or (0,))[0] != fence.epoch:
            self.sim.report.faults["deposed_resume"] += 1
        self.settle(fence, gate)

    def settle(self, fence: Fence | None, gate: nodes.Gate) -> None:
        """The leader's writes under `fence`: refused whole when its epoch is over; one that
        goes through from an epoch that is over is the finding this checks for."""
        engine = self.sim.engine
        try:
            with fence_set(fence):
                settled = settle_pending(
                    engine,
                    pool_fee=FEE,
                    scheme=self.sim.scheme,
                    found_before_ms=gate.minute_ms(),
                    excluded_nodes=gate.excluded_nodes,
                )
        except Deposed:
            self.sim.report.refused += 1
            self.leadership.step_down()
            return
        epoch = (leader.current(engine) or (0,))[0]
        if fence is not None and settled and epoch != fence.epoch:
            self.sim.report.deposed_accepted += len(settled)
            self.sim.report.problems.append(
                f"node {self.node_id} settled {len(settled)} blocks with epoch {fence.epoch} "
                f"while epoch {epoch} leads"
            )


class NodesSimulation:
    def __init__(self, seed: int, root: Path, *, n_nodes: int = 3, steps: int = 200) -> None:
        self.seed, self.root, self.steps = seed, root, steps
        self.now = T0
        self.ending = False
        self.rng = random.Random(seed)
        self.report = NodesReport(seed, n_nodes)
        self.scheme = self.rng.choice(("pplns", "prop"))
        self.engine: Engine = make_engine(f"sqlite:///{root / 'ledger.db'}")
        migrate(self.engine)
        self.accounts = [f"a{i}" for i in range(self.rng.randint(2, 5))]
        self.block_rate = self.rng.choice((0.01, 0.03))
        self.rates = {k: self.rng.choice((0.0, 0.02, 0.05)) for k in NODE_FAULTS}
        self.rates["in_flight"] = self.rng.choice((0.0, 0.3))
        self.nodes = [_Node(self, i + 1) for i in range(n_nodes)]
        # How far settlement may go (a test may put a defect back here).
        self.gate: Callable[[Connection, int], nodes.Gate] = lambda conn, now: nodes.gate(
            conn, now_ms=now, wait_ms=WAIT_MS
        )

    def cut_mid_pass(self, step: int, node: _Node, gate: nodes.Gate) -> int:
        """Whether this pass is cut off after its reads, and for how many steps: a silent
        partition (the database link stays open and passes nothing: no renewal, no write) or
        a leader paused past its lease so that another takes over before it resumes. Only
        passes that have something to write are cut (the others would show nothing)."""
        rng, r = self.rng, self.rates
        if self.ending:
            return 0
        with self.engine.connect() as conn:
            settled = set(conn.execute(select(Settlement.key)).scalars())
            due = conn.execute(
                select(Block.hash).where(
                    Block.accepted.is_(True), Block.found_ms < gate.minute_ms()
                )
            ).scalars()
            if all(f"{self.scheme}:{h}" in settled for h in due):
                return 0
        # Passes with work are few (a block every few dozen steps): cut them often.
        if rng.random() < r["partition"] * 8:
            self.report.faults["partition"] += 1
            return rng.randint(1, 12)  # 1-60 s: shorter and longer than the lease
        if node.leadership.leading() and rng.random() < r["deposed_resume"] * 8:
            node.paused_until = step + LEASE_MS // 1000 + 1  # steps of 1-5 s: past the lease
            return node.paused_until - step + 1
        return 0

    def heal_now(self, new_leader: _Node) -> None:
        """Some suspended passes of other nodes resume at once (their link comes back)."""
        for n in self.nodes:
            if n is new_leader or n.suspended is None or n.log is None or n.lost:
                continue
            if self.rng.random() < 0.5:
                n.paused_until = -1
                n.resume()

    def _draw_faults(self, step: int, node: _Node, now: int) -> None:
        rng, r = self.rng, self.rates
        if rng.random() < r["lag"]:
            node.lagging_until = step + rng.randint(1, 8)
            self.report.faults["lag"] += 1
        if rng.random() < r["pause"]:  # past the lease, within node_wait_s (5 s steps)
            node.paused_until = step + rng.randint(1, (WAIT_MS - 10_000) // 5_000 // 2)
            self.report.faults["pause"] += 1
        if rng.random() < r["leader_kill"] and node.leadership.held:
            node.stop(now, final=False)  # kill -9: its lock goes with it
            node.stopped_until = step + rng.randint(1, 4)
            self.report.faults["leader_kill"] += 1
        elif rng.random() < r["clean_stop"]:
            node.stop(now, final=True)
            node.stopped_until = step + rng.randint(1, 10)
            self.report.faults["clean_stop"] += 1
        elif (
            rng.random() < r["host_lost"] / 4
            and not any(n.lost for n in self.nodes)
            and sum(not n.lost for n in self.nodes) > 1
        ):
            node.stop(now, final=False)
            node.lost = True  # its log's tail is gone with the host
            self.report.faults["host_lost"] += 1

    def run(self) -> NodesReport:
        now = T0
        for node in self.nodes:
            node.start(now)
        for step in range(self.steps):
            now += self.rng.randint(1, 5) * 1000
            self.now = now
            self.report.steps += 1
            for node in self.rng.sample(self.nodes, len(self.nodes)):
                if node.lost:
                    continue
                if node.log is None:
                    if step >= node.stopped_until:
                        node.start(now)
                    else:
                        continue
                if step <= node.paused_until:
                    continue
                node.write(step, now, self.rng)
                if node.suspended is not None:
                    if step < node.suspended_until:
                        continue  # its link is still silent: shares logged, nothing else
                    node.resume()
                node.ledger_pass(step, now)
                if node.log is not None:
                    self._draw_faults(step, node, now)
                self._one_leader(now)
        # The end: every node that is not lost runs until the last minute is closed and
        # settled; the lost one is waited for node_wait_s, then left out.
        self.ending = True  # every fault healed from here on
        for node in self.nodes:
            node.paused_until = node.lagging_until = -1
            if node.suspended is not None and not node.lost and node.log is not None:
                node.resume()
            node.suspended = None
        for _ in range(3):
            now += WAIT_MS // 2 + 60_000
            self.now = now
            for node in self.nodes:
                if node.lost:
                    continue
                if node.log is None:
                    node.start(now)
                node.write(self.steps, now, self.rng)
                node.in_flight, pending = [], node.in_flight
                for _due, _found, record in pending:
                    assert node.log is not None
                    node.log.append(record.to_json())
                    node.log.flush()
                node.ledger_pass(self.steps + 10, now)
            for node in self.nodes:
                if not node.lost:
                    node.ledger_pass(self.steps + 10, now)
        self.check()
        for node in self.nodes:
            if node.log is not None:
                node.stop(now, final=True)
        self.engine.dispose()
        return self.report

    def _one_leader(self, now: int) -> None:
        """Never two running daemons that believe they lead at once."""
        leading = [
            n.node_id
            for n in self.nodes
            if n.log is not None and not n.lost and n.leadership.leading()
        ]
        if len(leading) > 1:
            self.report.problems.append(f"nodes {leading} all lead at {now}")

    # -- the promises ------------------------------------------------------------------------

    def check(self) -> None:
        problems = self.report.problems
        with self.engine.connect() as conn:
            accepted = conn.execute(
                select(Block.hash, Block.found_ms, Block.reward_sat).where(Block.accepted.is_(True))
            ).all()
            keys = set(conn.execute(select(Settlement.key)).scalars())
            rows = [
                (int(sid), int(nid), (int(t), a, w, int(b), Fraction(int(n), int(d))))
                for sid, nid, t, a, w, b, n, d in conn.execute(
                    select(
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
            ]
            names = dict(conn.execute(select(Account.id, Account.name)).all())
            times = sorted(int(f) for _h, f, _r in accepted)
            for h, found_ms, reward in accepted:
                key = f"{self.scheme}:{h}"
                if key not in keys:
                    problems.append(f"block {h[:12]} found at {found_ms} is not settled")
                    continue
                self.report.settled += 1
                # What the settlement counted: every slice, less what nodes it was made
                # without brought in afterwards.
                excl = exclusions(conn, key)
                counted = [r for sid, nid, r in rows if not (nid in excl and sid > excl[nid][0])]
                want = self._rule(counted, names, times, int(found_ms), int(reward))
                got = self._journal(conn, key)
                if got != want:
                    problems.append(
                        f"block {h[:12]}: credits {got[0]} (fee {got[1]}, rest {got[2]}) but "
                        f"the rule over the final ledger says {want[0]} ({want[1]}, {want[2]})"
                    )
        for p in verify(self.engine):
            problems.append(f"verify: {p}")
        rep = replay_nodes(
            self.engine,
            [(n.dir, n.node_id) for n in self.nodes if n.dir.exists()],
            pool_fee=FEE,
        )
        problems += [f"replay: {p}" for p in rep.problems]

    def _rule(
        self,
        rows: list[Any],
        names: dict[int, str],
        times: list[int],
        found_ms: int,
        reward: int,
    ) -> tuple[dict[str, int], int, int]:
        if self.scheme == "prop":
            last = minute_of(found_ms)
            before = [t for t in times if t < last * 1000]
            after = minute_of(before[-1]) if before else None
            credits, fee, rest = reference.prop(
                reward, round_rows(rows, found_ms, after, names), FEE
            )
        else:
            credits, fee, rest, _ = reference.pplns(
                reward, window_shares(rows, found_ms, names), Fraction(2), FEE
            )
        return {a: c for a, c in credits.items() if c}, fee, rest

    @staticmethod
    def _journal(conn: Any, key: str) -> tuple[dict[str, int], int, int]:
        entry = conn.execute(select(Settlement.entry_id).where(Settlement.key == key)).scalar()
        lines = dict(
            conn.execute(
                select(JournalLine.account, JournalLine.amount_sat).where(
                    JournalLine.entry_id == entry
                )
            ).all()
        )
        credits = {
            miner: -int(v) for k, v in lines.items() if (miner := journal.miner_of(k)) is not None
        }
        return (
            {a: c for a, c in credits.items() if c},
            -int(lines.get(journal.pool("fee"), 0)),
            -int(lines.get(journal.pool("unallocated"), 0)),
        )


def simulate_nodes(seed: int, *, n_nodes: int = 3, steps: int = 200) -> NodesReport:
    """Run one seed of the several-daemons simulator; the same seed draws the same run."""
    with tempfile.TemporaryDirectory(prefix=f"poold-simnodes-{seed}-") as tmp:
        return NodesSimulation(seed, Path(tmp), n_nodes=n_nodes, steps=steps).run()
