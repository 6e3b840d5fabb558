"""The job feed: polls bitcoind for its tip and templates and publishes a new job when the tip
changes, when `refresh_interval_s` passes, or at once when asked (a block was found).
Imports bitcoind client and the job manager; Stratum is reached through `publish`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from poold.bitcoind.client import Bitcoind, BitcoindError
from poold.chain.targets import network_difficulty
from poold.config import BitcoindConfig
from poold.jobs.job import Job
from poold.jobs.manager import JobManager
from poold.jobs.template import TemplateError, parse_template
from poold.metrics import Metrics

log = structlog.get_logger(__name__)


class JobFeed:
    def __init__(
        self,
        bitcoind: Bitcoind,
        jobs: JobManager,
        publish: Callable[[Job], Awaitable[None]],
        metrics: Metrics,
        cfg: BitcoindConfig,
        clock: Callable[[], float],
    ) -> None:
        self.bitcoind, self.jobs, self.publish, self.metrics = bitcoind, jobs, publish, metrics
        self.cfg, self.clock = cfg, clock
        self.ready = asyncio.Event()  # a first job exists
        self.refresh = asyncio.Event()  # poll now
        self.bitcoind_seen = 0.0  # clock time of the last successful poll of bitcoind
        self._last_tip: str | None = None
        self._last_job = 0.0

    async def _update_job(self) -> bool:
        raw = await self.bitcoind.get_template()
        template = parse_template(raw)
        job = self.jobs.new_job(template, self.clock())
        self.metrics.jobs += 1
        self.metrics.chain_height = job.height
        self.metrics.chain_difficulty = float(network_difficulty(job.bits))
        await self.publish(job)
        log.debug(
            "job_published",
            job=job.job_id,
            height=template.height,
            clean=job.clean,
            txs=len(template.transactions),
        )
        return job.clean

    async def poll_once(self) -> bool:
        """Ask bitcoind for its tip; publish a new job when the tip changed, the refresh
        interval passed or a refresh was asked for. False when bitcoind could not be asked
        (or its template was refused): the caller backs off."""
        try:
            tip = await self.bitcoind.best_block_hash()
            now = self.clock()
            due = now - self._last_job >= self.cfg.refresh_interval_s
            if tip != self._last_tip or due or self.refresh.is_set():
                self.refresh.clear()
                await self._update_job()
                self._last_tip, self._last_job = tip, now
                self.ready.set()
            self.bitcoind_seen = now
            return True
        except BitcoindError as exc:
            log.warning("bitcoind_unavailable", error=str(exc))
        except TemplateError as exc:
            log.error("template_rejected", error=str(exc))
        return False

    async def run(self) -> None:
        """Poll every `poll_interval_s` (at once when asked), backing off to 10 s while
        bitcoind does not answer."""
        backoff = self.cfg.poll_interval_s
        while True:
            ok = await self.poll_once()
            backoff = self.cfg.poll_interval_s if ok else min(backoff * 2, 10.0)
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 a cancel that lands as the wait
            # times out can come back as TimeoutError, which this loop would swallow and poll
            # on for ever (a daemon stop hung on it).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self.refresh.wait()
