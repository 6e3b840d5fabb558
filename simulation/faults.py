"""A deterministic, seeded fault simulation of one daemon (in the spirit of TigerBeetle's VOPR).

The daemon under test is built by `poold.daemon.Daemon`, the composition root the real daemon
uses, with four things injected: the clock (a fake one the run moves), the share log's disk
(`SimDisk`: a full disk, short writes, fsync errors), the database (every SQL statement of the
ledger may be cut, slowed or met by a unique-key race: `SimDatabase`) and bitcoind (`SimNet`, a
real block-checking private chain, behind a flaky link: `SimBitcoind`). Everything else is the
production object graph: miners talk to the real `StratumServer` through `MinerConnection`s on
in-memory transports (JSON lines in, replies out, written only after the share writer's
flush), found blocks go through the real `BlockSubmitter` (its answer may come late, or never:
a kill -9 while a submission is in flight), heartbeats come from the daemon's own
housekeeping round, and the ledger is driven by the real `LedgerScheduler.step` — ingest,
leadership, the settlement gate, block settlement (PPLNS, PROP or SOLO: the seed draws),
block following — with the worker's steps run in this process so the injected faults reach
them. Only the loops' timers are the simulation's: it decides when a miner submits, when
housekeeping and ledger passes run, when the group commit syncs, and when to kill -9.

One seed draws a whole run: miners and what they submit (good, duplicate, stale shares, some
of them blocks; reconnects; more worker names than allowed), the chain's own blocks and
reorgs, and the faults, each at its own rate. After the run every fault is healed and the
ledger is brought up to date; then the invariants are checked: every share answered `true` is
in the log and in the ledger exactly once, no share is in the log twice, every block record is
in the ledger once, the stream holds the log without a gap (checked after every step),
every accepted block is settled once, every block of ours on the final chain is credited and
every one off it (at depth) is reversed, no payout is sent twice and no account is paid more
than it earned, the journal balances (`verify`), `replay` agrees with the ledger, and no
session, address or job registry holds more than its bound. A failing seed
prints itself and replays exactly (`poold sim --seed N`). Never imported by the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import random
import secrets
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bech32m
import orjson
from sqlalchemy import delete, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from poold.bitcoind.client import BitcoindError, WalletTx
from poold.bitcoind.simnet import SimNet
from poold.chain.address import Network
from poold.config import Config, parse_config
from poold.daemon import Daemon
from poold.ledger import journal
from poold.ledger.db import LedgerError, Timeouts, open_ledger
from poold.ledger.maturity import COINBASE_MATURITY_BLOCKS
from poold.ledger.models import (
    Block,
    IngestCheckpoint,
    LedgerLock,
    Payout,
    PayoutItem,
    Settlement,
    ShareSlice,
)
from poold.ledger.payouts import PayoutError, owed, run_payouts
from poold.ledger.replay import replay
from poold.ledger.settle import balances, verify
from poold.ledger.worker import InlineLedger
from poold.shares.log import ShareLogError, fsync_dir, read_log, segment_path
from poold.shares.stream import StreamError, write_chunk
from poold.stratum.server import MinerConnection

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
    "late_answer",
    "reorg",
    "wallet_fault",
    "power_cut",
    "stream_down",
    "stream_empty",
    "dup_answer",
    "inflate_delivery",
)
SCHEMES = ("pplns", "prop", "solo")
#: One submission as the log records it: (extranonce1 hex, job id, ntime, nonce, time in ms).
ShareKey = tuple[str, str, int, int, int]
NODE_ID = 0
MAX_LAG_S = 8.0  # the sim's [stream] max_lag_s
#: Chance that a block submission's answer is lost after the node took the block, in every
#: run: a handful per run (and always for the first block the node takes), so reading
#: "unknown" as "refused" is found by design.
LOST_SUBMIT_ANSWER = 0.15
START_S = 1_800_000_000.0


class SimDisk:
    """The share log's syscalls with faults: a full disk (until freed), a short write that is
    followed by ENOSPC, fdatasync errors, and power cuts.

    For a power cut it keeps what a disk keeps: per file, the length its last fsync covered;
    per directory, the names its last fsync covered, and what a rename replaced until the
    directory is fsynced after it. `power_cut` throws the rest away: a rename not yet synced
    is undone (the old file is back, or the name is gone), a file whose directory entry was
    never synced is gone, every file is cut back to its synced length, and for a segment the
    first sector past it may survive torn (a prefix of what was written, its end
    overwritten). Faults (full disk, short writes, fsync errors) hit the segments only."""

    SECTOR = 512

    def __init__(self) -> None:
        self.full = False
        self.short_next = 0  # write this many bytes of the next write, then the disk is full
        self.fsync_fails = 0
        self.faults: Counter[str] = Counter()
        self._paths: dict[int, str] = {}  # fd -> the file it writes
        self.durable: dict[str, int] = {}  # file -> bytes an fsync covered
        self.entries: dict[str, set[str]] = {}  # directory -> names an fsync covered
        # directory -> {name replaced by a rename: its old bytes (None: it did not exist)}
        self.renamed: dict[str, dict[str, bytes | None]] = {}

    def _faulty(self, fd: int) -> bool:
        return Path(self._paths.get(fd, "shares-")).name.startswith("shares-")

    def open(self, path: str, flags: int, mode: int) -> int:
        fd = os.open(path, flags, mode)
        self._paths[fd] = path
        return fd

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        if not self._faulty(fd):
            return os.write(fd, data)
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
        if self.fsync_fails and self._faulty(fd):
            self.fsync_fails -= 1
            self.faults["fsync_error"] += 1
            raise OSError(errno.EIO, "Input/output error")
        os.fdatasync(fd)
        path = self._paths.get(fd)
        if path is not None:
            self.durable[path] = os.fstat(fd).st_size

    def fsync(self, fd: int) -> None:
        self.fdatasync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)
        path = self._paths.get(fd)
        if path is not None and self.durable.get(path, 0) > length:
            self.durable[path] = length

    def fsync_dir(self, directory: Path) -> None:
        fsync_dir(directory)
        self.entries[str(directory)] = set(os.listdir(directory))
        self.renamed.pop(str(directory), None)

    def replace(self, src: Path, dst: Path) -> None:
        pending = self.renamed.setdefault(str(dst.parent), {})
        if dst.name not in pending:  # the bytes a power cut brings back
            pending[dst.name] = dst.read_bytes() if dst.exists() else None
        os.replace(src, dst)
        if str(src) in self.durable:
            self.durable[str(dst)] = self.durable.pop(str(src))

    def power_cut(self, rng: random.Random, directory: Path) -> int:
        """The power goes: what `directory`'s segments keep (see the class). Returns the
        bytes lost."""
        self.faults["power_cut"] += 1
        for name, old in self.renamed.pop(str(directory), {}).items():
            path = directory / name
            if old is None:
                path.unlink(missing_ok=True)
            else:  # the file the rename replaced, as it was (it was synced: whole)
                path.write_bytes(old)
                self.durable[str(path)] = len(old)
        names = self.entries.get(str(directory), set())
        known = {Path(p).name for p in self.durable} | {Path(p).name for p in self._paths.values()}
        lost = 0
        for path in sorted(p for p in directory.iterdir() if p.name in known and p.is_file()):
            size = path.stat().st_size
            if path.name not in names:
                path.unlink()
                lost += size
                continue
            keep = min(self.durable.get(str(path), 0), size)
            if keep == size:
                continue
            torn = b""
            segment = path.name.startswith("shares-")
            if segment and rng.random() < 0.5:  # the sector being written when the power went
                room = min(self.SECTOR - keep % self.SECTOR, size - keep)
                with path.open("rb") as fh:
                    fh.seek(keep)
                    torn = fh.read(rng.randint(1, room))
                cut = rng.randint(0, len(torn))
                torn = torn[:cut] + rng.randbytes(len(torn) - cut)
            os.truncate(path, keep)
            if torn:
                with path.open("ab") as fh:
                    fh.write(torn)
            lost += size - keep - len(torn)
        self._paths.clear()  # the process died with the power
        return lost


@dataclass
class _StoredMsg:
    subject: str
    data: bytes
    headers: dict[str, str]


class SimStream:
    """A JetStream server in memory, reached through the shipper's injected connector, with
    the faults a real one has: an outage (every connection fails; a restart may lose the
    tail it had not synced), a restart on an empty store (the stream is gone), and a
    `duplicate` answer for a publish it did not store (answered with another message's
    sequence). Sequences restart at 1 for a stream created anew, as JetStream's do."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.up = True
        self.generation = 0  # a restart ends every connection of the one before
        self.config: Any = None  # the stream's config once created (None: no stream)
        self.msgs: dict[int, _StoredMsg] = {}
        self.last_seq = 0
        self.dup_rate = 0.0  # chance a publish is answered duplicate without being stored
        self.faults: Counter[str] = Counter()

    async def connect(self, cfg: Any) -> tuple[Any, Any]:
        if not self.up:
            raise StreamError(f"cannot connect to the stream at {cfg.url}: sim outage")
        conn = _SimNats(self, self.generation)
        return conn, _SimJs(self, conn)

    def outage(self) -> None:
        self.up = False
        self.generation += 1
        self.faults["stream_down"] += 1

    def restart(self, *, empty: bool) -> None:
        """Back up: on an empty store, or on its store less a tail it had not synced."""
        self.up = True
        self.generation += 1
        if empty:
            self.faults["stream_empty"] += 1
            self.config, self.msgs, self.last_seq = None, {}, 0
            return
        for _ in range(self.rng.randint(0, 2)):
            if self.last_seq in self.msgs:
                del self.msgs[self.last_seq]
                self.last_seq -= 1
                self.faults["stream_tail_lost"] += 1

    def node_messages(self, subject: str) -> list[_StoredMsg]:
        return [m for _seq, m in sorted(self.msgs.items()) if m.subject == subject]


class _SimNats:
    def __init__(self, stream: SimStream, generation: int) -> None:
        self.stream, self.generation = stream, generation

    @property
    def is_connected(self) -> bool:
        return self.stream.up and self.stream.generation == self.generation

    async def close(self) -> None:
        return None


class _SimJs:
    def __init__(self, stream: SimStream, conn: _SimNats) -> None:
        self.s, self.conn = stream, conn

    def _check(self) -> None:
        if not self.conn.is_connected:
            raise ConnectionError("nats: connection closed (sim)")

    def _stream(self) -> None:
        from nats.js.errors import NotFoundError

        if self.s.config is None:
            raise NotFoundError()

    async def stream_info(self, name: str, subjects_filter: str | None = None) -> Any:
        self._check()
        self._stream()
        return SimpleNamespace(config=self.s.config, cluster=None)

    async def add_stream(self, config: Any) -> Any:
        self._check()
        self.s.config = config
        return SimpleNamespace(config=config, cluster=None)

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str],
        timeout: float,  # noqa: ASYNC109 (nats-py's signature)
    ) -> Any:
        from nats.js.api import PubAck

        self._check()
        self._stream()
        s = self.s
        msg_id = headers["Nats-Msg-Id"]
        for seq, m in s.msgs.items():
            if m.headers.get("Nats-Msg-Id") == msg_id:
                return PubAck(stream="sim", seq=seq, duplicate=True)
        if s.msgs and s.rng.random() < s.dup_rate:  # the answer, not the store
            s.faults["dup_answer"] += 1
            return PubAck(stream="sim", seq=s.rng.choice(list(s.msgs)), duplicate=True)
        s.last_seq += 1
        s.msgs[s.last_seq] = _StoredMsg(subject, bytes(data), dict(headers))
        return PubAck(stream="sim", seq=s.last_seq)

    async def get_msg(self, name: str, seq: int) -> Any:
        from nats.js.errors import NotFoundError

        self._check()
        self._stream()
        m = self.s.msgs.get(seq)
        if m is None:
            raise NotFoundError()
        return SimpleNamespace(data=m.data, headers=m.headers, seq=seq)

    async def get_last_msg(self, name: str, subject: str) -> Any:
        from nats.js.errors import NotFoundError

        self._check()
        self._stream()
        for seq in sorted(self.s.msgs, reverse=True):
            m = self.s.msgs[seq]
            if m.subject == subject:
                return SimpleNamespace(data=m.data, headers=m.headers, seq=seq)
        raise NotFoundError()

    async def purge_stream(self, name: str, seq: int, subject: str) -> bool:
        self._check()
        self._stream()
        # As nats-server does: a bound of 1 or less is no bound (every message of the subject).
        bound = seq if seq > 1 else self.s.last_seq + 1
        for n in [n for n, m in self.s.msgs.items() if m.subject == subject and n < bound]:
            del self.s.msgs[n]
        return True


class SimDatabase:
    """Cuts the ledger's connection at a drawn SQL statement (as an outage or a kill -9 of the
    database would): the statement raises, its transaction rolls back. Attached to every engine
    a daemon of the run opens."""

    def __init__(self, sim: Simulation) -> None:
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
        # The walk (`walk_at`): cut exactly the n-th statement from now, for n = 1, 2, ...
        self.cut_at = 0
        self.counted = 0
        # The ledger passes' walk (`walk_new`): cut the first statement whose text was not cut
        # before, so each distinct statement is cut once, in the order passes reach them.
        self.cut_new = False
        self.new_cut = False  # the armed cut happened
        self.walk_cut: set[str] = set()

    def open(self, url: str, migrate_schema: bool, timeouts: Timeouts) -> Engine:
        """How a daemon of the run opens its ledger: the real `open_ledger`, then the hook."""
        engine = open_ledger(url, migrate_schema=migrate_schema, timeouts=timeouts)
        event.listen(engine, "before_cursor_execute", self._before)
        return engine

    def walk_at(self, n: int) -> None:
        """Cut the `n`-th statement from now (and only that one); 0 disarms."""
        self.cut_at, self.counted = n, 0

    def walk_new(self, armed: bool) -> None:
        """Arm (or disarm) a cut of the next statement not cut before."""
        self.cut_new, self.new_cut = armed, False

    @property
    def walked(self) -> bool:
        """Whether the armed cut happened (False: the work ended before its n-th statement)."""
        return self.cut_at == 0 or self.counted >= self.cut_at

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if self.cut_new and statement not in self.walk_cut:
            self.walk_cut.add(statement)
            self.cut_new, self.new_cut = False, True
            self.cuts += 1
            raise OperationalError("statement", {}, ConnectionError("simulated cut (walk)"))
        if self.cut_at:
            self.counted += 1
            if self.counted == self.cut_at:
                self.cuts += 1
                raise OperationalError("statement", {}, ConnectionError("simulated cut (walk)"))
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
    node took the block), slow answers (the fake clock moves while we wait), and answers that
    arrive steps later (`late_rate`: the submission stays in flight meanwhile)."""

    def __init__(self, net: SimNet, sim: Simulation) -> None:
        self.net, self.sim = net, sim
        self.error_rate = 0.0
        self.late_rate = 0.0
        self.errors = 0
        self.late = 0
        self.lost_one = False  # the answer for a block the node took was lost once
        # Answers the run releases later, each when the clock passes its time.
        self.waiting: list[tuple[float, asyncio.Future[None]]] = []

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
        if self.late_rate and self.sim.rng.random() < self.late_rate:
            self.late += 1
            answer = asyncio.get_running_loop().create_future()
            delay_s = self.sim.rng.choice((5.0, 30.0, 90.0, 200.0))
            self.waiting.append((self.sim.now + delay_s, answer))
            await answer  # the node has the block; its answer comes that much later
        lost = self.sim.rng.random() < LOST_SUBMIT_ANSWER
        if reason is None and not self.lost_one:
            lost = True  # the first block the node takes in a run: by design, not by a draw
        if lost:
            # In every run, whatever its mix: the node took the block, its answer was lost.
            self.lost_one = self.lost_one or reason is None
            self.errors += 1
            raise BitcoindError("simulated RPC failure after the node took the block")
        self._trouble()  # the node took it, and then the answer was lost
        return reason

    def release_answers(self, every: bool = False) -> None:
        keep: list[tuple[float, asyncio.Future[None]]] = []
        for due, answer in self.waiting:
            if answer.done():
                continue
            if every or self.sim.now >= due:
                answer.set_result(None)
            else:
                keep.append((due, answer))
        self.waiting = keep

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


class InlineExecutor(ThreadPoolExecutor):
    """The loop's default executor for a run: every `asyncio.to_thread` call runs at once, in
    the loop's own thread. The daemon moves database calls to threads; here that would let
    thread timing decide the order of the run's random draws, and a seed would not replay."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # reported: to the awaiting coroutine, as from a thread
            done.set_exception(exc)
        return done


async def run_inline(fn: Callable[[], Any], _timeout_s: float) -> Any:
    """The scheduler's bounded call, run at once in this thread (the simulation's database
    answers or fails at once; its stalls move the clock)."""
    return fn()


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
    scheme: str = "pplns"
    steps: int = 0
    acked: int = 0
    refused: int = 0
    logged: int = 0
    in_ledger: int = 0
    blocks: int = 0
    settled: int = 0
    kills: int = 0
    paid_sat: int = 0
    unrecorded: int = 0  # blocks on the chain whose record died in memory at a kill -9
    reply_after: str = "fsync"
    power_lost: int = 0  # acknowledged shares a power cut took (only with reply_after "write")
    host_lost: int = 0  # acknowledged shares a host lost at the end would have lost
    walked: int = 0  # the walk: the most distinct ledger-pass statements cut in one sweep
    # "operator inflates delivery": caught by the root check / by the sample (the sample
    # misses a 1/21 fake share of the work with probability 0.76 % at k = 100).
    inflation_caught: int = 0
    inflation_escaped_sample: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return (
            f"seed {self.seed}: {self.steps} steps, {self.scheme}, {self.acked} acknowledged, "
            f"{self.refused} refused, {self.logged} logged, {self.in_ledger} in the ledger, "
            f"{self.blocks} blocks ({self.settled} settled, {self.unrecorded} lost in memory "
            f"at a kill -9), {self.paid_sat} sat paid, replies after {self.reply_after} "
            f"({self.power_lost} lost to power cuts, {self.host_lost} to a host lost during "
            f"an outage), faults: {faults} — {verdict}"
        )


class SimTransport:
    """An in-memory socket for one miner: what the server writes is the miner's to read."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.received = bytearray()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        if not self.closing:
            self.received += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None


def header_hash(params: list[Any], en1: bytes, en2: bytes, nonce: int) -> bytes:
    """The header hash a miner's submit names, rebuilt from its notify as a miner does."""
    _job, prevhash, cb1, cb2, branch, version, nbits, ntime, _clean = params
    prev = b"".join(bytes.fromhex(prevhash)[i : i + 4][::-1] for i in range(0, 32, 4))
    root = hashlib.sha256(
        hashlib.sha256(bytes.fromhex(cb1) + en1 + en2 + bytes.fromhex(cb2)).digest()
    ).digest()
    for step in branch:
        root = hashlib.sha256(hashlib.sha256(root + bytes.fromhex(step)).digest()).digest()
    header = (
        int(version, 16).to_bytes(4, "little")
        + prev
        + root
        + int(ntime, 16).to_bytes(4, "little")
        + int(nbits, 16).to_bytes(4, "little")
        + nonce.to_bytes(4, "little")
    )
    return hashlib.sha256(hashlib.sha256(header).digest()).digest()


class _Miner:
    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        # The account is a regtest address, so matured credits can be paid out to it.
        program = hashlib.new("ripemd160", hashlib.sha256(name.encode()).digest()).digest()
        self.address = bech32m.encode("bcrt", 0, list(program))
        self.conn: MinerConnection | None = None
        self.transport: SimTransport | None = None
        self.workers: list[str] = []
        self.job: tuple[str, str] | None = None  # (job id, ntime hex) of its newest notify
        self.notified: dict[str, list[Any]] = {}  # job id -> its notify params
        self.req = 0
        self.sent: dict[int, ShareKey] = {}  # request id -> share key
        self.work: dict[int, bytes] = {}  # request id -> the header hash it submits
        self.last_nonce: int | None = None
        self.last_ntime = ""  # the ntime (hex) the last submit named
        # Per extranonce1, the last share answered true: its work is sent again under a newer
        # job of the same template (see `Simulation._submit`).
        self.last_acked: dict[str, ShareKey] = {}
        self.en1 = ""


def _share_key(r: Mapping[str, object]) -> ShareKey:
    return (
        str(r["en1"]),
        str(r["job"]),
        int(str(r["ntime"])),
        int(str(r["nonce"])),
        int(str(r["ts"])),
    )


class Simulation:
    def __init__(self, seed: int, directory: Path, *, steps: int, walk: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.steps = steps
        self.now = START_S
        rng = self.rng
        self.scheme = rng.choice(SCHEMES)
        self.report = SimReport(seed, self.scheme)
        # Each seed its own mix: some runs are calm, some are storms.
        self.rates = {
            kind: rng.choice((0.0, 0.01, 0.03, 0.08))
            for kind in FAULTS
            if kind != "inflate_delivery"
        }
        # Drawn apart, so the seeds' other faults stay what they were before this kind.
        self.rates["inflate_delivery"] = random.Random(f"inflate {seed}").choice((0.0, 1.0))
        self.reply_after = rng.choice(("fsync", "write"))
        self.report.reply_after = self.reply_after
        self.stream = SimStream(rng)
        self.restarted = False  # the stream came back this step (the shipper checks it)
        self.gap_found = False  # `_check_stream_gaps` found one (reported once)
        self.refilling = False  # an earlier run's shipper was re-filling the stream when killed
        # The walk: every ledger pass has one statement cut, the first one it reaches that no
        # earlier pass had cut (by its SQL), so every distinct statement of every entry point
        # the passes reach is cut once, in order, whatever each pass's length; a pass that
        # reaches nothing new starts the sweep again. Each cut must end as a LedgerError (and
        # a retry), never as a raw driver error.
        self.walking = walk
        if walk:
            for kind in ("db_cut", "db_slow", "db_race", "kill9", "power_cut"):
                self.rates[kind] = 0.0
        self.net = SimNet(difficulty=Fraction(1, 2**26), tx_count=2, clock=lambda: self.now)
        self.bitcoind = SimBitcoind(self.net, self)
        self.orphan_depth = rng.randint(1, 3)
        self.reorgs = 0
        self.disk = SimDisk()
        self.db = SimDatabase(self)
        self.directory = directory
        self.log_dir = directory / "sharelog"
        self.cfg = self._config()
        self.acked: set[ShareKey] = set()
        self.acked_work: Counter[bytes] = Counter()  # header hash of each share answered true
        self.work_of: dict[ShareKey, bytes] = {}  # share answered true -> its header hash
        self.unrecorded: set[str] = set()  # our blocks on the chain whose record died at a kill
        self.miners = [_Miner(f"m{i}", i) for i in range(rng.randint(2, 5))]
        self.wallet = SimWallet(rng)
        self.daemon = self._start_daemon()

    def _config(self) -> Config:
        return parse_config(
            {
                "stratum": {
                    "listen": "127.0.0.1:0",
                    "node_id": NODE_ID,
                    "start_difficulty": "1/4294967296",
                    "min_difficulty": "1/4294967296",
                    "max_difficulty": "1/4294967296",
                    "vardiff_target_share_time_s": 10,
                    "vardiff_retarget_time_s": 600,
                    "extranonce2_size": 4,
                    "max_workers_per_connection": 4,
                    "max_workers_per_ip": 16,
                    "idle_timeout_s": 600,
                },
                "bitcoind": {"kind": "simnet"},
                "pool": {
                    "network": "regtest",
                    "payout_address": self.miners_address(),
                    "coinbase_tag": "/sim/",
                    "scheme": self.scheme,
                    "orphan_depth": self.orphan_depth,
                },
                "ledger": {
                    "url": f"sqlite:///{self.directory / 'ledger.db'}",
                    "auto_migrate": True,
                    # Blocks of any minute closed by a heartbeat may settle: the heartbeats,
                    # not a timer, decide (as for the daemon).
                    "ingest_interval_s": 1,
                },
                "sharelog": {
                    "path": str(self.log_dir),
                    "segment_bytes": 8192,
                    "reply_after": self.reply_after,
                },
                "stream": {
                    "url": "nats://sim.invalid:4222",
                    "max_lag_s": MAX_LAG_S,
                    "verify_interval_s": 30,
                    "mirror_path": str(self.directory / "stream-mirror"),
                },
                "api": {"listen": ""},
                "log": {"level": "error", "format": "json"},
            },
            environ={},
        )

    def miners_address(self) -> str:
        """The pool's payout address (a regtest P2WPKH; simnet pays it whatever it is)."""
        program = hashlib.new("ripemd160", hashlib.sha256(b"poold sim pool").digest()).digest()
        return str(bech32m.encode("bcrt", 0, list(program)))

    # -- the daemon: what a kill -9 throws away and a restart builds again -----------------------

    def _start_daemon(self) -> Daemon:
        daemon = Daemon(
            self.cfg,
            bitcoind=self.bitcoind,
            clock=lambda: self.now,
            disk=self.disk,
            ledger_access=InlineLedger(self.db.open),
            stream_connect=self.stream.connect,
        )
        # The lease's renewals run inline (a seed replays exactly) on the run's clock.
        daemon.scheduler.bounded = run_inline
        daemon.scheduler.monotonic = lambda: self.now
        daemon.open_sharelog()
        for m in self.miners:
            m.conn, m.transport, m.workers, m.job, m.sent = None, None, [], None, {}
            m.work = {}  # (the notifies of the last run stay known: see `_submit`)
        return daemon

    def _kill9(self, *, power: bool = False) -> None:
        """Everything in memory is gone: unflushed records, unsent replies, submissions in
        flight. A write that was under way may leave a torn frame at the end of the segment.
        The kernel frees what the process held (the share log's lock, the ledger's
        connections and leadership). With `power`, the host lost power: the disk keeps only
        what was fsynced (`SimDisk.power_cut`); with `reply_after = "fsync"` no share
        answered true may be lost, with "write" those lost leave the acknowledged set (and
        are counted)."""
        self.report.kills += 1
        daemon = self.daemon
        # A re-fill still under way (the stream lost what it had stored: the lag bound does
        # not cover that) goes on in the next run, whose shipper has not rewound itself.
        shipper = daemon.shipper
        assert shipper is not None
        self.refilling = (shipper.rewinds > 0 or self.refilling) and (
            shipper.caught_up_at == float("-inf")
        )
        daemon.sharelog.abandon()
        daemon.scheduler.abandon()
        daemon.submitter.abandon()
        self.bitcoind.waiting.clear()  # its answers go to a process that is gone
        if power:
            self.disk.power_cut(self.rng, self.log_dir)
            lost = self.acked - self._logged_keys()
            if lost and self.reply_after == "fsync":
                self.report.problems.append(
                    f"a power cut lost {len(lost)} shares answered true after their fsync, "
                    f"e.g. {min(lost)}"
                )
            for key in lost:
                self.acked.discard(key)
                work = self.work_of.pop(key, None)
                if work is not None:
                    self.acked_work[work] -= 1
            self.report.power_lost += len(lost)
        logged = {str(r["hash"]) for _p, r in read_log(self.log_dir) if r.get("t") == "block"}
        # Blocks the node took, on its best chain or on a branch a reorg set aside (which may
        # come back): their records died with the process.
        ours = {b.hash[::-1].hex() for b in self.net.known_blocks() if not b.external}
        self.unrecorded |= ours - logged
        if not power and self.rng.random() < 0.5:
            with segment_path(self.log_dir, daemon.sharelog.position.segment).open("ab") as fh:
                fh.write(self.rng.randbytes(self.rng.randint(1, 40)))
        self.daemon = self._start_daemon()

    def _ours_on_chain(self) -> set[str]:
        return {b.hash[::-1].hex() for b in self.net.blocks if not b.external}

    # -- miners ----------------------------------------------------------------------------------

    def _send(self, m: _Miner, method: str, params: list[object]) -> int:
        assert m.conn is not None
        m.req += 1
        line = orjson.dumps({"id": m.req, "method": method, "params": params}) + b"\n"
        m.conn.data_received(line)
        return m.req

    def _connect(self, m: _Miner) -> None:
        transport = SimTransport((f"10.0.0.{m.index + 1}", 4000 + m.req % 1000))
        conn = MinerConnection(self.daemon.server)
        conn.connection_made(transport)  # type: ignore[arg-type]
        m.conn, m.transport, m.sent, m.workers, m.job = conn, transport, {}, [], None
        if transport.closing:  # refused (a ban)
            m.conn = None
            return
        offered = [m.en1] if m.en1 and self.rng.random() < 0.5 else []  # resume a session
        self._send(m, "mining.subscribe", ["sim/1.0", *offered])
        for w in range(self.rng.randint(1, 6)):  # more than max_workers, sometimes
            self._send(m, "mining.authorize", [f"{m.address}.w{w}", "x"])
            m.workers.append(f"{m.address}.w{w}")

    def _disconnect(self, m: _Miner) -> None:
        if m.conn is not None and m.transport is not None:
            m.transport.closing = True
            m.conn.connection_lost(None)
        m.conn, m.transport = None, None

    def _submit(self, m: _Miner) -> None:
        if m.conn is None or m.transport is None or m.transport.closing:
            self._connect(m)
        if m.job is None or m.conn is None:
            return
        rng = self.rng
        job_id, ntime = m.job
        # Work answered true, sent again under the newest job when that job was built from
        # the same template (a refresh, or the next run's first job after a restart): a
        # miner that resends after a new job. Under the new job it is new work only if the
        # header differs, so a job must differ from its template's other jobs in its
        # coinbase, or the same work is valid twice. Drawn by design in every run (the
        # last share answered true is kept per extranonce1 and retried until answered),
        # not left to a lucky draw of retransmits: faults refuse many shares (a full disk,
        # the bound on the stream's lag) and restarts change the extranonce1 and the jobs.
        old = m.last_acked.get(m.en1)
        was = m.notified.get(old[1]) if old is not None else None
        resend = (
            old is not None
            and was is not None
            and old[1] != job_id
            and was[1] == m.notified[job_id][1]  # the same previous block
            and rng.random() < 0.5
        )
        for n in range(rng.randint(1, 8)):
            nonce, when = rng.getrandbits(32), ntime
            if n == 0 and resend and old is not None:
                nonce, when = old[3], f"{old[2]:08x}"
            elif m.last_nonce is not None and rng.random() < 0.1:  # a retransmit: a duplicate
                nonce = m.last_nonce
                # Now and then with the ntime it named then, under the newest job: the same
                # work again if that job's header is the old one's (a new job of one template).
                if m.last_ntime and rng.random() < 0.5:
                    when = m.last_ntime
            jid = job_id if rng.random() > 0.05 else "ffff"  # a stale job id
            worker = rng.choice(m.workers) if m.workers else "nobody.w"
            key = (m.en1, jid, int(when, 16), nonce, int(self.now * 1000))
            req = self._send(m, "mining.submit", [worker, jid, "00000000", when, f"{nonce:08x}"])
            m.sent[req] = key
            params = m.notified.get(jid)
            if params is not None:
                params = [*params[:7], when, params[8]]
                m.work[req] = header_hash(params, bytes.fromhex(m.en1), bytes(4), nonce)
            m.last_nonce, m.last_ntime = nonce, when

    def _read_replies(self) -> None:
        """What each miner's socket holds: replies to its requests, notifies, its extranonce."""
        for m in self.miners:
            t = m.transport
            if t is None:
                continue
            data, t.received = bytes(t.received), bytearray()
            for line in data.split(b"\n"):
                if not line:
                    continue
                msg = orjson.loads(line)
                method = msg.get("method")
                if method == "mining.notify":
                    params = msg["params"]
                    m.job = (params[0], params[7])
                    m.notified[params[0]] = params
                    continue
                if method is not None:
                    continue
                rid, result = msg.get("id"), msg.get("result")
                if isinstance(result, list) and len(result) == 3 and isinstance(result[1], str):
                    m.en1 = result[1]  # the subscribe reply: extranonce1
                    m.sent = {r: (m.en1, *k[1:]) for r, k in m.sent.items()}
                key = m.sent.pop(rid, None) if isinstance(rid, int) else None
                work = m.work.pop(rid, None) if isinstance(rid, int) else None
                if key is None:
                    continue
                if result is True:
                    self.acked.add(key)
                    m.last_acked[key[0]] = key
                    self.report.acked += 1
                    if work is not None:
                        self.acked_work[work] += 1
                        self.work_of[key] = work
                elif msg.get("error") and msg["error"][0] == 20:
                    self.report.refused += 1
            if t.closing:
                self._disconnect(m)

    async def _loop_turn(self) -> None:
        """Let the event loop run what the step queued: replies (after the writer's flush),
        block submissions, job broadcasts."""
        for _ in range(3):
            await asyncio.sleep(0)

    # -- the run ---------------------------------------------------------------------------------

    async def _ledger_pass(self) -> None:
        scheduler = self.daemon.scheduler
        db = self.db
        if self.walking:
            db.walk_new(True)
        try:
            await scheduler.step()
        finally:
            if self.walking:
                self.report.walked = max(self.report.walked, len(db.walk_cut))
                if not db.new_cut:
                    db.walk_cut.clear()  # nothing new in this pass: sweep again
                db.walk_new(False)
        if scheduler.problem is not None and scheduler.problem.startswith("ledger pass crashed"):
            # A fault must end as a LedgerError or BitcoindError and a retry, never as a bug.
            self.report.problems.append(scheduler.problem)

    async def _faults(self) -> None:
        rng, rates, disk, db, btc = self.rng, self.rates, self.disk, self.db, self.bitcoind
        if rng.random() < rates["enospc"]:
            disk.full = not disk.full
        if rng.random() < rates["short_write"]:
            disk.short_next = rng.randint(1, 60)
        if rng.random() < rates["fsync_error"]:
            disk.fsync_fails = rng.randint(1, 3)
        if rng.random() < rates["db_cut"] * 3:
            db.cut_rate = 0.0 if db.cut_rate else rng.choice((0.05, 0.3, 1.0))
        elif disk.full and rng.random() < 0.2:
            disk.full = False  # the operator frees space
        if rng.random() < rates["db_race"] * 3:
            db.race_rate = 0.0 if db.race_rate else rng.choice((0.05, 0.3))
        if rng.random() < rates["db_slow"] * 3:
            db.slow_rate = 0.0 if db.slow_rate else rng.choice((0.05, 0.3))
        if rng.random() < rates["bitcoind_error"] * 3:
            btc.error_rate = 0.0 if btc.error_rate else rng.choice((0.1, 0.5))
        if rng.random() < rates["late_answer"] * 3:
            btc.late_rate = 0.0 if btc.late_rate else rng.choice((0.3, 1.0))
        stream = self.stream
        if rng.random() < rates["stream_down"]:
            if stream.up:
                stream.outage()
            else:
                stream.restart(empty=False)
                self.restarted = True
        elif rng.random() < rates["stream_empty"]:
            stream.restart(empty=True)  # up again (or still) on a store that was lost
            self.restarted = True
        if rng.random() < rates["dup_answer"] * 3:
            stream.dup_rate = 0.0 if stream.dup_rate else rng.choice((0.1, 0.5))
        if rng.random() < rates["reorg"]:
            self.reorgs += 1
            if not (rng.random() < 0.4 and self.net.readopt()):
                self.net.reorg(rng.randint(1, 4))

    async def run(self) -> SimReport:
        rng, rates = self.rng, self.rates
        await self.daemon.feed.poll_once()
        for step in range(self.steps):
            self.report.steps = step + 1
            self.now += rng.uniform(0.05, 3.0)
            await self._faults()
            if self.restarted:  # the daemon sees a restarted stream before new shares
                await self._ship()
            await self.daemon.feed.poll_once()  # a new tip or a refresh: a new job
            if rng.random() < 0.3:
                await self.daemon.housekeep(self.now, prune=False)  # the second's heartbeat
                # The stream's retention, as often (no draw of its own: seeds replay as before).
                await self.daemon.purge_stream()
            if rng.random() < 0.25:  # a ledger pass, the daemon's: ingest, lead, follow
                await self._ledger_pass()
            for m in rng.sample(self.miners, rng.randint(1, len(self.miners))):
                self._submit(m)
                if rng.random() < 0.03:  # a reconnect
                    self._disconnect(m)
            if rng.random() < rates["kill9"]:
                self._kill9()  # between accepting and answering: nothing was acknowledged
                continue
            if rng.random() < rates["power_cut"]:
                self._kill9(power=True)  # written, maybe not synced, not answered
                continue
            await self._loop_turn()  # the writer flushes, then the replies go out
            self._read_replies()
            self.bitcoind.release_answers()
            await self._loop_turn()
            if rng.random() < 0.5:
                with contextlib.suppress(ShareLogError):  # the group-commit thread retries
                    self.daemon.sharelog.sync()
            if rng.random() < 0.7:
                await self._ship()
            self._check_stream_gaps()
            if rng.random() < 0.02:
                self.net.mine_external_block()
            if rng.random() < rates["kill9"] / 2:
                self._kill9()  # after answering: what was acknowledged must survive
            elif rng.random() < rates["power_cut"] / 2:
                self._kill9(power=True)  # after answering: fsync mode must lose nothing
        return await self._finish()

    async def _ship(self) -> None:
        """One round of the daemon's shipper (its loop's timer is the simulation's)."""
        shipper = self.daemon.shipper
        assert shipper is not None
        await shipper.step()
        self.restarted = False

    def _check_stream_gaps(self) -> None:
        """After every step, not only when the host is lost at the end: could a mirror
        rebuild the node's log from what the stream holds now (as `write_chunk` does, each
        segment from its first byte, no gap)? A gap (a chunk SHIPPED passed but the stream
        never stored) may otherwise leave the stream with its segment, purged once
        ingested, before the run ends. Reported once."""
        if self.gap_found:
            return
        sizes: dict[int, int] = {}
        for m in self.stream.node_messages(f"{self.cfg.stream.subject}.{NODE_ID}"):
            segment, offset = int(m.headers["segment"]), int(m.headers["offset"])
            size = sizes.get(segment, 0)
            if offset > size:
                self.gap_found = True
                self.report.problems.append(
                    f"the stream cannot rebuild the log: at step {self.report.steps} it lacks "
                    f"segment {segment} from offset {size} (the next message starts at {offset})"
                )
                return
            sizes[segment] = max(size, int(m.headers["end"]))

    def _logged_keys(self) -> set[ShareKey]:
        return {_share_key(r) for _p, r in read_log(self.log_dir) if r.get("t") == "share"}

    def _host_lost(self, engine: Engine, *, healed: bool) -> None:
        """The host is lost now: what reaches the ledger is what it ingested and what the
        stream holds. Lost acknowledged shares must all lie within one `max_lag_s` (the
        last before the stream stopped storing), and none once the stream is healed and
        caught up."""
        with engine.connect() as conn:
            cp = conn.execute(
                select(IngestCheckpoint.segment, IngestCheckpoint.offset).where(
                    IngestCheckpoint.node_id == NODE_ID
                )
            ).first()
        checkpoint = (0, 0) if cp is None else (int(cp[0]), int(cp[1]))
        ingested = {
            _share_key(r)
            for pos, r in read_log(self.log_dir)
            if r.get("t") == "share" and (pos.segment, pos.offset) < checkpoint
        }
        target = self.directory / f"host-lost-{int(healed)}"
        subject = f"{self.cfg.stream.subject}.{NODE_ID}"
        problems = self.report.problems
        try:
            for m in self.stream.node_messages(subject):
                write_chunk(target, NODE_ID, m.headers, m.data)
        except StreamError as exc:
            problems.append(f"the stream cannot rebuild the log: {exc}")
            return
        mirrored = {
            _share_key(r)
            for _p, r in (read_log(target) if target.exists() else iter(()))
            if r.get("t") == "share"
        }
        lost = self.acked - ingested - mirrored
        if healed:
            if lost:
                problems.append(f"a caught-up stream lacks {len(lost)} acknowledged shares")
            return
        self.report.host_lost = len(lost)
        shipper = self.daemon.shipper
        assert shipper is not None
        refilling = shipper.rewinds > 0 or self.refilling
        if lost and not (refilling and shipper.caught_up_at == float("-inf")):
            times = sorted(k[4] for k in lost)
            if times[-1] - times[0] > MAX_LAG_S * 1000:
                problems.append(
                    f"a host lost now loses {len(lost)} acknowledged shares answered over "
                    f"{(times[-1] - times[0]) / 1000:.1f} s, more than max_lag_s {MAX_LAG_S:g}"
                )

    async def _payouts(self, engine: Engine, *, walk: bool = False) -> None:
        """Every block of ours on the chain matures; then payout runs under wallet and database
        faults (each ends as `poold payout` would: an error, or killed), then clean ones."""
        # Deep enough that every block we ever found could have matured, even one from a
        # branch a reorg took away from a taller chain than the one that is left.
        heights = [
            int(str(r["height"])) for _p, r in read_log(self.log_dir) if r.get("t") == "block"
        ]
        for _ in range(
            COINBASE_MATURITY_BLOCKS + max(0, max(heights, default=0) - self.net.height)
        ):
            self.net.mine_external_block()
        # Follow: blocks whose submission got no answer resolve (on the chain, or too deep to
        # come back); PROP rounds waiting for them settle; then those blocks mature too.
        for _ in range(3):
            await self._ledger_pass()
        rng = self.rng
        if walk:
            await self._walk_payouts(engine)
        self.wallet.fault_rate = self.rates["wallet_fault"] * 10
        self.db.cut_rate = rng.choice((0.0, 0.02))
        self.db.race_rate = rng.choice((0.0, 0.1)) if self.rates["db_race"] else 0.0
        for _ in range(rng.randint(1, 4)):
            with contextlib.suppress(PayoutError, SimKilled, LedgerError):
                await run_payouts(
                    engine,
                    self.wallet,
                    network=Network.REGTEST,
                    min_payout_sat=1,
                    max_outputs=rng.randint(1, 3),
                    send=True,
                )
            self._clear_lease(engine)  # as a restart after kill -9 would find its holder dead
        self.wallet.fault_rate, self.db.cut_rate, self.db.race_rate = 0.0, 0.0, 0.0
        self._clear_lease(engine)
        for _ in range(2):  # reconcile what was left open, pay the rest
            await run_payouts(
                engine,
                self.wallet,
                network=Network.REGTEST,
                min_payout_sat=1,
                max_outputs=3,
                send=True,
            )

    async def _walk_payouts(self, engine: Engine) -> None:
        """A payout run with its n-th statement cut, for n = 1, 2, ... until one completes:
        each must end as a PayoutError or LedgerError (the next run reconciles what it left)."""
        for n in range(1, 10_000):
            self.db.walk_at(n)
            try:
                await run_payouts(
                    engine,
                    self.wallet,
                    network=Network.REGTEST,
                    min_payout_sat=1,
                    max_outputs=2,
                    send=True,
                )
            except (PayoutError, LedgerError):
                pass  # converted: what a cut must become
            finally:
                walked = self.db.walked
                self.db.walk_at(0)
            self._clear_lease(engine)
            if not walked:
                return

    @staticmethod
    def _clear_lease(engine: Engine) -> None:
        with contextlib.suppress(OperationalError), engine.begin() as conn:
            conn.execute(delete(LedgerLock))

    async def _finish(self) -> SimReport:
        disk, report, daemon = self.disk, self.report, self.daemon
        disk.full, disk.short_next, disk.fsync_fails = False, 0, 0
        self.db.cut_rate = self.db.slow_rate = self.db.race_rate = 0.0
        walking, self.walking = self.walking, False
        self.bitcoind.error_rate = self.bitcoind.late_rate = 0.0
        self.bitcoind.release_answers(every=True)
        await daemon.submitter.drain(10)
        await self._loop_turn()
        self._read_replies()
        daemon.sharelog.sync()  # an fsync that works again clears the refusal
        daemon.writer.flush()
        self.now += 120  # every minute closed
        await daemon.housekeep(self.now, prune=False)  # a heartbeat past them
        # The host is lost as things stand (the stream maybe down: a host lost during an
        # outage), then again once the stream is back and caught up.
        engine = self.db.open(str(self.cfg.ledger.url), False, Timeouts())
        self._host_lost(engine, healed=False)
        if not self.stream.up:
            self.stream.restart(empty=False)
        self.stream.dup_rate = 0.0
        daemon.sharelog.sync()
        for _ in range(3):
            await self._ship()
        self._host_lost(engine, healed=True)
        for _ in range(4):
            await self._ledger_pass()
        await self._payouts(engine, walk=walking)
        daemon.sharelog.close()
        report.faults = (
            disk.faults
            + Counter(
                {
                    "db_cut": self.db.cuts,
                    "kill9": report.kills,
                    "bitcoind_error": self.bitcoind.errors,
                    "late_answer": self.bitcoind.late,
                    "reorg": self.reorgs,
                    "db_slow": self.db.slow,
                    "db_race": self.db.races,
                    "wallet_fault": self.wallet.faults,
                }
            )
            + self.stream.faults
        )
        self._check(engine)
        daemon.scheduler.abandon()
        engine.dispose()
        return report

    def _check_inflation(self) -> None:
        """The fault "operator inflates delivery", both ways it can be done: claiming 5 % more
        TH*s than the committed work root (caught by the root check every time: verify.py's
        rule that delivered TH*s equals the root's work), and padding the tree with fake
        shares until the claim matches (1/21 of the work fake, leaves whose header the pool
        cannot produce: caught by the beacon's k draws with probability 1 - (20/21)^k). The
        tree is the run's own leaf file."""
        from accounting import work_proof as wp
        from poold.shares.leaves import LeafError, LeafKeeper, read_leaves

        # One period: from before the first share to the last heartbeat's promise (a block
        # whose record died at a kill -9 may hold it back).
        through = max(
            (int(str(r["through"])) for _p, r in read_log(self.log_dir) if r.get("t") == "beat"),
            default=0,
        )
        p0, p1 = int(START_S) - 60, min(int(self.now) - 60, through // 1000)
        if p1 <= p0:
            return
        fleet = tuple(m.address for m in self.miners)
        keeper = LeafKeeper(
            self.log_dir, NODE_ID, fleet, lambda t: (p0, p1) if t < p1 else (p1, p1 + 10**9)
        )
        try:
            built = keeper.build_due(self.now)
        except LeafError as exc:
            self.report.problems.append(f"the run's leaf file cannot be built: {exc}")
            return
        if not built or not built[0].leaves:
            return
        self.report.faults["inflate_delivery"] += 1
        leaves_file = read_leaves(built[0].path)
        tag = wp.account_tag(b"sim", "fleet")
        honest = [
            wp.Leaf(leaves_file.hash(i), leaves_file.weight(i), tag)
            for i in range(len(leaves_file.leaves))
        ]
        root = wp.stream_root(iter(honest))
        claimed = root.work * 21 // 20
        if claimed == root.work:
            self.report.problems.append("an inflated delivery equals the committed work")
        else:
            self.report.inflation_caught += 1
        rng = random.Random(self.seed)
        fake: list[wp.Leaf] = []
        per = max(1, root.work // (20 * 50))
        while sum(f.weight for f in fake) * 20 < root.work:
            fake.append(wp.Leaf(rng.randbytes(32), per, tag))  # no header of this pool behind it
        padded = sorted(honest + fake, key=lambda lf: lf.hash)
        levels = wp.build_unchecked(padded)
        beacon = hashlib.sha256(b"sim beacon %d" % self.seed).digest()
        drawn = [
            padded[wp.locate(levels, r)] for r in wp.draws(beacon, levels[-1][0], wp.DEFAULT_K)
        ]
        forged = {f.hash for f in fake}  # a leaf the pool cannot rebuild counts as forged
        if any(lf.hash in forged or not wp.meets_weight(lf.hash, lf.weight) for lf in drawn):
            self.report.inflation_caught += 1
        else:
            self.report.inflation_escaped_sample += 1

    def _check(self, engine: Engine) -> None:
        report, problems = self.report, self.report.problems
        shares = [r for _pos, r in read_log(self.log_dir) if r.get("t") == "share"]
        keys = Counter(
            (str(r["en1"]), str(r["job"]), int(str(r["ntime"])), int(str(r["nonce"])), r["ts"])
            for r in shares
        )
        report.logged = len(shares)
        twice = [k for k, n in keys.items() if n > 1]
        if twice:
            problems.append(f"{len(twice)} shares logged twice, e.g. {twice[0]}")
        again = [w for w, n in self.acked_work.items() if n > 1]
        if again:
            problems.append(f"the same work was answered true {len(again)} times twice or more")
        lost = self.acked - keys.keys()
        if lost:
            problems.append(f"{len(lost)} acknowledged shares not in the log, e.g. {min(lost)}")
        with engine.connect() as conn:
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
        on_chain = self._ours_on_chain()
        report.unrecorded = len(self.unrecorded & on_chain)
        if on_chain - accepted != self.unrecorded & on_chain:
            problems.append(
                f"{len(on_chain - accepted)} blocks on the chain are not accepted in the ledger "
                f"({report.unrecorded} expected: held in memory at a kill -9), e.g. "
                f"{min((on_chain - accepted) ^ (self.unrecorded & on_chain), default='-')}"
            )
        prefix = f"{self.scheme}:"
        settled = Counter(k.split(":", 1)[1] for k in settlements if k.startswith(prefix))
        report.settled = sum(1 for h in accepted if settled[h] == 1)
        if report.settled != len(accepted):
            problems.append(f"{len(accepted) - report.settled} accepted blocks not settled once")
        # Credited exactly while the chain has it (or a reorg is still shallower than the depth).
        with engine.connect() as conn:
            open_credits = {h for h, *_ in block_rows if journal.open_pending(conn, h)}
        tip = self.net.height
        for h, _a, status, height in block_rows:
            credited = h in open_credits or status == "confirmed"
            deep = tip - height + 1 >= self.orphan_depth
            if h in on_chain and not credited:
                problems.append(f"block {h[:16]} is on the chain but not credited ({status})")
            elif h not in on_chain and deep and (credited or status == "pending"):
                problems.append(f"block {h[:16]} left the chain but is still {status}")
        self._check_payouts(engine)
        if self.rates["inflate_delivery"]:
            self._check_inflation()
        jobs = len(self.daemon.jobs)
        if jobs > 64:
            problems.append(f"the job registry holds {jobs} jobs")
        problems.extend(f"verify: {v}" for v in verify(engine))
        rep = replay(engine, self.log_dir, NODE_ID, pool_fee=Fraction(0))
        problems.extend(f"replay: {v}" for v in rep.problems)
        limit = self.cfg.stratum.max_workers_per_connection
        for c in self.daemon.server.connections:
            if c.session is not None and len(c.session.workers) > limit:
                problems.append(f"{c.peer} holds {len(c.session.workers)} worker names")
        for host, use in self.daemon.server.hosts.items():
            if use.quota.limit is not None and use.quota.count > use.quota.limit:
                problems.append(f"the address quota of {host} holds {use.quota.count} names")

    def _check_payouts(self, engine: Engine) -> None:
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
        with engine.connect() as conn:
            rows = conn.execute(
                select(PayoutItem.address, func.sum(PayoutItem.amount_sat))
                .join(Payout, Payout.id == PayoutItem.payout_id)
                .where(Payout.status.in_(("sent", "confirmed")))
                .group_by(PayoutItem.address)
            ).all()
        recorded = {a: int(v) for a, v in rows}
        if dict(sent) != recorded:
            problems.append(f"the wallet sent {dict(sent)}, the ledger recorded {recorded}")
        negative = {k: v for k, v in owed(engine).items() if v < 0}
        if negative:
            problems.append(f"accounts owed a negative amount: {negative}")
        spendable = {
            k: v for k, v in balances(engine).items() if journal.miner_of(k) is not None and v > 0
        }
        if spendable:
            problems.append(f"paid more than earned: {spendable}")


async def _run(seed: int, directory: Path, steps: int, walk: bool = False) -> SimReport:
    asyncio.get_running_loop().set_default_executor(InlineExecutor())
    # The ledger draws each miner's proof salt from `secrets`, and the credit commitment in
    # every new coinbase depends on them, so they decide which shares are blocks: a seed
    # replays only with salts drawn from the seed too (restored after the run).
    salts = random.Random(seed ^ 0x5A17)
    real = secrets.token_bytes
    secrets.token_bytes = salts.randbytes  # type: ignore[assignment]
    try:
        sim = Simulation(seed, directory, steps=steps, walk=walk)
        try:
            return await sim.run()
        except Exception as exc:  # reported: a crash is the seed's finding, named with it
            sim.report.problems.append(f"the run crashed: {exc!r}")
            return sim.report
    finally:
        secrets.token_bytes = real


def simulate(
    seed: int, *, steps: int = 400, directory: Path | None = None, walk: bool = False
) -> SimReport:
    """Run one seed; the same seed always draws the same run. `walk`: cut each ledger pass
    at its next statement in turn instead of at random (see `Simulation`)."""
    if directory is not None:
        return asyncio.run(_run(seed, directory, steps, walk))
    with tempfile.TemporaryDirectory(prefix=f"poold-sim-{seed}-") as tmp:
        return asyncio.run(_run(seed, Path(tmp), steps, walk))


def simulate_many(seeds: range, *, steps: int = 400) -> Iterator[SimReport]:
    for seed in seeds:
        yield simulate(seed, steps=steps)
