"""The composition root: builds every component from the Config and runs them in one TaskGroup.

It only wires: the job feed (`bitcoind/feed.py`) polls bitcoind and publishes jobs to the
Stratum server; the server hands accepted shares to the share writer (`shares/writer.py`), which
hands blocks to the block submitter (`bitcoind/submitter.py`); the ledger scheduler
(`ledger/scheduler.py`) runs ingest, settlement and block following; the API reads the ledger.
Order of shutdown: stop accepting (miners get client.reconnect) -> flush and fsync the share
log -> last ingest -> close the bitcoind client. Nothing else in poold constructs components or
holds global state.

What the world gives the daemon is injected here and only here: the clock, the share log's
disk (`FileOps`), bitcoind, how the ledger and its worker are opened (`LedgerAccess`) and how
the share stream is reached (`stream_connect`). The
fault simulator builds its daemons through this same class with its own clock, disk, database
and bitcoind, so the wiring it tests is the wiring that runs in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy.engine import Engine

from accounting import TokenSettlement
from poold.api import views
from poold.api.app import make_app
from poold.api.base import ApiContext
from poold.bitcoind.client import AnchorWallet, Bitcoind, BitcoindError
from poold.bitcoind.feed import JobFeed
from poold.bitcoind.make import make_bitcoind
from poold.bitcoind.rpc import RpcBitcoind
from poold.bitcoind.submitter import BlockSubmitter, FoundBlock
from poold.config import Config
from poold.events import EventHub
from poold.jobs.job import Job
from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.ledger.db import LedgerUnreachable
from poold.ledger.scheduler import LedgerScheduler, Offload
from poold.ledger.worker import LedgerAccess
from poold.metrics import Metrics
from poold.shares.leaves import LeafKeeper
from poold.shares.log import OS_FILE_OPS, FileOps, ShareLog, ShareLogError
from poold.shares.stream import StreamConfig, StreamError, StreamShipper
from poold.shares.writer import ShareWriter
from poold.stratum.extranonce import EXTRANONCE1_SIZE, ExtranoncePool
from poold.stratum.server import ServerLimits, StratumServer
from poold.stratum.session import SessionPolicy
from poold.stratum.tls import server_context
from poold.stratum.vardiff import VardiffConfig

log = structlog.get_logger(__name__)


class StartupError(RuntimeError):
    """The daemon must not serve: the message says why and what to change."""


GC_YOUNG_THRESHOLD = 20_000


def _freeze_startup_heap() -> None:
    """Move everything built so far (modules, config, engine) out of the cyclic collector.

    Those objects live as long as the process; with them in the oldest generation every full
    collection walked them all (~60 ms on the Stratum loop: a latency spike and ~2 us a share).
    The youngest generation is collected every `GC_YOUNG_THRESHOLD` net allocations instead of
    700: a share's objects die by reference count (the hot path makes no cycles), so the
    collector mostly walked the duplicate-key tuples each share leaves on its job.
    """
    gc.collect()
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class Daemon:
    def __init__(
        self,
        cfg: Config,
        *,
        bitcoind: Bitcoind | None = None,
        clock: Callable[[], float] = time.time,
        disk: FileOps = OS_FILE_OPS,
        ledger_access: LedgerAccess | None = None,
        reuse_port: bool = False,
        metrics_dir: Path | None = None,
        stream_connect: Callable[[StreamConfig], Awaitable[tuple[Any, Any]]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.reuse_port = reuse_port
        # With several worker processes: where each writes its metrics for the one serving
        # /metrics to add up (None: a single process).
        self.metrics_dir = metrics_dir
        self.metrics = Metrics()
        self.sharelog = ShareLog(
            cfg.sharelog.path,
            segment_bytes=cfg.sharelog.segment_bytes,
            retention_s=cfg.sharelog.retention_hours * 3600,
            node_id=cfg.stratum.node_id,
            ops=disk,
        )
        self.bitcoind: Bitcoind = (
            bitcoind
            if bitcoind is not None
            else make_bitcoind(cfg.bitcoind, clock, cfg.pool.network)
        )
        st = cfg.stratum
        # Read now, before anything is opened or bound: an unusable certificate or key stops
        # the start naming the file and its config key (`TlsConfigError`).
        self.tls_context = (
            server_context(st.tls_cert, st.tls_key)
            if st.tls_listen and st.tls_cert is not None and st.tls_key is not None
            else None
        )
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
        self.events = EventHub()
        self.feed = JobFeed(
            self.bitcoind, self.jobs, self.server_broadcast, self.metrics, cfg.bitcoind, clock
        )
        self.writer = ShareWriter(
            self.sharelog,
            self.metrics,
            st.node_id,
            lambda share, block_hex: self.submitter.submit_soon(share, block_hex),
        )
        self.submitter = BlockSubmitter(
            self.bitcoind,
            self.writer,
            self.metrics,
            self.events,
            node_id=st.node_id,
            clock=clock,
            on_found=self.feed.refresh.set,
        )
        if cfg.sharelog.reply_after == "fsync":  # true only once fdatasync covers the share
            self.writer.reply_after_fsync = True
            self.sharelog.on_synced = self.writer.on_synced
        # No heartbeat may promise a time past a found block whose record is not written.
        self.writer.unrecorded_since = self.submitter.oldest_unrecorded_ms
        # The work proof's leaves of each token period, beside the share log; retention
        # keeps every segment of a period whose sample is not cut yet.
        self.leaves: LeafKeeper | None = None
        self._leaves_due = 0.0
        if cfg.tokens.enabled and cfg.tokens.work_proof:
            from poold.tokens.settle import period_of

            tokens = cfg.tokens
            self.leaves = LeafKeeper(
                cfg.sharelog.path,
                st.node_id,
                tokens.fleet_accounts,
                lambda t: period_of(t, tokens),
            )
            self.sharelog.hold = self.leaves.hold
        anchor_wallet = None
        if cfg.anchors.enabled:
            if not isinstance(self.bitcoind, AnchorWallet):
                raise StartupError(
                    "[anchors] enabled needs a bitcoind whose wallet sends anchor transactions "
                    '([bitcoind] kind = "rpc" with a wallet, or the simnet)'
                )
            anchor_wallet = self.bitcoind
        sc = cfg.stream
        stream = (
            StreamConfig(
                sc.url,
                sc.stream,
                sc.subject,
                sc.replicas,
                sc.timeout_s,
                min_replicas=sc.min_replicas,
                verify_interval_s=sc.verify_interval_s,
            )
            if sc.url
            else None
        )
        self.shipper = (
            StreamShipper(
                stream,
                cfg.sharelog.path,
                st.node_id,
                lambda: self.sharelog.log_id,
                written=lambda: self.sharelog.position,
                durable=lambda: self.sharelog.synced,
                ingested=lambda: self.scheduler.ingest_position,
                clock=clock,
                connector=stream_connect,
            )
            if stream is not None
            else None
        )
        self._lag_over = False  # the stream lags past [stream] max_lag_s (said once)
        if self.shipper is not None:
            self.writer.refusal = self._stream_refusal
        self.scheduler = LedgerScheduler(
            cfg,
            self.bitcoind,
            self.metrics,
            self.events,
            clock,
            on_connect=self._ledger_connected,
            events_wanted=bool(cfg.api.listen),
            log_id=lambda: self.sharelog.log_id,
            host=f"{socket.gethostname()}:{os.getpid()}",
            stream=stream,
            on_commitment=self._statement_commitment,
            access=ledger_access,
            anchor_wallet=anchor_wallet,
            chain=self._mined_now,
        )
        self.scheduler.durable_until = lambda: self.sharelog.synced
        if self.leaves is not None:
            leaves = self.leaves
            self.scheduler.on_work_cut = leaves.cut
            self.scheduler.work_held = lambda: list(leaves.built())
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
            sink=self.writer,
            metrics=self.metrics,
            extranonces=ExtranoncePool(st.node_id),
            before_reply=self.writer.before_reply,
            clock=clock,
        )
        self.address: tuple[str, int] | None = None
        self.tls_address: tuple[str, int] | None = None  # the stratum+ssl listener, if any
        self.api_addresses: list[tuple[str, int]] = []  # HTTP listeners (API, admin)
        self.api_ctx: ApiContext | None = None  # the API's view, told when the ledger connects
        self.listening = asyncio.Event()  # stratum is bound; `address` is set

    # -- views kept for callers (the CLI's demo, tests) ------------------------------------------

    @property
    def blocks(self) -> list[FoundBlock]:
        return self.submitter.blocks

    @property
    def ledger(self) -> Engine | None:
        return self.scheduler.ledger

    @property
    def ingested_shares(self) -> int:
        return self.scheduler.ingested_shares

    @property
    def token_periods(self) -> list[tuple[int, TokenSettlement]]:
        return self.scheduler.token_periods

    async def server_broadcast(self, job: Job) -> None:
        await self.server.broadcast(job)

    def _statement_commitment(self, commitment: bytes | None, credit: bytes | None) -> None:
        """The ledger's latest token-statement and miner-credit commitments: new jobs'
        coinbases carry them."""
        jobs = self.jobs
        changed = False
        if commitment is not None and commitment != jobs.statement_commitment:
            jobs.statement_commitment, changed = commitment, True
        if credit is not None and credit != jobs.credit_commitment:
            jobs.credit_commitment, changed = credit, True
        if changed:
            self.feed.refresh.set()  # a new job now, so the next block carries them
            log.info(
                "commitments",
                statement=None if commitment is None else commitment.hex(),
                credit=None if credit is None else credit.hex(),
            )

    def _ledger_connected(self, engine: Engine, offload: Offload) -> None:
        if self.api_ctx is not None:
            self.api_ctx.engine, self.api_ctx.offload = engine, offload

    def _metrics_file(self) -> Path | None:
        if self.metrics_dir is None:
            return None
        return self.metrics_dir / f"metrics-node-{self.cfg.stratum.node_id}.json"

    def _peer_metrics(self) -> list[dict[str, Any]]:
        """The other workers' metric states, written in the last minute."""
        own = self._metrics_file()
        if own is None:
            return []
        out = []
        for path in self.metrics_dir.glob("metrics-node-*.json") if self.metrics_dir else []:
            try:
                if path == own or time.time() - path.stat().st_mtime > 60:
                    continue
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # being replaced, or gone: the next scrape reads it
        return out

    async def _check_payout_address(self) -> None:
        """A real node must accept the payout address, or every block it is given would pay
        an address its chain does not know (e.g. a bech32 address on a node without segwit)."""
        if not isinstance(self.bitcoind, RpcBitcoind):
            return
        address = self.cfg.pool.payout_address
        try:
            answer = await self.bitcoind.call("validateaddress", address)
        except BitcoindError as exc:  # a node without the call: say so, do not stop
            log.warning("payout_address_unchecked", address=address, error=str(exc))
            return
        if not isinstance(answer, dict) or answer.get("isvalid") is not True:
            raise StartupError(
                f"bitcoind does not accept the payout address {address!r} (validateaddress: "
                f"{answer!r}): use an address of bitcoind's chain that it can pay (the "
                "regtest node the tests use is a Bitcoin SV build without segwit: no bech32)"
            )

    # -- loops -----------------------------------------------------------------------------------

    def _stream_refusal(self) -> str | None:
        """The share writer asks before each batch: past `[stream] max_lag_s` the shares are
        refused (or, with `on_lag = "warn"`, kept and the suspended promise said once)."""
        assert self.shipper is not None
        sc = self.cfg.stream
        lag = self.shipper.lag_s()
        if lag <= sc.max_lag_s:
            if self._lag_over:
                self._lag_over = False
                log.warning("stream_lag_recovered", lag_s=round(lag, 3))
            return None
        why = (
            f"the stream has not stored this node's records for {lag:.1f} s "
            f"(over [stream] max_lag_s = {sc.max_lag_s:g})"
        )
        if not self._lag_over:
            self._lag_over = True
            if sc.on_lag == "refuse":
                log.error("stream_lag_exceeded", lag_s=round(lag, 3), shares="refused (error 20)")
            else:
                log.error(
                    "stream_host_loss_promise_suspended",
                    lag_s=round(lag, 3),
                    why="[stream] on_lag = warn: shares are answered true but a lost host "
                    "loses those not shipped",
                )
        return why if sc.on_lag == "refuse" else None

    def _stream_metrics(self, now: float) -> None:
        shipper, m = self.shipper, self.metrics
        if shipper is None:
            return
        m.stream_ok = int(shipper.problem is None)
        m.stream_shipped = (shipper.shipped.segment, shipper.shipped.offset)
        m.stream_lag_s = shipper.lag_s(now)
        written = self.sharelog.position
        m.stream_lag_bytes = max(
            0,
            (written.segment - shipper.shipped.segment) * self.cfg.sharelog.segment_bytes
            + written.offset
            - shipper.shipped.offset,
        )
        m.stream_failures = shipper.failures
        m.stream_outages = shipper.outages
        m.stream_rewinds = shipper.rewinds
        m.stream_refused_batches = self.writer.refused_batches
        if shipper.durability is not None:
            m.stream_replicas = shipper.durability.replicas

    async def purge_stream(self) -> None:
        """Drop the stream's whole segments this node's ingest has passed (and no proof
        holds); a failure is said and tried again at the next round."""
        position = self.scheduler.ingest_position
        if self.shipper is None or position is None:
            return
        below = position.segment
        # A pending work proof's segments stay in the stream too (`ShareLog.hold`).
        hold = self.sharelog.hold() if self.sharelog.hold is not None else None
        if hold is not None:
            below = min(below, hold)
        try:
            await self.shipper.purge_below(below)
        except StreamError as exc:
            self.metrics.errors["stream_purge"] += 1
            log.warning("stream_purge_failed", error=str(exc))

    async def housekeep(self, now: float, *, prune: bool) -> None:
        """One round of the daemon's once-a-second chores (`prune`: also delete old share-log
        segments that every consumer has passed)."""
        # A heartbeat (after anything appended outside a reply): an idle node's watermark
        # advances too, so settlement never waits for it.
        self.writer.beat(int(now * 1000))
        await self.server.tick()
        self.jobs.prune(now)
        position = self.scheduler.ingest_position
        if self.shipper is not None and position is not None:  # shipped, too
            position = min(position, self.shipper.shipped, key=lambda p: (p.segment, p.offset))
        if self.leaves is not None and now >= self._leaves_due:
            await self.build_leaves(now)
        if prune and position is not None:
            # Only below the segment ingest has reached: never a record not in the ledger.
            for path in self.sharelog.prune(position.segment, now):
                log.info("sharelog_segment_removed", path=str(path))
            await self.purge_stream()
        self._stream_metrics(now)

    async def build_leaves(self, now: float) -> None:
        """Write the leaf file of every token period that closed (off the event loop)."""
        assert self.leaves is not None
        # Each second (the daemon's clock): a period is built in the first round after the
        # heartbeat that closes it; a round with nothing due returns at once.
        self._leaves_due = now + 1.0
        try:
            built = await asyncio.to_thread(self.leaves.build_due, now)
        except (OSError, ValueError) as exc:  # said, and tried again in a minute
            log.error("work_leaves_failed", error=str(exc))
            self._leaves_due = now + 60.0
            return
        for b in built:
            log.info("work_leaves_built", **b.fields())

    async def _housekeeping(self) -> None:
        last_stats = self.clock()
        last_prune = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = self.clock()
            prune = now - last_prune > 3600 and self.scheduler.ingest_position is not None
            await self.housekeep(now, prune=prune)
            if prune:
                last_prune = now
            own = self._metrics_file()
            if own is not None:
                try:
                    self.metrics.write_state(own)
                except OSError as exc:  # the next second tries again; /metrics says so
                    self.metrics.errors["metrics_state"] += 1
                    log.warning("metrics_state_unwritten", path=str(own), error=str(exc))
            if now - last_stats >= self.cfg.log.stats_interval_s:
                log.info("stats", **self.metrics.snapshot())
                last_stats = now

    def open_sharelog(self) -> None:
        """Open the share log (cutting a torn tail) and key this run's jobs by its start
        number, so no job id of an earlier run is ever valid again."""
        self.sharelog.open()
        self.jobs.start(self.cfg.stratum.node_id, self.sharelog.start_number)

    def _mined_now(self) -> tuple[int, int] | None:
        """The block the current job builds: (height, target bits); None before a job."""
        job = self.jobs.current()
        return None if job is None else (job.template.height, job.template.bits)

    def readiness(self) -> dict[str, str]:
        """What keeps this daemon from serving correctly right now (for /readyz)."""
        problems = {}
        if self.writer.failing is not None or self.sharelog.error is not None:
            why = self.writer.failing or self.sharelog.error
            problems["sharelog"] = f"shares are refused, the share log cannot take them: {why}"
        limit = max(10 * self.cfg.bitcoind.poll_interval_s, 5.0)
        if self.clock() - self.feed.bitcoind_seen > limit:
            problems["bitcoind"] = f"no answer from bitcoind for over {limit:.0f} s"
        if self.shipper is not None and self.shipper.problem is not None:
            problems["stream"] = f"the stream is unreachable: {self.shipper.problem}"
        if self._lag_over and self.cfg.stream.on_lag == "refuse":
            problems["stream_lag"] = "shares are refused: the stream lags past [stream] max_lag_s"
        problems.update(self.scheduler.readiness())
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
            offload=self.scheduler.worker.read if self.scheduler.worker is not None else None,
            network=lambda: views.network(self.jobs.current()),
            peer_metrics=self._peer_metrics,
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
        self.open_sharelog()  # first: its identity is what the node registers with
        if ingests:
            try:
                await self.scheduler.attach()
            except LedgerUnreachable as exc:
                self.scheduler.problem = f"the ledger is not connected: {exc}"
                log.warning("ledger_unavailable", error=str(exc), retry=True)
            except BaseException:
                self.sharelog.close()
                raise
        wait_s = self.cfg.ledger.shutdown_wait_s
        # One budget for the whole stop, from the moment it is asked for: the pass in
        # progress, the last ingest, the stream's last records and the ledger process share
        # `shutdown_wait_s`, so a stalled database can delay the exit by that much and no more.
        deadline: list[float] = []

        def left() -> float:
            return max(0.0, deadline[0] - time.monotonic()) if deadline else wait_s

        try:
            async with asyncio.TaskGroup() as tg:
                poller = tg.create_task(self.feed.run())
                ready = asyncio.create_task(self.feed.ready.wait())
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                if not stop.is_set():
                    await self._check_payout_address()
                    st = self.cfg.stratum
                    self.address = await self.server.start(
                        st.host, st.port, reuse_port=self.reuse_port
                    )
                    if self.tls_context is not None:
                        self.tls_address = await self.server.start(
                            st.tls_host,
                            st.tls_port,
                            reuse_port=self.reuse_port,
                            tls=self.tls_context,
                        )
                    runners = await self._start_api()
                    self.listening.set()
                    _freeze_startup_heap()
                    self.sharelog.start_group_commit(self.cfg.sharelog.fsync_interval_ms / 1000)
                    housekeeping = tg.create_task(self._housekeeping())
                    stopping = asyncio.Event()
                    ledger = tg.create_task(self.scheduler.run(stopping)) if ingests else None
                    shipping = (
                        tg.create_task(self.shipper.run(stopping))
                        if self.shipper is not None
                        else None
                    )
                    await stopped
                    deadline.append(time.monotonic() + wait_s)
                    await self.server.stop(reconnect=True)
                    self.events.close()  # ends every event stream, so cleanup is quick
                    for runner in runners:
                        await runner.cleanup()
                    housekeeping.cancel()
                    stopping.set()
                    if ledger is not None:
                        # A pass in progress may finish; one stuck on the database is left
                        # (its transaction rolls back; the shares are in the share log).
                        done, _ = await asyncio.wait({ledger}, timeout=left())
                        if not done:
                            log.warning("ledger_pass_abandoned", waited_s=wait_s)
                            ledger.cancel()
                    if shipping is not None:
                        shipping.cancel()  # the last records are shipped below
                stopped.cancel()
                poller.cancel()
            await self.submitter.drain(10)
        finally:
            # On every way out (a crash included) miners stop before the share log closes: no
            # share may be validated against a closed log.
            await self.server.stop(reconnect=True)
            with contextlib.suppress(ShareLogError):
                self.sharelog.sync()  # clears an fsync refusal if the disk works again
            # The last heartbeat: this node stopped cleanly, settlement need not wait for it.
            self.writer.beat(int(self.clock() * 1000), final=not self.writer.held_blocks)
            if self.writer.held_blocks:  # the operator must see these: blocks on the chain
                log.error("block_records_unwritten", records=self.writer.held_records())
            self.sharelog.close()
            if self.shipper is not None:  # the final heartbeat too, so others need not wait
                try:
                    await asyncio.wait_for(self.shipper.ship_once(), left())
                except Exception as exc:  # the stream catches up from the log at next start
                    self.metrics.errors["stream_final_ship"] += 1
                    log.warning("stream_final_ship_failed", error=repr(exc))
                await self.shipper.close()
            await self.scheduler.close(left())
            await self.bitcoind.close()
            log.info("daemon_stopped", **self.metrics.snapshot())
