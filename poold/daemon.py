"""The composition root: builds every component from the Config and runs them in one TaskGroup.

Order of shutdown: stop accepting (miners get client.reconnect) -> flush and fsync the share log
-> close the node client. Nothing else in poold constructs components or holds global state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import structlog
from aiohttp import web
from sqlalchemy.engine import Engine

from accounting import TokenSettlement
from poold.api.app import ApiContext, make_app
from poold.api.events import EventHub, tail_journal
from poold.config import Config
from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.jobs.template import TemplateError, parse_template
from poold.ledger.blocks import follow_blocks
from poold.ledger.db import LedgerError, LedgerUnreachable, Timeouts, open_ledger
from poold.ledger.fpps import book_with_node
from poold.ledger.settle import BLOCK_KEYS
from poold.ledger_worker import LedgerWorker
from poold.metrics import Metrics
from poold.node.base import Node, NodeError, NodeRefused
from poold.node.rpc import RpcNode
from poold.node.simnet import SimNet
from poold.shares.format import BlockRecord, encode_share
from poold.shares.log import LogPosition, ShareLog, ShareLogError
from poold.stratum.extranonce import EXTRANONCE1_SIZE, ExtranoncePool
from poold.stratum.server import ServerLimits, StratumServer
from poold.stratum.session import AcceptedShare, SessionPolicy
from poold.stratum.tls import server_context
from poold.stratum.vardiff import VardiffConfig

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FoundBlock:
    height: int
    hash_hex: str
    accepted: bool
    reason: str | None
    account: str
    worker: str


class ShareRecorder:
    """The ShareSink: every accepted share goes to the share log; blocks are submitted at once.

    Shares accepted during one loop iteration are encoded together by `flush()`, which the
    server calls before it sends their replies (one write() for the batch). Anything that
    writes to the share log goes through `flush()` so records keep their order.

    When the log cannot take a batch (disk full, I/O error, fsync failing) every share of it
    has its unsent `true` replaced by an error, so no miner is told a share was recorded that
    was not; block records are held and written by the next flush that succeeds.
    """

    def __init__(
        self,
        sharelog: ShareLog,
        metrics: Metrics,
        node_id: int,
        submit_block: Callable[[AcceptedShare, str], None],
    ) -> None:
        self.sharelog = sharelog
        self.metrics = metrics
        self.node_id = node_id
        self.submit_block = submit_block
        self._batch: list[AcceptedShare] = []
        self._held: list[bytes] = []  # block records the log has not taken yet
        self.failing: str | None = None  # why the last write failed (None: it succeeded)

    def share_accepted(self, share: AcceptedShare) -> None:
        self._batch.append(share)
        v = share.verdict
        if v.is_block:
            self.metrics.blocks_found += 1
            block = share.job.block(v.header, share.extranonce1, share.extranonce2)
            self.submit_block(share, block.hex())

    def record_block(self, record: BlockRecord) -> None:
        """Queue a block record; written by the next `flush()`, held until one succeeds."""
        self._held.append(orjson.dumps(record.to_json()))

    @property
    def held_blocks(self) -> int:
        """Block records waiting for the share log to take writes again."""
        return len(self._held)

    def held_records(self) -> list[str]:
        return [r.decode() for r in self._held]

    def flush(self) -> None:
        """Encode the batch into the share log and write it (from here it survives kill -9)."""
        batch, self._batch = self._batch, []
        encoded, batch = self._encode(batch) if batch else ([], batch)
        payloads = encoded + self._held  # a finding share before its block record
        if not payloads:
            return
        try:
            self.sharelog.append_payloads(payloads)
            self.sharelog.flush()
        except ShareLogError as exc:
            for share in batch:
                share.session.revoke(share, NOT_RECORDED)
            if self.failing is None:
                log.error("sharelog_write_failed", error=str(exc), refused_shares=len(batch))
            self.failing = str(exc)
            self.metrics.sharelog_failed_batches += 1
            self.metrics.sharelog_ok = 0
            return
        self._held = []
        if self.failing is not None:
            log.warning("sharelog_recovered", after=self.failing)
            self.failing = None
            self.metrics.sharelog_ok = 1

    def _encode(self, batch: list[AcceptedShare]) -> tuple[list[bytes], list[AcceptedShare]]:
        """The batch's records, and the shares they are (a share that cannot be encoded is a
        bug: it is logged and answered with an error, and the others are kept)."""
        node = self.node_id
        try:
            return [_encode(s, node) for s in batch], batch
        except (struct.error, ValueError):
            pass
        payloads, kept = [], []
        for s in batch:
            try:
                payloads.append(_encode(s, node))
            except (struct.error, ValueError):
                log.exception("share_not_encodable", account=s.account, worker=s.worker)
                s.session.revoke(s, NOT_RECORDED)
            else:
                kept.append(s)
        return payloads, kept


#: The error a miner gets instead of `true` when its share could not be recorded.
NOT_RECORDED = "share not recorded (pool storage error): not credited"


async def submit_outcome(node: Node, block_hex: str) -> tuple[bool | None, str | None]:
    """Submit a found block: (True, None) when the node took it, (False, reason) when it
    refused, (None, why) when it did not answer (it may have taken it: block following asks
    the chain later)."""
    try:
        reason = await node.submit_block(block_hex)
    except NodeRefused as exc:  # an answer: the node did not take it
        return False, f"submit refused: {exc}"
    except NodeError as exc:  # no answer
        return None, f"submit failed: {exc}"
    return reason is None, reason


def block_record(
    share: AcceptedShare, accepted: bool | None, reason: str | None, ts_ms: int, node_id: int
) -> BlockRecord:
    """The share-log record of a block `share` found, with the node's answer: accepted, or
    refused for `reason`, or None when the submission got no answer (the node may have taken
    it: block following finds out)."""
    template = share.job.template
    return BlockRecord(
        ts_ms=ts_ms,
        node=node_id,
        height=template.height,
        hash=share.verdict.block_hash_hex,
        accepted=accepted,
        reason=reason,
        account=share.account,
        worker=share.worker,
        reward_sat=template.coinbase_value_sat,
        bits=template.bits,
    )


def _encode(s: AcceptedShare, node: int) -> bytes:
    return encode_share(  # positional, in encode_share's order: the hot path
        int(s.time * 1000),
        node,
        s.account,
        s.worker,
        s.job.job_id,
        s.job.height,
        s.job.bits,
        s.difficulty.numerator,
        s.difficulty.denominator,
        s.extranonce1,
        s.extranonce2,
        s.ntime,
        s.nonce,
        s.verdict.version,
        s.verdict.is_block,
    )


def _freeze_startup_heap() -> None:
    """Move everything built so far (modules, config, engine) out of the cyclic collector.

    Those objects live as long as the process; with them in the oldest generation every full
    collection walked them all (~60 ms on the Stratum loop: a latency spike and ~2 us a share).
    """
    gc.collect()
    gc.freeze()


class Daemon:
    def __init__(
        self,
        cfg: Config,
        *,
        node: Node | None = None,
        clock: Callable[[], float] = time.time,
        reuse_port: bool = False,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.reuse_port = reuse_port
        self.metrics = Metrics()
        self.sharelog = ShareLog(
            cfg.sharelog.path,
            segment_bytes=cfg.sharelog.segment_bytes,
            retention_s=cfg.sharelog.retention_hours * 3600,
        )
        if node is None:
            if cfg.node.kind == "simnet":
                node = SimNet(
                    difficulty=cfg.node.simnet_difficulty,
                    tx_count=cfg.node.simnet_tx_count,
                    clock=clock,
                )
            else:
                node = RpcNode(
                    cfg.node.url, cfg.node.user, cfg.node.password, timeout_s=cfg.node.timeout_s
                )
        self.node: Node = node
        st = cfg.stratum
        self.jobs = JobManager(
            CoinbaseSpec(
                payout_script=cfg.pool.payout_script,
                tag=cfg.pool.coinbase_tag.encode(),
                extranonce1_size=EXTRANONCE1_SIZE,
                extranonce2_size=st.extranonce2_size,
            ),
            stale_grace_s=st.stale_grace_s,
            job_retain_s=st.job_retain_s,
        )
        self.recorder = ShareRecorder(
            self.sharelog, self.metrics, st.node_id, self.submit_block_soon
        )
        self.server = StratumServer(
            limits=ServerLimits(
                max_connections=st.max_connections,
                max_line_bytes=st.max_line_bytes,
                idle_timeout_s=st.idle_timeout_s,
                ban_s=st.ban_s,
                allowlist=frozenset(st.ban_allowlist),
                max_write_buffer=st.max_write_buffer_bytes,
                max_connections_per_ip=st.max_connections_per_ip,
                max_workers_per_ip=st.max_workers_per_ip,
            ),
            policy=SessionPolicy(
                start_difficulty=st.start_difficulty,
                vardiff=VardiffConfig(
                    target_share_time_s=st.vardiff_target_share_time_s,
                    retarget_time_s=st.vardiff_retarget_time_s,
                    variance=st.vardiff_variance,
                    min_difficulty=st.min_difficulty,
                    max_difficulty=st.max_difficulty,
                ),
                version_mask=st.version_mask_int,
                extranonce2_size=st.extranonce2_size,
                junk_limit=st.junk_limit,
                invalid_ratio=st.invalid_ratio,
                invalid_min=st.invalid_min_shares,
                max_workers=st.max_workers_per_connection,
            ),
            jobs=self.jobs,
            sink=self.recorder,
            metrics=self.metrics,
            extranonces=ExtranoncePool(st.node_id),
            before_reply=self.recorder.flush,
            clock=clock,
        )
        self.address: tuple[str, int] | None = None
        self.tls_address: tuple[str, int] | None = None  # the stratum+ssl listener, if any
        self.api_addresses: list[tuple[str, int]] = []  # HTTP listeners (API, admin)
        self.events = EventHub()
        self.token_periods: list[tuple[int, TokenSettlement]] = []  # settled by this process
        self.node_seen = 0.0  # clock time of the last successful node poll
        self.ledger: Engine | None = None
        self.worker: LedgerWorker | None = None  # the ledger process, when the daemon ingests
        self.api_ctx: ApiContext | None = None  # the API's view, told when the ledger connects
        self._fpps_booked = 0  # period end of the last FPPS booking made by this process
        self._token_wait: str | None = None  # what the next token period waits for (logged once)
        self.ingested_shares = 0
        self.ingest_position: LogPosition | None = None  # the ledger's checkpoint, once known
        self.ledger_problem: str | None = None  # why the last ledger pass failed
        self.blocks: list[FoundBlock] = []
        self.ready = asyncio.Event()  # a first job exists
        self.listening = asyncio.Event()  # stratum is bound; `address` is set
        self._refresh = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- blocks ----------------------------------------------------------------------------------

    def submit_block_soon(self, share: AcceptedShare, block_hex: str) -> None:
        task = asyncio.get_running_loop().create_task(self._submit_block(share, block_hex))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submit_block(self, share: AcceptedShare, block_hex: str) -> None:
        height = share.job.template.height
        hash_hex = share.verdict.block_hash_hex
        outcome, reason = await submit_outcome(self.node, block_hex)
        accepted = outcome is True
        if accepted:
            self.metrics.blocks_accepted += 1
        else:
            self.metrics.blocks_rejected += 1
        # Found when the finding share was: a slow submit must not move the window's end.
        found_ms = int(share.time * 1000)
        self.recorder.record_block(
            block_record(share, outcome, reason, found_ms, self.cfg.stratum.node_id)
        )
        self.recorder.flush()  # after the finding share's record; held if the log fails
        self.blocks.append(
            FoundBlock(height, hash_hex, accepted, reason, share.account, share.worker)
        )
        self.events.publish(
            {
                "type": "block_found",
                "height": height,
                "hash": hash_hex,
                "accepted": accepted,
                "reason": reason,
                "finder": f"{share.account}.{share.worker}",
                "time_ms": round(self.clock() * 1000),
            }
        )
        log.info(
            "block_found",
            height=height,
            hash=hash_hex,
            accepted=accepted,
            reason=reason,
            account=share.account,
            worker=share.worker,
        )
        self._refresh.set()

    # -- loops -----------------------------------------------------------------------------------

    async def _update_job(self) -> bool:
        raw = await self.node.get_template()
        template = parse_template(raw)
        job = self.jobs.new_job(template, self.clock())
        self.metrics.jobs += 1
        await self.server.broadcast(job)
        log.debug(
            "job_published",
            job=job.job_id,
            height=template.height,
            clean=job.clean,
            txs=len(template.transactions),
        )
        return job.clean

    async def _poll_node(self) -> None:
        cfg = self.cfg.node
        last_tip: str | None = None
        last_job = 0.0
        backoff = cfg.poll_interval_s
        while True:
            try:
                tip = await self.node.best_block_hash()
                now = self.clock()
                due = now - last_job >= cfg.refresh_interval_s
                if tip != last_tip or due or self._refresh.is_set():
                    self._refresh.clear()
                    await self._update_job()
                    last_tip, last_job = tip, now
                    self.ready.set()
                self.node_seen = now
                backoff = cfg.poll_interval_s
            except NodeError as exc:
                log.warning("node_unavailable", error=str(exc), retry_s=backoff)
                backoff = min(backoff * 2, 10.0)
            except TemplateError as exc:
                log.error("template_rejected", error=str(exc))
                backoff = min(backoff * 2, 10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh.wait(), backoff)

    async def _housekeeping(self) -> None:
        last_stats = self.clock()
        last_prune = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = self.clock()
            self.recorder.flush()  # records appended outside a reply (none today) still land
            await self.server.tick()
            self.jobs.prune(now)
            if now - last_prune > 3600 and self.ingest_position is not None:
                # Only below the segment ingest has reached: never a record not in the ledger.
                for path in self.sharelog.prune(self.ingest_position.segment, now):
                    log.info("sharelog_segment_removed", path=str(path))
                last_prune = now
            if now - last_stats >= self.cfg.log.stats_interval_s:
                log.info("stats", **self.metrics.snapshot())
                last_stats = now

    @property
    def _timeouts(self) -> Timeouts:
        cfg = self.cfg.ledger
        return Timeouts(connect_s=cfg.connect_timeout_s, statement_s=cfg.statement_timeout_s)

    def _open_ledger(self) -> Engine:
        cfg = self.cfg.ledger
        return open_ledger(cfg.url, migrate_schema=cfg.auto_migrate, timeouts=self._timeouts)

    async def _attach_ledger(self) -> None:
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
        if self.api_ctx is not None:
            self.api_ctx.engine, self.api_ctx.offload = engine, worker.read
        self.ledger_problem = None
        log.info("ledger_connected")

    async def _ledger_loop(self, stopping: asyncio.Event) -> None:
        """Connect to the ledger (retrying while it cannot be reached), then run ledger passes
        until `stopping`. Stratum and the share log never wait for any of it."""
        backoff = 1.0
        while self.ledger is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            if stopping.is_set():
                return
            try:
                await self._attach_ledger()
            except LedgerError as exc:
                self.ledger_problem = f"the ledger is not connected: {exc}"
                log.warning("ledger_unavailable", error=str(exc), retry_s=backoff)
                backoff = min(backoff * 2, 30.0)
        assert self.ledger is not None
        tailer = (
            asyncio.create_task(tail_journal(self.ledger, self.events))
            if self.api_ctx is not None
            else None
        )
        try:
            await self._ingest_loop(stopping)
        finally:
            if tailer is not None:
                tailer.cancel()

    async def _ingest(self) -> None:
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

    async def _book_fpps(self, ledger: Engine) -> None:
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

    async def _ledger_pass(self) -> None:
        """Ingest, settle new blocks (and book FPPS), follow settled blocks on the node.

        The CPU-heavy steps run in the ledger process (`poold.ledger_worker`)."""
        await self._ingest()
        scheme = self.cfg.pool.scheme
        if self.ledger is None or self.worker is None or scheme not in BLOCK_KEYS:
            return
        # Only blocks of closed minutes: the ingest just before this read every share of
        # those (the window counts whole minutes; a later share cannot join a closed one).
        closed_ms = int(self.clock()) // 60 * 60_000
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
            await self._book_fpps(self.ledger)
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

    async def _ingest_loop(self, stopping: asyncio.Event) -> None:
        """Ledger passes every interval until `stopping`; a pass in progress (in a thread,
        which cannot be cancelled) is always finished before this returns."""
        interval = self.cfg.ledger.ingest_interval_s
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
            if stopping.is_set():
                return
            try:
                await self._ledger_pass()
                self.ledger_problem = None
            except (LedgerError, NodeError) as exc:
                # Shares stay in the share log and blocks stay pending; the next pass retries.
                log.warning("ledger_pass_failed", error=str(exc), retry_s=interval)
                self.ledger_problem = str(exc)
            except Exception as exc:  # a bug: logged with its traceback, never fatal here
                # Stratum and the share log must outlive any ledger fault: the shares wait in
                # the log, and the next pass starts from the committed checkpoint.
                log.exception("ledger_pass_crashed", retry_s=interval)
                self.ledger_problem = f"ledger pass crashed: {exc!r}"

    def readiness(self) -> dict[str, str]:
        """What keeps this daemon from serving correctly right now (for /readyz)."""
        problems = {}
        if self.recorder.failing is not None or self.sharelog.error is not None:
            why = self.recorder.failing or self.sharelog.error
            problems["sharelog"] = f"shares are refused, the share log cannot take them: {why}"
        limit = max(10 * self.cfg.node.poll_interval_s, 5.0)
        if self.clock() - self.node_seen > limit:
            problems["node"] = f"no answer from the node for over {limit:.0f} s"
        if self.ledger_problem is not None:
            problems["ledger"] = self.ledger_problem
        backlog = self.metrics.shares_accepted - self.ingested_shares
        if self.ledger is not None and backlog > 1_000_000:
            problems["ingest"] = f"{backlog} accepted shares not yet in the ledger"
        return problems

    async def _start_api(self) -> list[web.AppRunner]:
        api = self.cfg.api
        if not api.listen:
            return []
        ctx = self.api_ctx = ApiContext(
            self.cfg,
            self.metrics,
            self.ledger,
            self.readiness,
            self.clock,
            self.events,
            offload=self.worker.read if self.worker is not None else None,
        )
        apps = [(api.listen, make_app(ctx, admin=not api.admin_listen))]
        if api.admin_listen:
            apps.append((api.admin_listen, make_app(ctx, public=False)))
        runners = []
        for listen, app in apps:
            # A request stuck on a database that stopped answering must not hold shutdown.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            host, port = listen.rsplit(":", 1)
            site = web.TCPSite(runner, host, int(port))
            await site.start()
            runners.append(runner)
            bound = runner.addresses[-1]
            self.api_addresses.append((str(bound[0]), int(bound[1])))
            log.info("api_listening", host=host, port=self.api_addresses[-1][1])
        return runners

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down in order.

        A ledger that cannot be reached does not stop the start (the ledger loop connects
        when it can); one that answers but is unusable (no schema, a wrong version) does."""
        ingests = self.cfg.ledger.ingest_interval_s > 0
        if ingests:
            try:
                await self._attach_ledger()
            except LedgerUnreachable as exc:
                self.ledger_problem = f"the ledger is not connected: {exc}"
                log.warning("ledger_unavailable", error=str(exc), retry=True)
        self.sharelog.open()
        wait_s = self.cfg.ledger.shutdown_wait_s
        try:
            async with asyncio.TaskGroup() as tg:
                poller = tg.create_task(self._poll_node())
                ready = asyncio.create_task(self.ready.wait())
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                if not stop.is_set():
                    st = self.cfg.stratum
                    self.address = await self.server.start(
                        st.host, st.port, reuse_port=self.reuse_port
                    )
                    if st.tls_listen and st.tls_cert is not None and st.tls_key is not None:
                        self.tls_address = await self.server.start(
                            st.tls_host,
                            st.tls_port,
                            reuse_port=self.reuse_port,
                            tls=server_context(st.tls_cert, st.tls_key),
                        )
                    runners = await self._start_api()
                    self.listening.set()
                    _freeze_startup_heap()
                    self.sharelog.start_group_commit(self.cfg.sharelog.fsync_interval_ms / 1000)
                    housekeeping = tg.create_task(self._housekeeping())
                    stopping = asyncio.Event()
                    ledger = tg.create_task(self._ledger_loop(stopping)) if ingests else None
                    await stopped
                    await self.server.stop(reconnect=True)
                    self.events.close()  # ends every event stream, so cleanup is quick
                    for runner in runners:
                        await runner.cleanup()
                    housekeeping.cancel()
                    stopping.set()
                    if ledger is not None:
                        # A pass in progress may finish; one stuck on the database is left
                        # (its transaction rolls back; the shares are in the share log).
                        done, _ = await asyncio.wait({ledger}, timeout=wait_s)
                        if not done:
                            log.warning("ledger_pass_abandoned", waited_s=wait_s)
                            ledger.cancel()
                stopped.cancel()
                poller.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10)
        finally:
            # On every way out (a crash included) miners stop before the share log closes: no
            # share may be validated against a closed log.
            await self.server.stop(reconnect=True)
            with contextlib.suppress(ShareLogError):
                self.sharelog.sync()  # clears an fsync refusal if the disk works again
            self.recorder.flush()
            if self.recorder.held_blocks:  # the operator must see these: blocks on the chain
                log.error("block_records_unwritten", records=self.recorder.held_records())
            self.sharelog.close()
            await self._last_ingest(wait_s)
            await self.node.close()
            log.info("daemon_stopped", **self.metrics.snapshot())

    async def _last_ingest(self, wait_s: float) -> None:
        """One last pass, so everything answered `true` reaches the ledger now; bounded, since
        the next start ingests whatever this one could not."""
        if self.ledger is None or self.worker is None:
            return
        try:
            await asyncio.wait_for(self._ingest(), wait_s)
        except (LedgerError, TimeoutError) as exc:
            log.warning("ledger_ingest_failed", error=str(exc) or "timed out")
        if not await self.worker.stop(wait_s):
            log.warning("ledger_worker_killed", waited_s=wait_s)
        self.ledger.dispose()
