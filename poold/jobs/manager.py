"""The job registry: turns templates into jobs, decides clean_jobs, and expires stale work.

A job stays valid until a new block supersedes it (plus `stale_grace_s`), or until
`job_retain_s` after a newer job on the same block replaced it; shares for anything else are
stale (21). Every job has an 8-byte key, unique across restarts and nodes: node id (1 byte),
the share log's start number (3 bytes, `shares.log.next_start`), a counter (4 bytes). The
key is the job's Stratum id (in hex) and is carried in its coinbase, so no job id is ever
reused after a crash and no work is valid for two jobs. Pure: time is passed in; no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from poold.jobs.coinbase import build_coinbase
from poold.jobs.job import Job
from poold.jobs.template import BlockTemplate


@dataclass(frozen=True, slots=True)
class CoinbaseSpec:
    payout_script: bytes
    tag: bytes
    extranonce1_size: int
    extranonce2_size: int


class JobManager:
    def __init__(
        self,
        spec: CoinbaseSpec,
        *,
        stale_grace_s: float = 5.0,
        job_retain_s: float = 120.0,
        max_jobs: int = 256,
    ) -> None:
        self.spec = spec
        self.stale_grace_s = stale_grace_s
        self.job_retain_s = job_retain_s
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._expires: dict[str, float] = {}
        self._current: Job | None = None
        self._counter = 0
        self._key_prefix = bytes(4)  # node id and start number (`start`)
        # The latest token-statement commitment: every new job's coinbase carries it.
        self.statement_commitment: bytes | None = None
        # The latest miners' credit commitment (PPLNS blocks, FPPS bookings): likewise.
        self.credit_commitment: bytes | None = None

    def start(self, node_id: int, start_number: int) -> None:
        """Key this run's jobs by the node and the share log's start number."""
        if not 0 <= node_id < 256:
            raise ValueError(f"node id must be 0..255, got {node_id}")
        self._key_prefix = bytes([node_id]) + (start_number % (1 << 24)).to_bytes(3, "big")

    def current(self) -> Job | None:
        return self._current

    def get(self, job_id: str, now: float) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        expires = self._expires.get(job_id)
        if expires is not None and now > expires:
            return None
        return job

    def __len__(self) -> int:
        return len(self._jobs)

    def new_job(self, template: BlockTemplate, now: float) -> Job:
        """Build the job for `template`; clean when it builds on a different block."""
        prev = self._current
        clean = prev is None or prev.template.prev_hash != template.prev_hash
        self._counter += 1
        key = self._key_prefix + (self._counter % (1 << 32)).to_bytes(4, "big")
        spec = self.spec
        coinbase = build_coinbase(
            height=template.height,
            value_sat=template.coinbase_value_sat,
            payout_script=spec.payout_script,
            tag=spec.tag,
            extranonce_size=spec.extranonce1_size + spec.extranonce2_size,
            witness_commitment=template.witness_commitment,
            flags=template.coinbase_flags,
            statement_commitment=self.statement_commitment,
            credit_commitment=self.credit_commitment,
            job_key=key,
        )
        job = Job(
            job_id=key.hex(),
            template=template,
            coinbase=coinbase,
            extranonce1_size=spec.extranonce1_size,
            extranonce2_size=spec.extranonce2_size,
            clean=clean,
            ntime=max(template.curtime, template.mintime),
            statement_commitment=self.statement_commitment,
            credit_commitment=self.credit_commitment,
        )
        for job_id, old in self._jobs.items():
            if job_id in self._expires:
                continue
            if clean:
                self._expires[job_id] = now + self.stale_grace_s
            elif old is prev:
                self._expires[job_id] = now + self.job_retain_s
        self._jobs[job.job_id] = job
        self._current = job
        self.prune(now)
        return job

    def prune(self, now: float) -> None:
        """Forget expired jobs (and their duplicate sets); keep at most `max_jobs`."""
        for job_id in [j for j, t in self._expires.items() if now > t]:
            self._jobs.pop(job_id, None)
            del self._expires[job_id]
        while len(self._jobs) > self.max_jobs:
            job_id, _ = self._jobs.popitem(last=False)
            self._expires.pop(job_id, None)
