"""The ledger scheduler: everything the daemon does to its ledger, on a timer.

Connects (retrying while the database cannot be reached), then every `ingest_interval_s`
runs one pass: ingest the share log, settle blocks of closed minutes, book FPPS, settle token
periods, follow settled blocks on the node. The CPU-heavy steps run in the ledger process
(`poold.ledger_worker`). Stratum and the share log never wait for any of it. The several-
daemons work makes this the place where leadership is decided. Imports the ledger, the node
client and the event hub; never Stratum.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy.engine import Engine

from accounting import TokenSettlement
from poold.api.events import EventHub, tail_journal
from poold.config import Config
from poold.ledger.blocks import follow_blocks
from poold.ledger.db import LedgerError, Timeouts, open_ledger
from poold.ledger.fpps import book_with_node
from poold.ledger.settle import BLOCK_KEYS
from poold.ledger_worker import LedgerWorker
from poold.metrics import Metrics
from poold.node.base import Node, NodeError
from poold.shares.log import LogPosition

log = structlog.get_logger(__name__)

#: Runs a read query in the ledger process: offload(fn, *args).
Offload = Callable[..., Awaitable[Any]]


class LedgerScheduler:
    def __init__(
        self,
        cfg: Config,
        node: Node,
        metrics: Metrics,
        events: EventHub,
        clock: Callable[[], float],
        *,
        on_connect: Callable[[Engine, Offload], None] = lambda _engine, _offload: None,
        events_wanted: bool = False,
        unrecorded_since: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.cfg, self.node, self.metrics, self.events, self.clock = (
            cfg,
            node,
            metrics,
            events,
            clock,
        )
        self.on_connect = on_connect  # told the engine and the worker's reader on connect
        self.events_wanted = events_wanted  # tail the journal into `events` (the API is on)
        # When the oldest found block whose record is not in the share log yet was found.
        self.unrecorded_since = unrecorded_since
        self.ledger: Engine | None = None
        self.worker: LedgerWorker | None = None  # the ledger process
        self.problem: str | None = None  # why the last pass (or connection) failed
        self.ingested_shares = 0
        self.ingest_position: LogPosition | None = None  # the ledger's checkpoint, once known
        self.token_periods: list[tuple[int, TokenSettlement]] = []  # settled by this process
        self._fpps_booked = 0  # period end of the last FPPS booking made by this process
        self._token_wait: str | None = None  # what the next token period waits for (logged once)

    def readiness(self) -> dict[str, str]:
        problems = {}
        if self.problem is not None:
            problems["ledger"] = self.problem
        backlog = self.metrics.shares_accepted - self.ingested_shares
        if self.ledger is not None and backlog > 1_000_000:
            problems["ingest"] = f"{backlog} accepted shares not yet in the ledger"
        return problems

    @property
    def _timeouts(self) -> Timeouts:
        cfg = self.cfg.ledger
        return Timeouts(connect_s=cfg.connect_timeout_s, statement_s=cfg.statement_timeout_s)

    def _open_ledger(self) -> Engine:
        cfg = self.cfg.ledger
        return open_ledger(cfg.url, migrate_schema=cfg.auto_migrate, timeouts=self._timeouts)

    async def attach(self) -> None:
        """Open the ledger and start its worker process; on success the API reads it too."""
        engine = await asyncio.to_thread(self._open_ledger)  # never block the loop
        worker = LedgerWorker(self.cfg.ledger.url, timeouts=self._timeouts)
        try:
            await worker.start()
        except LedgerError:
            await worker.stop(0)
            engine.dispose()
            raise
        self.ledger, self.worker = engine, worker
        self.on_connect(engine, worker.read)
        self.problem = None
        log.info("ledger_connected")

    async def run(self, stopping: asyncio.Event) -> None:
        """Connect to the ledger (retrying while it cannot be reached), then run ledger passes
        until `stopping`. Stratum and the share log never wait for any of it."""
        backoff = 1.0
        while self.ledger is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            if stopping.is_set():
                return
            try:
                await self.attach()
            except LedgerError as exc:
                self.problem = f"the ledger is not connected: {exc}"
                log.warning("ledger_unavailable", error=str(exc), retry_s=backoff)
                backoff = min(backoff * 2, 30.0)
        assert self.ledger is not None
        tailer = (
            asyncio.create_task(tail_journal(self.ledger, self.events))
            if self.events_wanted
            else None
        )
        try:
            await self._loop(stopping)
        finally:
            if tailer is not None:
                tailer.cancel()

    async def ingest(self) -> None:
        if self.worker is None:
            return
        result = await self.worker.ingest(self.cfg.sharelog.path, self.cfg.stratum.node_id)
        self.ingested_shares += result.shares
        self.ingest_position = result.position
        self.metrics.ingest_lag_shares = max(0, self.metrics.shares_accepted - self.ingested_shares)
        if result.records:
            log.debug(
                "ledger_ingested", shares=result.shares, slices=result.slices, blocks=result.blocks
            )

    async def book_fpps(self, ledger: Engine) -> None:
        """Once per FPPS period: book every share slice ingested so far."""
        pool = self.cfg.pool
        end = int(self.clock()) // pool.fpps_period_s * pool.fpps_period_s
        if end == self._fpps_booked:
            return
        booked = await book_with_node(
            ledger,
            self.node,
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
        """Ingest, settle new blocks (and book FPPS), follow settled blocks on the node.

        The CPU-heavy steps run in the ledger process (`poold.ledger_worker`)."""
        # Only blocks of closed minutes: the ingest just below reads every share of those (the
        # window counts whole minutes; a later share cannot join a closed one). And only
        # blocks before the minute of any block whose record is not in the log yet (read
        # before the ingest): a PROP round ends at the previous block, so every earlier block
        # must be in the ledger first.
        closed_ms = int(self.clock()) // 60 * 60_000
        unrecorded = self.unrecorded_since()
        if unrecorded is not None:
            closed_ms = min(closed_ms, unrecorded // 60_000 * 60_000)
        await self.ingest()
        scheme = self.cfg.pool.scheme
        if self.ledger is None or self.worker is None or scheme not in BLOCK_KEYS:
            return
        settled = await self.worker.settle_blocks(self.cfg.pool.fee, scheme, closed_ms)
        for s in settled:
            self.metrics.settlement_runs["block"] += 1
            log.info(
                "block_settled",
                hash=s.block_hash,
                credits_sat=sum(s.credits.values()),
                fee_sat=s.pool_fee_sat,
                unallocated_sat=s.unallocated_sat,
            )
        if scheme == "fpps":
            await self.book_fpps(self.ledger)
        if self.cfg.tokens.enabled:
            for period in await self.worker.settle_tokens(self.cfg.tokens):
                if period.settled is not None:
                    self.metrics.settlement_runs["tokens"] += 1
                    self.token_periods.append((period.period_start, period.settled))
                    log.info(
                        "token_period_settled",
                        period_start=period.period_start,
                        holders=len(period.settled.lines),
                        pot_sat=period.settled.holders_pot_sat,
                    )
                elif period.waiting != self._token_wait:
                    log.info(
                        "token_period_waiting", period_start=period.period_start, why=period.waiting
                    )
                    self._token_wait = period.waiting
        for change in await follow_blocks(
            self.ledger, self.node, orphan_depth=self.cfg.pool.orphan_depth
        ):
            log.info(
                "block_" + change.status, hash=change.block_hash, confirmations=change.confirmations
            )

    async def _loop(self, stopping: asyncio.Event) -> None:
        """Ledger passes every interval until `stopping`; a pass in progress (in a thread,
        which cannot be cancelled) is always finished before this returns."""
        interval = self.cfg.ledger.ingest_interval_s
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
            if stopping.is_set():
                return
            try:
                await self.run_pass()
                self.problem = None
            except (LedgerError, NodeError) as exc:
                # Shares stay in the share log and blocks stay pending; the next pass retries.
                log.warning("ledger_pass_failed", error=str(exc), retry_s=interval)
                self.problem = str(exc)
                self.metrics.ledger_pass_failures += 1
            except Exception as exc:  # a bug: logged with its traceback, never fatal here
                # Stratum and the share log must outlive any ledger fault: the shares wait in
                # the log, and the next pass starts from the committed checkpoint.
                log.exception("ledger_pass_crashed", retry_s=interval)
                self.problem = f"ledger pass crashed: {exc!r}"
                self.metrics.ledger_pass_failures += 1

    async def close(self, wait_s: float) -> None:
        """One last pass, so everything answered `true` reaches the ledger now; bounded, since
        the next start ingests whatever this one could not."""
        if self.ledger is None or self.worker is None:
            return
        try:
            await asyncio.wait_for(self.ingest(), wait_s)
        except (LedgerError, TimeoutError) as exc:
            log.warning("ledger_ingest_failed", error=str(exc) or "timed out")
        if not await self.worker.stop(wait_s):
            log.warning("ledger_worker_killed", waited_s=wait_s)
        self.ledger.dispose()
