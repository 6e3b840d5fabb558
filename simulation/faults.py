"""A deterministic, seeded fault simulation of the share path (in the spirit of TigerBeetle's VOPR).

One seed draws a whole run: miners and what they submit (good, duplicate, stale shares, some of
them blocks), a simnet chain on a fake clock, and faults — the share log's disk filling up and
freeing again, short writes, fsync errors, database cuts at any SQL statement of ingest,
settlement or block following, node RPC errors (a submission whose answer is lost after the
node took the block included) and slow answers, reorgs that take our blocks off the chain and
bring them back, and kill -9 of the daemon at any step (a torn frame left on disk, unsent
replies lost). The real components run: `Session`, `ShareWriter`, `ShareLog`, `ingest`,
`settle_pending`, `follow_blocks`, `replay`, `verify`, on a SQLite ledger in a temporary
directory. Only the clock, the disk's syscalls, the database's statements and the node's
answers are steered.

After the run every fault is healed and the ledger is brought up to date; then the invariants
are checked: every share answered `true` is in the log and in the ledger exactly once, no share
is in the log twice, every block record is in the ledger once, every accepted block is settled
once, every block of ours on the final chain is credited and every one off it (at depth) is
reversed, the journal balances (`verify`), `replay` agrees with the ledger, and no session,
address or job registry holds more than its bound. A failing seed prints itself and replays exactly
(`poold sim --seed N`). Must not be imported by the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import random
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import bech32m
import orjson
from sqlalchemy import delete, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from poold.bitcoind.client import BitcoindError, WalletTx
from poold.bitcoind.simnet import SimNet
from poold.bitcoind.submitter import block_record, submit_outcome
from poold.chain.address import Network
from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.jobs.template import parse_template
from poold.ledger import journal
from poold.ledger.db import LedgerError, open_ledger
from poold.ledger.ingest import ingest
from poold.ledger.maturity import COINBASE_MATURITY_BLOCKS, follow_blocks
from poold.ledger.models import Block, LedgerLock, Payout, PayoutItem, Settlement, ShareSlice
from poold.ledger.payouts import PayoutError, owed, run_payouts
from poold.ledger.replay import replay
from poold.ledger.settle import balances, settle_pending, verify
from poold.metrics import Metrics
from poold.shares.accepted import AcceptedShare
from poold.shares.log import ShareLog, ShareLogError, read_log, segment_path
from poold.shares.writer import ShareWriter
from poold.stratum import protocol as p
from poold.stratum.extranonce import EXTRANONCE1_SIZE, ExtranoncePool
from poold.stratum.session import Session, SessionPolicy, WorkerQuota
from poold.stratum.vardiff import VardiffConfig

#: Fault kinds a run may draw (each seed draws its own mix and rates).
FAULTS = (
    "enospc",
    "short_write",
    "fsync_error",
    "db_cut",
    "db_slow",
    "db_race",
    "kill9",
    "bitcoind_error",
    "reorg",
    "wallet_fault",
)
NODE_ID = 0
START_S = 1_800_000_000.0


class SimDisk:
    """The share log's syscalls with faults: a full disk (until freed), a short write that is
    followed by ENOSPC, fdatasync errors."""

    def __init__(self) -> None:
        self.full = False
        self.short_next = 0  # write this many bytes of the next write, then the disk is full
        self.fsync_fails = 0
        self.faults: Counter[str] = Counter()

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        if self.short_next:
            n = os.write(fd, bytes(data[: self.short_next]))
            self.short_next, self.full = 0, True
            self.faults["short_write"] += 1
            return n
        if self.full:
            self.faults["enospc"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    def fdatasync(self, fd: int) -> None:
        if self.fsync_fails:
            self.fsync_fails -= 1
            self.faults["fsync_error"] += 1
            raise OSError(errno.EIO, "Input/output error")
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self.fdatasync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)


class SimDatabase:
    """Cuts the ledger's connection at a drawn SQL statement (as an outage or a kill -9 of the
    database would): the statement raises, its transaction rolls back."""

    def __init__(self, engine: Engine, sim: Simulation) -> None:
        self.sim = sim
        self.rng = sim.rng
        self.cut_rate = 0.0  # chance that any one statement fails while armed
        self.slow_rate = 0.0  # chance that any one statement takes seconds (the clock moves)
        # Chance that an INSERT meets a unique-key violation, as when another writer took the
        # same key first. (The row it names is not there: what this tests is that every such
        # path leaves nothing half-done and is tried again, not what the winner wrote.)
        self.race_rate = 0.0
        self.cuts = 0
        self.slow = 0
        self.races = 0
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if (
            self.race_rate
            and statement.lstrip()[:6].upper() == "INSERT"
            and self.rng.random() < self.race_rate
        ):
            self.races += 1
            # As SQLite words a unique-key violation (another process inserted the key first):
            # only that may be read as "done already", never any other broken constraint.
            raise IntegrityError(
                "statement", {}, sqlite3.IntegrityError("UNIQUE constraint failed: simulated race")
            )
        if self.slow_rate and self.rng.random() < self.slow_rate:
            self.slow += 1
            self.sim.now += self.rng.uniform(0.5, 20)
        if self.cut_rate and self.rng.random() < self.cut_rate:
            self.cuts += 1
            raise OperationalError("statement", {}, ConnectionError("simulated database cut"))


class SimBitcoind:
    """The simnet behind a flaky RPC link: errors (a submission's answer may be lost after the
    node took the block) and slow answers (the fake clock moves while we wait)."""

    def __init__(self, net: SimNet, sim: Simulation) -> None:
        self.net, self.sim = net, sim
        self.error_rate = 0.0
        self.errors = 0

    def _trouble(self) -> None:
        rng = self.sim.rng
        if rng.random() < 0.1:
            self.sim.now += rng.uniform(1, 30)  # a slow answer
        if self.error_rate and rng.random() < self.error_rate:
            self.errors += 1
            raise BitcoindError("simulated RPC failure")

    async def submit_block(self, block_hex: str) -> str | None:
        self._trouble()
        reason = await self.net.submit_block(block_hex)
        self._trouble()  # the node took it, and then the answer was lost
        return reason

    async def block_confirmations(self, block_hash: str) -> int:
        self._trouble()
        return await self.net.block_confirmations(block_hash)

    async def tip_height(self) -> int:
        self._trouble()
        return await self.net.tip_height()

    async def get_template(self) -> dict[str, object]:
        return self.net.template()

    async def best_block_hash(self) -> str:
        return await self.net.best_block_hash()

    async def block_fees(self, height: int) -> tuple[str, int]:
        return await self.net.block_fees(height)

    async def raw_block(self, block_hash: str) -> bytes:
        self._trouble()
        return await self.net.raw_block(block_hash)

    async def close(self) -> None:
        return None


class SimKilled(Exception):
    """The daemon died right here (raised from a fault point; the run goes on as a restart)."""


class SimWallet:
    """The node wallet, with the faults that matter for paying twice: no answer before the
    send, the answer lost after it, and a kill -9 right after it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.fault_rate = 0.0
        self.faults = 0
        self.sends: list[tuple[str, str, dict[str, int]]] = []  # (comment, txid, outputs)

    async def send_many(self, outputs: Mapping[str, int], comment: str) -> str:
        fault = self.fault_rate and self.rng.random() < self.fault_rate
        kind = self.rng.choice(("before", "lost", "killed")) if fault else None
        if kind == "before":
            self.faults += 1
            raise BitcoindError("simulated wallet timeout before the send")
        txid = f"{len(self.sends) + 1:064x}"
        self.sends.append((comment, txid, dict(outputs)))
        if kind is not None:
            self.faults += 1
            if kind == "lost":
                raise BitcoindError("simulated wallet timeout after the send")
            raise SimKilled("killed right after sendmany")
        return txid

    async def find_sent(self, comment: str, since_s: int) -> str | None:
        return next((t for c, t, _o in self.sends if c == comment), None)

    async def wallet_tx(self, txid: str) -> WalletTx:
        return WalletTx(txid, 1, 100)


@dataclass
class SimReport:
    seed: int
    steps: int = 0
    acked: int = 0
    refused: int = 0
    logged: int = 0
    in_ledger: int = 0
    blocks: int = 0
    settled: int = 0
    kills: int = 0
    paid_sat: int = 0
    unrecorded: int = 0  # blocks on the chain whose record died in memory (see README)
    faults: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return (
            f"seed {self.seed}: {self.steps} steps, {self.acked} acknowledged, {self.refused} "
            f"refused, {self.logged} logged, {self.in_ledger} in the ledger, {self.blocks} "
            f"blocks ({self.settled} settled, {self.unrecorded} lost in memory at a kill -9), "
            f"{self.paid_sat} sat paid, "
            f"faults: {faults} — {verdict}"
        )


class _Miner:
    def __init__(self, name: str) -> None:
        self.name = name
        # The account is a regtest address, so matured credits can be paid out to it.
        program = hashlib.new("ripemd160", hashlib.sha256(name.encode()).digest()).digest()
        self.address = bech32m.encode("bcrt", 0, list(program))
        self.session: Session | None = None
        self.req = 0
        self.sent: list[tuple[int, tuple[str, int, int]]] = []  # (request id, share key)


class Simulation:
    def __init__(self, seed: int, directory: Path, *, steps: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.steps = steps
        self.now = START_S
        self.report = SimReport(seed)
        rng = self.rng
        # Each seed its own mix: some runs are calm, some are storms.
        self.rates = {kind: rng.choice((0.0, 0.01, 0.03, 0.08)) for kind in FAULTS}
        self.net = SimNet(difficulty=Fraction(1, 2**26), tx_count=2, clock=lambda: self.now)
        self.bitcoind = SimBitcoind(self.net, self)
        self.orphan_depth = rng.randint(1, 3)
        self.reorgs = 0
        self.jobs = JobManager(CoinbaseSpec(b"\x51", b"/sim/", EXTRANONCE1_SIZE, 4))
        self.policy = SessionPolicy(
            start_difficulty=Fraction(1, 2**32),
            vardiff=VardiffConfig(10, 600, 0.3, Fraction(1, 2**32), Fraction(1, 2**32)),
            version_mask=0x1FFFE000,
            extranonce2_size=4,
            max_workers=4,
        )
        self.metrics = Metrics()
        self.extranonces = ExtranoncePool(NODE_ID)
        self.quota = WorkerQuota(16)
        self.disk = SimDisk()
        self.log_dir = directory / "sharelog"
        self.engine = open_ledger(f"sqlite:///{directory / 'ledger.db'}", migrate_schema=True)
        self.db = SimDatabase(self.engine, self)
        self.found: list[tuple[AcceptedShare, str]] = []
        self.acked: set[tuple[str, int, int]] = set()
        self.handed_over: set[str] = set()  # accepted blocks whose record went to the writer
        self.unrecorded: set[str] = set()  # ... and were still held in memory at a kill -9
        self.miners = [_Miner(f"m{i}") for i in range(rng.randint(2, 5))]
        self.wallet = SimWallet(rng)
        self._start_daemon()

    # -- the "daemon": what a kill -9 throws away and a restart builds again ---------------------

    def _start_daemon(self) -> None:
        self.sharelog = ShareLog(self.log_dir, segment_bytes=8192, ops=self.disk)
        self.sharelog.open()
        self.writer = ShareWriter(
            self.sharelog, self.metrics, NODE_ID, lambda s, hex_: self.found.append((s, hex_))
        )
        for m in self.miners:
            m.session, m.sent = None, []

    def _kill9(self) -> None:
        """Everything in memory is gone: unflushed records, unsent replies. A write that was
        under way may leave a torn frame at the end of the segment."""
        self.report.kills += 1
        self.sharelog.abandon()
        if self.writer.held_blocks:  # found while the disk was full: which never got in?
            logged = {str(r["hash"]) for _p, r in read_log(self.log_dir) if r.get("t") == "block"}
            self.unrecorded |= self.handed_over - logged
        if self.rng.random() < 0.5:
            with segment_path(self.log_dir, self.sharelog.position.segment).open("ab") as fh:
                fh.write(self.rng.randbytes(self.rng.randint(1, 40)))
        for m in self.miners:
            if m.session is not None:
                m.session.release(self.now)
        self.found.clear()
        self._start_daemon()

    # -- miners ----------------------------------------------------------------------------------

    def _connect(self, m: _Miner) -> Session:
        s = Session(
            policy=self.policy,
            jobs=self.jobs,
            sink=self.writer,
            metrics=self.metrics,
            extranonces=self.extranonces,
            peer=m.name,
            now=self.now,
            quota=self.quota,
        )
        s.handle(p.Subscribe(1, "sim", None), self.now)
        for w in range(self.rng.randint(1, 6)):  # more than max_workers, sometimes
            s.handle(p.Authorize(2 + w, f"{m.address}.w{w}", "x"), self.now)
        s.outbox.clear()
        m.session, m.req = s, 100
        return s

    def _submit(self, m: _Miner) -> None:
        s = m.session or self._connect(m)
        job = self.jobs.current()
        if job is None:
            return
        rng = self.rng
        worker = rng.choice(list(s.workers) or ["nobody.w"])
        for _ in range(rng.randint(1, 8)):
            m.req += 1
            nonce = rng.getrandbits(32)
            if m.sent and rng.random() < 0.1:  # a retransmit: must be a duplicate
                nonce = m.sent[-1][1][2]
            job_id = job.job_id if rng.random() > 0.05 else "stale"
            key = (s.extranonce1.hex(), int(job.ntime), nonce)
            s.submit(p.Submit(m.req, worker, job_id, bytes(4), job.ntime, nonce, None), self.now)
            m.sent.append((m.req, key))

    def _deliver(self) -> None:
        """End of a loop iteration: the writer writes, then replies go out (server order)."""
        self.writer.flush()
        for m in self.miners:
            s = m.session
            if s is None:
                continue
            keys = dict(m.sent)
            for raw in s.outbox:
                msg = orjson.loads(raw)
                rid = msg.get("id")
                if rid in keys and msg.get("method") is None:
                    if msg.get("result") is True:
                        self.acked.add(keys[rid])
                        self.report.acked += 1
                    elif msg.get("error") and msg["error"][0] == 20:
                        self.report.refused += 1
            s.outbox.clear()
            m.sent = []

    async def _blocks(self) -> None:
        for share, block_hex in self.found:
            outcome, reason = await submit_outcome(self.bitcoind, block_hex)
            ts_ms = int(share.time * 1000)  # as the daemon: the finding share's time
            self.writer.record_block(block_record(share, outcome, reason, ts_ms, NODE_ID))
            if outcome is not False:
                self.handed_over.add(share.verdict.block_hash_hex)
        if self.found:
            self.found.clear()
            self._new_job()

    def _new_job(self) -> None:
        self.jobs.new_job(parse_template(self.net.template()), self.now)

    # -- the ledger side -------------------------------------------------------------------------

    async def _ledger_pass(self) -> None:
        try:
            ingest(self.engine, self.log_dir, NODE_ID, batch_records=self.rng.randint(5, 200))
            closed_ms = int(self.now) // 60 * 60_000  # as the daemon: closed minutes only
            settle_pending(self.engine, found_before_ms=closed_ms)
            await follow_blocks(self.engine, self.bitcoind, orphan_depth=self.orphan_depth)
        except (LedgerError, BitcoindError):
            pass  # the next pass retries from the committed checkpoint

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> SimReport:
        rng, rates, disk = self.rng, self.rates, self.disk
        self._new_job()
        for step in range(self.steps):
            self.report.steps = step + 1
            self.now += rng.uniform(0.05, 3.0)
            if rng.random() < 0.25:  # a ledger pass, the daemon's: ingest, settle, follow
                await self._ledger_pass()
            # Faults start and end.
            if rng.random() < rates["enospc"]:
                disk.full = not disk.full
            if rng.random() < rates["short_write"]:
                disk.short_next = rng.randint(1, 60)
            if rng.random() < rates["fsync_error"]:
                disk.fsync_fails = rng.randint(1, 3)
            if rng.random() < rates["db_cut"] * 3:
                self.db.cut_rate = 0.0 if self.db.cut_rate else rng.choice((0.05, 0.3, 1.0))
            elif disk.full and rng.random() < 0.2:
                disk.full = False  # the operator frees space
            if rng.random() < rates["db_race"] * 3:
                self.db.race_rate = 0.0 if self.db.race_rate else rng.choice((0.05, 0.3))
            if rng.random() < rates["db_slow"] * 3:
                self.db.slow_rate = 0.0 if self.db.slow_rate else rng.choice((0.05, 0.3))
            if rng.random() < rates["bitcoind_error"] * 3:
                self.bitcoind.error_rate = (
                    0.0 if self.bitcoind.error_rate else rng.choice((0.1, 0.5))
                )
            if rng.random() < rates["reorg"]:
                self.reorgs += 1
                if rng.random() < 0.4 and self.net.readopt():
                    pass  # a branch we lost comes back
                else:
                    self.net.reorg(rng.randint(1, 4))
                self._new_job()
            # Miners, the writer, the group-commit fsync.
            for m in rng.sample(self.miners, rng.randint(1, len(self.miners))):
                self._submit(m)
                if rng.random() < 0.03 and m.session is not None:  # a reconnect
                    m.session.release(self.now)
                    m.session = None
            if rng.random() < rates["kill9"]:
                self._kill9()  # between accepting and answering: nothing was acknowledged
                continue
            self._deliver()
            await self._blocks()
            self.writer.flush()
            if rng.random() < 0.5:
                with contextlib.suppress(ShareLogError):  # the group-commit thread retries
                    self.sharelog.sync()
            if rng.random() < 0.02:
                self.net.mine_external_block()
                self._new_job()
            if rng.random() < rates["kill9"] / 2:
                self._kill9()  # after answering: what was acknowledged must survive
        return await self._finish()

    async def _payouts(self) -> None:
        """Every block of ours on the chain matures; then payout runs under wallet and database
        faults (each ends as the daemon would: an error, or killed), then clean ones."""
        for _ in range(COINBASE_MATURITY_BLOCKS):
            self.net.mine_external_block()
        await self._ledger_pass()
        rng = self.rng
        self.wallet.fault_rate = self.rates["wallet_fault"] * 10
        self.db.cut_rate = rng.choice((0.0, 0.02))
        self.db.race_rate = rng.choice((0.0, 0.1)) if self.rates["db_race"] else 0.0
        for _ in range(rng.randint(1, 4)):
            with contextlib.suppress(PayoutError, SimKilled, LedgerError):
                await run_payouts(
                    self.engine,
                    self.wallet,
                    network=Network.REGTEST,
                    min_payout_sat=1,
                    max_outputs=rng.randint(1, 3),
                    send=True,
                )
            self.clear_lease()  # as a restart after kill -9 would find its holder dead
        self.wallet.fault_rate, self.db.cut_rate, self.db.race_rate = 0.0, 0.0, 0.0
        self.clear_lease()
        for _ in range(2):  # reconcile what was left open, pay the rest
            await run_payouts(
                self.engine,
                self.wallet,
                network=Network.REGTEST,
                min_payout_sat=1,
                max_outputs=3,
                send=True,
            )

    def clear_lease(self) -> None:
        with contextlib.suppress(OperationalError), self.engine.begin() as conn:
            conn.execute(delete(LedgerLock))

    async def _finish(self) -> SimReport:
        disk, report = self.disk, self.report
        disk.full, disk.short_next, disk.fsync_fails = False, 0, 0
        self.db.cut_rate = 0.0
        self.sharelog.sync()  # an fsync that works again clears the refusal
        self.writer.flush()
        self.sharelog.close()
        self.now += 120  # every minute closed
        self.bitcoind.error_rate = 0.0
        self.db.slow_rate = self.db.race_rate = 0.0
        for _ in range(4):
            await self._ledger_pass()
        await self._payouts()
        report.faults = disk.faults + Counter(
            {
                "db_cut": self.db.cuts,
                "kill9": report.kills,
                "bitcoind_error": self.bitcoind.errors,
                "reorg": self.reorgs,
                "db_slow": self.db.slow,
                "db_race": self.db.races,
                "wallet_fault": self.wallet.faults,
            }
        )
        self._check()
        self.engine.dispose()
        return report

    def _check(self) -> None:
        report, problems = self.report, self.report.problems
        shares = [r for _pos, r in read_log(self.log_dir) if r.get("t") == "share"]
        keys = Counter((str(r["en1"]), int(str(r["ntime"])), int(str(r["nonce"]))) for r in shares)
        report.logged = len(shares)
        twice = [k for k, n in keys.items() if n > 1]
        if twice:
            problems.append(f"{len(twice)} shares logged twice, e.g. {twice[0]}")
        lost = self.acked - keys.keys()
        if lost:
            problems.append(f"{len(lost)} acknowledged shares not in the log, e.g. {min(lost)}")
        with self.engine.connect() as conn:
            in_ledger = conn.execute(select(func.coalesce(func.sum(ShareSlice.shares), 0))).scalar()
            block_rows = conn.execute(
                select(Block.hash, Block.accepted, Block.status, Block.height)
            ).all()
            settlements = conn.execute(select(Settlement.key)).scalars().all()
        report.in_ledger = int(in_ledger or 0)
        if report.in_ledger != len(shares):
            problems.append(f"ledger holds {report.in_ledger} shares, the log {len(shares)}")
        logged_blocks = [r for _p, r in read_log(self.log_dir) if r.get("t") == "block"]
        hashes = Counter(h for h, *_rest in block_rows)
        report.blocks = len(block_rows)
        if {str(b["hash"]) for b in logged_blocks} != set(hashes) or max(
            hashes.values(), default=1
        ) > 1:
            problems.append("the ledger's blocks differ from the log's block records")
        accepted = {h for h, a, *_rest in block_rows if a}
        on_chain = {b.hash[::-1].hex() for b in self.net.blocks if not b.external}
        report.unrecorded = len(self.unrecorded)
        if on_chain - accepted != self.unrecorded & on_chain:
            problems.append(
                f"{len(on_chain - accepted)} blocks on the chain are not accepted in the ledger "
                f"({report.unrecorded} expected: held in memory at a kill -9)"
            )
        settled = Counter(k.split(":", 1)[1] for k in settlements if k.startswith("pplns:"))
        report.settled = sum(1 for h in accepted if settled[h] == 1)
        if report.settled != len(accepted):
            problems.append(f"{len(accepted) - report.settled} accepted blocks not settled once")
        # Credited exactly while the chain has it (or a reorg is still shallower than the depth).
        with self.engine.connect() as conn:
            open_credits = {h for h, *_ in block_rows if journal.open_pending(conn, h)}
        tip = self.net.height
        for h, _a, status, height in block_rows:
            credited = h in open_credits or status == "confirmed"
            deep = tip - height + 1 >= self.orphan_depth
            if h in on_chain and not credited:
                problems.append(f"block {h[:16]} is on the chain but not credited ({status})")
            elif h not in on_chain and deep and (credited or status == "pending"):
                problems.append(f"block {h[:16]} left the chain but is still {status}")
        self._check_payouts()
        if len(self.jobs) > 64:
            problems.append(f"the job registry holds {len(self.jobs)} jobs")
        problems.extend(f"verify: {v}" for v in verify(self.engine))
        rep = replay(self.engine, self.log_dir, NODE_ID, pool_fee=Fraction(0))
        problems.extend(f"replay: {v}" for v in rep.problems)
        for m in self.miners:
            if m.session is not None and len(m.session.workers) > self.policy.max_workers:
                problems.append(f"{m.name} holds {len(m.session.workers)} worker names")
        if self.quota.count > (self.quota.limit or 0):
            problems.append(f"the address quota holds {self.quota.count} names")

    def _check_payouts(self) -> None:
        """No payout sent twice; the wallet sent exactly what the ledger recorded as paid; no
        one is owed a negative amount."""
        report, problems = self.report, self.report.problems
        comments = Counter(c for c, _t, _o in self.wallet.sends)
        twice = [c for c, n in comments.items() if n > 1]
        if twice:
            problems.append(f"payouts sent twice: {twice}")
        sent: Counter[str] = Counter()
        for _c, _t, outputs in self.wallet.sends:
            sent.update(outputs)
        report.paid_sat = sum(sent.values())
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(PayoutItem.address, func.sum(PayoutItem.amount_sat))
                .join(Payout, Payout.id == PayoutItem.payout_id)
                .where(Payout.status.in_(("sent", "confirmed")))
                .group_by(PayoutItem.address)
            ).all()
        recorded = {a: int(v) for a, v in rows}
        if dict(sent) != recorded:
            problems.append(f"the wallet sent {dict(sent)}, the ledger recorded {recorded}")
        negative = {k: v for k, v in owed(self.engine).items() if v < 0}
        if negative:
            problems.append(f"accounts owed a negative amount: {negative}")
        spendable = {
            k: v
            for k, v in balances(self.engine).items()
            if journal.miner_of(k) is not None and v > 0
        }
        if spendable:
            problems.append(f"paid more than earned: {spendable}")


def simulate(seed: int, *, steps: int = 400, directory: Path | None = None) -> SimReport:
    """Run one seed; the same seed always draws the same run."""
    if directory is not None:
        return asyncio.run(Simulation(seed, directory, steps=steps).run())
    with tempfile.TemporaryDirectory(prefix=f"poold-sim-{seed}-") as tmp:
        return asyncio.run(Simulation(seed, Path(tmp), steps=steps).run())


def simulate_many(seeds: range, *, steps: int = 400) -> Iterator[SimReport]:
    for seed in seeds:
        yield simulate(seed, steps=steps)
