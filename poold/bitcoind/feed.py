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

    async def run(self) -> None:
        cfg = self.cfg
        last_tip: str | None = None
        last_job = 0.0
        backoff = cfg.poll_interval_s
        while True:
            try:
                tip = await self.bitcoind.best_block_hash()
                now = self.clock()
                due = now - last_job >= cfg.refresh_interval_s
                if tip != last_tip or due or self.refresh.is_set():
                    self.refresh.clear()
                    await self._update_job()
                    last_tip, last_job = tip, now
                    self.ready.set()
                self.bitcoind_seen = now
                backoff = cfg.poll_interval_s
            except BitcoindError as exc:
                log.warning("bitcoind_unavailable", error=str(exc), retry_s=backoff)
                backoff = min(backoff * 2, 10.0)
            except TemplateError as exc:
                log.error("template_rejected", error=str(exc))
                backoff = min(backoff * 2, 10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.refresh.wait(), backoff)
