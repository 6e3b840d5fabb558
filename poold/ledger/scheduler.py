"""The ledger scheduler: everything the daemon does to its ledger, on a timer.

Connects (retrying while the database cannot be reached) and registers this daemon's node
(`ledger.nodes`; a node id another share log holds stops the daemon), then every
`ingest_interval_s` runs one pass: ingest this node's share log (closed minutes only) and
renew its lease; then, only where the ledger's leadership is held (`ledger.leader`), settle
the blocks, FPPS periods and token periods that every live node is ingested past
(`nodes.gate`), follow settled blocks on bitcoind and sample the network
(`ledger.network`). The CPU-heavy steps run in the ledger
process (`poold.ledger.worker`). Stratum and the share log never wait for any of it. Imports
the ledger, the bitcoind client and the event hub; never Stratum.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy.engine import Engine

from accounting import TokenSettlement
from poold.bitcoind.client import AnchorWallet, Bitcoind, BitcoindError
from poold.config import Config
from poold.events import EventHub
from poold.ledger import nodes
from poold.ledger.anchors import AnchorPolicy, run_anchors
from poold.ledger.credit_proofs import latest_credit_commitment
from poold.ledger.db import Deposed, Fence, LedgerError, Timeouts, fence_set, ledger_entry
from poold.ledger.events import tail_journal
from poold.ledger.fpps import book_with_bitcoind
from poold.ledger.leader import Leadership, holder_name
from poold.ledger.maturity import follow_blocks
from poold.ledger.network import ChainView, sample_network
from poold.ledger.settle import BLOCK_KEYS
from poold.ledger.worker import LedgerAccess, ProcessLedger, Worker
from poold.metrics import Metrics
from poold.shares.leaves import LeafKeeper
from poold.shares.log import LogPosition, prune_segments
from poold.shares.stream import StreamConfig, StreamError, StreamGap, mirror
from poold.tokens.proofs import latest_commitment

log = structlog.get_logger(__name__)

#: How long after the wallet refused an anchor transaction it is asked again.
ANCHOR_RETRY_MS = 60_000
#: Runs a read query in the ledger process: offload(fn, *args).
Offload = Callable[..., Awaitable[Any]]
T = TypeVar("T")
#: Runs a blocking call with a client-side bound: bounded(fn, timeout_s) -> fn() or TimeoutError.
Bounded = Callable[[Callable[[], T], float], Awaitable[T]]


async def in_daemon_thread(fn: Callable[[], T], timeout_s: float) -> T:
    """`fn()` on a thread of its own, awaited at most `timeout_s` (then TimeoutError). A call
    stuck on a half-open socket is left behind on a daemon thread: it holds neither the loop
    nor the process's exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def call() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:  # reported: handed to the awaiting task, which raises it
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=call, name="poold-bounded", daemon=True).start()
    return await asyncio.wait_for(asyncio.shield(done), timeout_s)


@ledger_entry
def _latest_commitments(ledger: Engine) -> tuple[str | None, str | None]:
    """The newest token-statement and miner-credit commitments."""
    with ledger.connect() as conn:
        return latest_commitment(conn), latest_credit_commitment(conn)


class LedgerScheduler:
    def __init__(
        self,
        cfg: Config,
        bitcoind: Bitcoind,
        metrics: Metrics,
        events: EventHub,
        clock: Callable[[], float],
        *,
        on_connect: Callable[[Engine, Offload], None] = lambda _engine, _offload: None,
        events_wanted: bool = False,
        log_id: Callable[[], str | None] = lambda: None,
        host: str = "",
        stream: StreamConfig | None = None,
        on_commitment: Callable[[bytes | None, bytes | None], None] = lambda _s, _c: None,
        access: LedgerAccess | None = None,
        anchor_wallet: AnchorWallet | None = None,
        chain: ChainView = lambda: None,
    ) -> None:
        # How the ledger and its worker are opened: the ledger process by default.
        self.access: LedgerAccess = access if access is not None else ProcessLedger()
        self.cfg, self.bitcoind, self.metrics, self.events, self.clock = (
            cfg,
            bitcoind,
            metrics,
            events,
            clock,
        )
        self.on_connect = on_connect  # told the engine and the worker's reader on connect
        self.events_wanted = events_wanted  # tail the journal into `events` (the API is on)
        self.log_id = log_id  # this node's share log identity (known once the log is open)
        self.host = host  # where this daemon runs, as other daemons see it
        self.stream = stream  # where lapsed nodes' records are read from (None: nowhere)
        # How far this node's log is fsynced (the daemon wires the share log's): ingest reads
        # no further, so a power cut can never take back a record the ledger holds.
        self.durable_until: Callable[[], LogPosition | None] = lambda: None
        # Told the latest statement and credit commitments each pass.
        self.on_commitment = on_commitment
        anchors = cfg.anchors
        # How this pool anchors its chains (anchor transactions only with a wallet).
        self.anchor_policy = AnchorPolicy(
            coinbase_script=cfg.pool.payout_script,
            wallet=anchor_wallet,
            address=anchors.address or cfg.pool.payout_address,
            change_script=cfg.anchor_script,
            interval_s=anchors.interval_s,
            fee_rate_sat_vb=anchors.fee_rate_sat_vb,
        )
        self.anchor_problem: str | None = None  # why the last anchor transaction was not sent
        self._anchor_refused_ms = 0  # when the wallet last refused to send one
        self._unavailable: set[str] = set()  # found blocks bitcoind would not give back
        self.chain = chain  # the block the current job builds, for the network's samples
        self.leadership: Leadership | None = None
        self.bounded: Bounded[Any] = in_daemon_thread  # the fault simulator runs these inline
        self.monotonic: Callable[[], float] = time.monotonic  # the leader's own deadline
        self._leading = False  # as last logged
        metrics.leading = lambda: self.leadership is not None and self.leadership.leading()
        self.gate: nodes.Gate | None = None  # how far settlement may go (the leader's view)
        self._said: tuple[list[str], list[str]] = ([], [])  # the gate's last logged notes
        self.ledger: Engine | None = None
        self.worker: Worker | None = None  # the ledger process (or its steps run inline)
        self.problem: str | None = None  # why the last pass (or connection) failed
        self.ingested_shares = 0
        self.ingest_position: LogPosition | None = None  # the ledger's checkpoint, once known
        self.token_periods: list[tuple[int, TokenSettlement]] = []  # settled by this process
        self._fpps_booked = 0  # period end of the last FPPS booking made by this process
        self._token_wait: str | None = None  # what the next token period waits for (logged once)
        # The work-proof leaf directories by node: this node's, beside its share log, and
        # (while leading, with a stream) every other node's in the mirror of its log; who is
        # told a period's leaves are no longer needed (the daemon's leaf keeper releases its
        # hold) and which periods it holds.
        tokens = cfg.tokens
        self.work_dirs: dict[int, Path] = (
            {cfg.stratum.node_id: cfg.sharelog.path / "work"}
            if tokens.enabled and tokens.work_proof
            else {}
        )
        self.on_work_cut: Callable[[int], None] = lambda _start: None
        self.work_held: Callable[[], list[int]] = list
        self._mirror_keepers: dict[int, LeafKeeper] = {}
        self._mirror_problem: dict[int, str] = {}
        self._work_wait: dict[int, str] = {}

    def readiness(self) -> dict[str, str]:
        problems = {}
        if self.problem is not None:
            problems["ledger"] = self.problem
        backlog = self.metrics.shares_accepted - self.ingested_shares
        if self.ledger is not None and backlog > 1_000_000:
            problems["ingest"] = f"{backlog} accepted shares not yet in the ledger"
        if self.gate is not None and (self.gate.waiting or self.gate.excluded):
            problems["nodes"] = "; ".join(self.gate.waiting + self.gate.excluded)
        if self.anchor_problem is not None:
            problems["anchors"] = f"no anchor transaction could be sent: {self.anchor_problem}"
        return problems

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def _lease_ms(self) -> int:
        return int(self.cfg.ledger.node_lease_s * 1000)

    def _register(self, engine: Engine) -> None:
        log_id = self.log_id()
        if log_id is None:
            return  # no share log of its own (tests driving the scheduler alone)
        nodes.register(
            engine,
            self.cfg.stratum.node_id,
            log_id,
            self.host,
            now_ms=self._now_ms(),
            lease_ms=self._lease_ms,
        )

    @property
    def _timeouts(self) -> Timeouts:
        cfg = self.cfg.ledger
        # A session idle inside a transaction for a whole lease is ended by the server: a
        # leader's write cut off mid-transaction cannot hold the lease row past its lease.
        return Timeouts(
            connect_s=cfg.connect_timeout_s,
            statement_s=cfg.statement_timeout_s,
            idle_s=cfg.node_lease_s,
        )

    @property
    def _lease_timeouts(self) -> Timeouts:
        """The lease session's bounds: a renewal is over (done or failed) well within a lease."""
        cfg = self.cfg.ledger
        lease = cfg.node_lease_s
        return Timeouts(
            connect_s=min(cfg.connect_timeout_s, max(1.0, lease / 3)),
            statement_s=max(0.5, lease / 4),
            idle_s=max(1.0, lease / 4),
        )

    def _lease_engine(self, engine: Engine) -> Engine:
        db = engine.url.database
        if engine.dialect.name == "sqlite" and (not db or db == ":memory:"):
            return engine  # one process, one database: the engine itself
        return self.access.open(
            self.cfg.ledger.url, migrate_schema=False, timeouts=self._lease_timeouts
        )

    def _open_ledger(self) -> Engine:
        cfg = self.cfg.ledger
        return self.access.open(cfg.url, migrate_schema=cfg.auto_migrate, timeouts=self._timeouts)

    async def attach(self) -> None:
        """Open the ledger and start its worker process; on success the API reads it too."""
        engine = await asyncio.to_thread(self._open_ledger)  # never block the loop
        try:
            await asyncio.to_thread(self._register, engine)
        except LedgerError:
            engine.dispose()
            raise
        worker = self.access.worker(self.cfg.ledger.url, engine, timeouts=self._timeouts)
        try:
            await worker.start()
        except LedgerError:
            await worker.stop(0)
            engine.dispose()
            raise
        try:
            lease_engine = await asyncio.to_thread(self._lease_engine, engine)
        except LedgerError:
            await worker.stop(0)
            engine.dispose()
            raise
        self.ledger, self.worker = engine, worker
        self.leadership = Leadership(
            lease_engine,
            holder=holder_name(self.cfg.stratum.node_id),
            lease_s=self.cfg.ledger.node_lease_s,
            clock=self.clock,
            monotonic=self.monotonic,
        )
        self.on_connect(engine, worker.read)
        self.problem = None
        log.info("ledger_connected")

    async def run(self, stopping: asyncio.Event) -> None:
        """Ledger steps until `stopping`: every `ingest_interval_s` once connected, backing off
        up to 30 s while the ledger cannot be reached. Stratum and the share log never wait
        for any of it."""
        interval = self.cfg.ledger.ingest_interval_s
        backoff = 1.0
        tailer: asyncio.Task[None] | None = None
        keeper = asyncio.create_task(self.keep_lease(stopping))
        try:
            while not stopping.is_set():
                wait_s = interval if self.ledger is not None else backoff
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), wait_s)
                if stopping.is_set():
                    return
                await self.step()
                if self.ledger is None:
                    backoff = min(backoff * 2, 30.0)
                elif tailer is None and self.events_wanted:
                    tailer = asyncio.create_task(tail_journal(self.ledger, self.events))
        finally:
            keeper.cancel()
            if tailer is not None:
                tailer.cancel()

    async def keep_lease(self, stopping: asyncio.Event) -> None:
        """Between passes too: renew the leader's lease a few times per lease, and notice at
        once when this daemon stops leading (its deadline passed without a renewal), so the
        metric and the log never show a leader that no longer leads."""
        lease = self.cfg.ledger.node_lease_s
        while not stopping.is_set():
            leadership = self.leadership
            if leadership is not None:
                if leadership.epoch is not None:
                    await self.renew_lease()
                self._note_leadership()
                until = leadership.deadline - self.monotonic()
                wait_s = min(lease / 4, max(0.05, until)) if leadership.epoch else lease / 4
            else:
                wait_s = lease / 4
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait_s)

    async def renew_lease(self) -> bool:
        """Renew (or take) the lease with a client-side bound; one renewal at a time (one
        stuck on a half-open socket is given up after a lease). Returns whether this daemon
        leads now."""
        leadership = self.leadership
        if leadership is None:
            return False
        lease = self.cfg.ledger.node_lease_s
        since = leadership.in_flight_since
        if since is not None and self.monotonic() - since < lease:
            return leadership.leading()  # the last one is still waiting on the database
        with contextlib.suppress(TimeoutError):
            await self.bounded(leadership.hold, max(0.5, lease / 3))
        return leadership.leading()

    def _note_leadership(self) -> None:
        """Log and count a change of leadership, once, with its epoch."""
        leadership = self.leadership
        leading = leadership is not None and leadership.leading()
        self.metrics.leader = int(leading)
        if leading != self._leading:
            self._leading = leading
            epoch = None if leadership is None else leadership.epoch
            log.info("ledger_leadership", held=leading, epoch=epoch)
        if not leading:
            self.gate = None

    async def step(self) -> None:
        """One ledger step as the daemon runs it: connect if not connected (a node id that
        another share log holds is a config error: `NodeConflict` is raised), else one pass —
        ingest, renew this node's lease and, where leadership is held, lead. A failure is
        logged and counted and leaves `problem` set; the next step starts again from what is
        committed."""
        if self.ledger is None:
            try:
                await self.attach()
            except nodes.NodeConflict:
                raise  # configured wrong: retrying cannot help
            except LedgerError as exc:
                self.problem = f"the ledger is not connected: {exc}"
                log.warning("ledger_unavailable", error=str(exc))
            return
        try:
            await self.run_pass()
            self.problem = None
        except Deposed as exc:
            # Another daemon took over while this pass ran: its write was refused whole.
            if self.leadership is not None:
                self.leadership.step_down()
            log.warning("ledger_deposed", error=str(exc))
            self._note_leadership()
            self.problem = None
        except (LedgerError, BitcoindError) as exc:
            # Shares stay in the share log and blocks stay pending; the next pass retries.
            log.warning("ledger_pass_failed", error=str(exc))
            self.problem = str(exc)
            self.metrics.ledger_pass_failures += 1
        except Exception as exc:  # a bug: logged with its traceback, never fatal here
            # Stratum and the share log must outlive any ledger fault: the shares wait in the
            # log, and the next pass starts from the committed checkpoint.
            log.exception("ledger_pass_crashed")
            self.problem = f"ledger pass crashed: {exc!r}"
            self.metrics.ledger_pass_failures += 1
            self.metrics.errors["ledger_pass_crashed"] += 1

    async def ingest(self, *, final: bool = False) -> None:
        """Ingest this node's share log: closed minutes only (unless configured otherwise),
        or, `final` (the log is closed), everything up to its final heartbeat, so the ledger
        knows at once that this node stopped cleanly and settlement need not wait for it."""
        if self.worker is None:
            return
        result = await self.worker.ingest(
            self.cfg.sharelog.path,
            self.cfg.stratum.node_id,
            closed_only=not (final or self.cfg.ledger.ingest_open_minutes),
            until=None if final else self.durable_until(),
        )
        self.ingested_shares += result.shares
        self.ingest_position = result.position
        if result.through_ms:
            self.metrics.ingest_lag.observe(max(0.0, self.clock() - result.through_ms / 1000))
        self.metrics.ingest_lag_shares = max(0, self.metrics.shares_accepted - self.ingested_shares)
        if result.records:
            log.debug(
                "ledger_ingested", shares=result.shares, slices=result.slices, blocks=result.blocks
            )

    async def book_fpps(self, ledger: Engine, through_ms: int | None = None) -> None:
        """Once per FPPS period whose end every live node is ingested past (`through_ms`):
        book every share slice ingested so far."""
        pool = self.cfg.pool
        now = (
            int(self.clock()) if through_ms is None else min(int(self.clock()), through_ms // 1000)
        )
        end = now // pool.fpps_period_s * pool.fpps_period_s
        if end == self._fpps_booked:
            return
        booked = await book_with_bitcoind(
            ledger,
            self.bitcoind,
            period_end_s=end,
            fee_window_blocks=pool.fee_window_blocks,
            pool_fee=pool.fee,
        )
        self._fpps_booked = end
        if booked is not None:
            self.metrics.settlement_runs["fpps"] += 1
            log.info(
                "fpps_booked",
                period_end=end,
                slices=booked.slices,
                credits_sat=sum(booked.credits.values()),
            )

    async def run_pass(self) -> None:
        """Ingest and renew this node's lease; where leadership is held, settle what every
        live node is ingested past and follow settled blocks on bitcoind.

        The CPU-heavy steps run in the ledger process (`poold.ledger.worker`)."""
        await self.ingest()
        if self.ledger is None or self.worker is None or self.leadership is None:
            return
        await self.release_work(self.ledger)
        latest = await asyncio.to_thread(_latest_commitments, self.ledger)
        statement, credit = (None if c is None else bytes.fromhex(c) for c in latest)
        self.on_commitment(statement, credit)
        log_id = self.log_id()
        if log_id is not None:
            await asyncio.to_thread(
                nodes.renew,
                self.ledger,
                self.cfg.stratum.node_id,
                log_id,
                now_ms=self._now_ms(),
                lease_ms=self._lease_ms,
            )
        await self.renew_lease()
        self._note_leadership()
        if not self.leadership.leading():
            return
        # Every write of this pass is checked against the epoch it began in: a takeover
        # meanwhile refuses it (`Deposed`), whatever step it is in.
        fence = self.leadership.fence()
        with fence_set(fence):
            await self._lead(self.ledger, self.worker)

    @ledger_entry
    def _read_gate(self, ledger: Engine) -> nodes.Gate:
        now = self._now_ms()
        wait = int(self.cfg.ledger.node_wait_s * 1000)
        with ledger.connect() as conn:
            listed = nodes.states(conn, now_ms=now, wait_ms=wait)
        self.metrics.nodes = {
            n.node_id: (n.status, max(0, now - n.through_ms) / 1000) for n in listed
        }
        return nodes.gate_of(listed, now_ms=now, wait_ms=wait)

    @ledger_entry
    def _ingested_segment(self, ledger: Engine | None, node_id: int) -> int | None:
        """The segment a node's ingest checkpoint is in (None: nothing of it ingested)."""
        if ledger is None:
            return None
        with ledger.connect() as conn:
            return nodes.ingested_segment(conn, node_id)

    async def _ingest_from_stream(self, worker: Worker, stream: StreamConfig) -> None:
        """Rebuild each lapsed node's share log from the stream and ingest it: what its host
        shipped before it was lost counts, once (the mirror has the log's positions)."""
        lapsed = [
            node_id
            for node_id, (status, _lag) in self.metrics.nodes.items()
            if status in ("lapsed", "excluded") and node_id != self.cfg.stratum.node_id
        ]
        for node_id in lapsed:
            directory = self.cfg.stream.mirror_path / f"node-{node_id}"
            try:
                _read, added = await mirror(stream, node_id, directory)
            except StreamError as exc:
                log.warning("stream_mirror_failed", node=node_id, error=str(exc))
                continue
            if added or directory.exists():
                result = await worker.ingest(directory, node_id)
                if result.records:
                    log.info(
                        "ledger_ingested_from_stream",
                        node=node_id,
                        shares=result.shares,
                        through_ms=result.through_ms,
                    )

    async def _lead(self, ledger: Engine, worker: Worker) -> None:
        """The leader's share of a pass. Blocks settle only once every live node is ingested
        past their minute (the window counts whole minutes; a node's heartbeats also hold
        its watermark at any block still unrecorded, which PROP's round needs)."""
        gate = self.gate = await asyncio.to_thread(self._read_gate, ledger)
        if self.stream is not None and (gate.waiting or gate.excluded):
            await self._ingest_from_stream(worker, self.stream)
            gate = self.gate = await asyncio.to_thread(self._read_gate, ledger)
        if (gate.waiting, gate.excluded) != self._said:
            for note in gate.waiting:
                log.warning("settlement_waits_for_node", why=note)
            for note in gate.excluded:
                log.error("settlement_excludes_node", why=note)
            self._said = (gate.waiting, gate.excluded)
        scheme = self.cfg.pool.scheme
        if scheme in BLOCK_KEYS:
            settled = await worker.settle_blocks(
                self.cfg.pool.fee, scheme, gate.minute_ms(), gate.excluded_nodes, self._fence()
            )
            for s in settled:
                self.metrics.settlement_runs["block"] += 1
                log.info(
                    "block_settled",
                    hash=s.block_hash,
                    credits_sat=sum(s.credits.values()),
                    fee_sat=s.pool_fee_sat,
                    unallocated_sat=s.unallocated_sat,
                    nodes_excluded=gate.excluded or None,
                )
        if scheme == "fpps":
            await self.book_fpps(ledger, gate.through_ms)
        if self.cfg.tokens.enabled:
            if self.work_dirs:
                await self.follow_work()
            periods = await worker.settle_tokens(
                self.cfg.tokens,
                gate.through_ms,
                self.clock(),
                self._fence(),
                tuple(self.work_dirs.items()),
            )
            for period in periods:
                if period.settled is not None:
                    self.metrics.settlement_runs["tokens"] += 1
                    self.token_periods.append((period.period_start, period.settled))
                    log.info(
                        "token_period_settled",
                        period_start=period.period_start,
                        holders=len(period.settled.lines),
                        pot_sat=period.settled.holders_pot_sat,
                    )
                self.metrics.token_periods_waiting = int(period.waiting is not None)
                if period.settled is None and period.waiting != self._token_wait:
                    log.info(
                        "token_period_waiting", period_start=period.period_start, why=period.waiting
                    )
                    self._token_wait = period.waiting
        for change in await follow_blocks(
            ledger, self.bitcoind, orphan_depth=self.cfg.pool.orphan_depth
        ):
            log.info(
                "block_" + change.status, hash=change.block_hash, confirmations=change.confirmations
            )
        await self.anchor(ledger)
        if self.work_dirs:
            await self.cut_work_samples(ledger)
        # The network as mined now (when it changed): the hashprice statements and the fleet's
        # series are benchmarked against.
        if await sample_network(
            ledger,
            self.bitcoind,
            self.chain,
            now_s=int(self.clock()),
            fee_blocks=self.cfg.pool.fee_window_blocks,
        ):
            log.debug("network_sampled")

    def _fence(self) -> Fence | None:
        return None if self.leadership is None else self.leadership.fence()

    async def cut_work_samples(self, ledger: Engine) -> None:
        """Publish the work-proof sample of every period whose beacon block is mined."""
        from poold.tokens.work import build_proofs

        try:
            done = await build_proofs(
                ledger, self.bitcoind, self.cfg.tokens, tuple(self.work_dirs.items())
            )
        except (BitcoindError, OSError, ValueError) as exc:  # logged; the next pass tries again
            log.error("work_proof_failed", error=str(exc))
            return
        for start, why in done:
            if not why:
                log.info("work_proof_published", period_start=start)
                self._work_wait.pop(start, None)
                self._cut_work(start)
            elif self._work_wait.get(start) != why:
                log.info("work_proof_waiting", period_start=start, why=why)
                self._work_wait[start] = why

    def _cut_work(self, start: int) -> None:
        """A period's leaves are no longer needed: this node's and every mirrored node's."""
        self.on_work_cut(start)
        for keeper in self._mirror_keepers.values():
            keeper.cut(start)

    async def release_work(self, ledger: Engine) -> None:
        """Release the leaves of every held period that no longer needs them (settled, its
        sample published or no work root made): on every node, leading or not, so that no
        node's share-log retention waits for ever on a period it holds."""
        from poold.tokens.work import released

        held = sorted(
            {*self.work_held(), *(s for k in self._mirror_keepers.values() for s in k.built())}
        )
        if not held:
            return
        for start in await asyncio.to_thread(released, ledger, held):
            self._cut_work(start)

    async def follow_work(self) -> None:
        """The leader's copy of every other node's work-proof leaves: each node's share log
        mirrored from the stream (`[stream] mirror_path`/node-<id>, read on from where the
        last pass stopped) and the leaf file of each period it closed built there, as the
        node builds its own. A node whose log cannot be mirrored (no stream, or the stream
        no longer holds its records) is left out: a period with its fleet shares settles
        without a work root, said loudly (`tokens.work.commit_work`); while the stream
        cannot be reached, a period waits for the node's leaf file."""
        from poold.tokens.settle import period_of

        if self.stream is None:
            return
        own = self.cfg.stratum.node_id
        tokens = self.cfg.tokens
        for node_id, (status, _lag) in sorted(self.metrics.nodes.items()):
            if node_id == own:
                continue
            directory = self.cfg.stream.mirror_path / f"node-{node_id}"
            try:
                await mirror(self.stream, node_id, directory)
                keeper = self._mirror_keepers.get(node_id)
                if keeper is None and directory.exists():
                    keeper = self._mirror_keepers[node_id] = LeafKeeper(
                        directory,
                        node_id,
                        tokens.fleet_accounts,
                        lambda t: period_of(t, tokens),
                    )
                if keeper is None:
                    continue
                closed = status in ("stopped", "excluded")
                built = await asyncio.to_thread(keeper.build_due, self.clock(), closed=closed)
            except (StreamError, OSError, ValueError) as exc:
                # Records the stream no longer holds: that node's leaves cannot be built
                # (its periods settle without a root). Anything else passes: they wait.
                if isinstance(exc, StreamGap):
                    self.work_dirs.pop(node_id, None)
                else:
                    self.work_dirs.setdefault(node_id, directory / "work")
                if self._mirror_problem.get(node_id) != str(exc):
                    log.error("work_mirror_failed", node=node_id, error=str(exc))
                self._mirror_problem[node_id] = str(exc)
                continue
            self._mirror_problem.pop(node_id, None)
            self.work_dirs[node_id] = keeper.dir
            # The mirror keeps what the leaves or the node's ingest still need, no more.
            ingested = await asyncio.to_thread(self._ingested_segment, self.ledger, node_id)
            if ingested is not None:
                below = min(keeper.hold(), ingested)
                await asyncio.to_thread(
                    prune_segments, directory, below_segment=below, older_than=math.inf
                )
            for b in built:
                log.info("work_leaves_built", node=node_id, **b.fields())

    async def anchor(self, ledger: Engine) -> None:
        """The anchoring pass (`ledger.anchors`): evidence of found blocks, anchor transactions."""
        now_ms = self._now_ms()
        # After a refusal (an unfunded address, say) the wallet is asked again a minute later,
        # not at every pass.
        send = now_ms - self._anchor_refused_ms >= ANCHOR_RETRY_MS
        for a in await run_anchors(ledger, self.bitcoind, self.anchor_policy, now_ms, send=send):
            if a.event == "anchor_send_failed":
                self._anchor_refused_ms = now_ms
                self.metrics.anchor_failures += 1
                if a.error != self.anchor_problem:
                    log.warning("anchor_send_failed", error=a.error)
                self.anchor_problem = a.error
                continue
            if a.event == "anchor_evidence_unavailable":
                if a.block_hash not in self._unavailable:  # retried each pass, said once
                    self._unavailable.add(str(a.block_hash))
                    log.warning(a.event, block=a.block_hash, height=a.height, error=a.error)
                continue
            if a.event == "anchor_sent":
                self.metrics.anchors_sent += 1
                self.anchor_problem = None
            log.info(a.event, txid=a.txid, block=a.block_hash, height=a.height)

    async def close(self, wait_s: float) -> None:
        """One last pass, so everything answered `true` reaches the ledger now; the last
        ingest, the lease's release and the ledger process's end share `wait_s`, since the
        next start ingests whatever this one could not (a stalled database delays the stop by
        `wait_s` at most)."""
        if self.ledger is None or self.worker is None:
            return
        deadline = time.monotonic() + wait_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        try:
            await asyncio.wait_for(self.ingest(final=True), left())
        except (LedgerError, TimeoutError) as exc:
            log.warning("ledger_ingest_failed", error=str(exc) or "timed out")
        if self.leadership is not None:
            # The next leader need not wait for the lease to end; bounded, as a stalled
            # database must not hold the stop (the lease then ends by itself).
            with contextlib.suppress(TimeoutError):
                await self.bounded(self.leadership.release, min(1.0, max(0.1, left())))
        if not await self.worker.stop(left()):
            log.warning("ledger_worker_killed", waited_s=wait_s)
        self.ledger.dispose()
        if self.leadership is not None and self.leadership.engine is not self.ledger:
            self.leadership.engine.dispose()

    def abandon(self) -> None:
        """What the kernel does for a process killed with kill -9: its leadership and its
        database connections are gone, with no last pass (the fault simulator's kill; a real
        crash needs no call)."""
        if self.ledger is not None:
            self.ledger.dispose()
        if self.leadership is not None and self.leadership.engine is not self.ledger:
            self.leadership.engine.dispose()
        # Its lease is not given up: it ends by itself, as after a real crash.
        self.ledger = self.worker = self.leadership = None
