"""The work a share log holds, share by share: every accepted share rebuilt into its 80-byte
header from the log alone (its job's record and its own fields), the ground the work proof
stands on. A share whose job record is missing, or whose rebuilt header does not hash to the
hash it logged, is a `WorkError` naming it. Records from before header hashes (no hash, no
job records) are skipped: they cannot be proven. Imports the share log and its format only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from poold.shares.format import (
    JobRecord,
    ShareRecord,
    decode_payload,
    decode_share,
    share_header_hash,
)
from poold.shares.log import SHARE_PREFIX, LogPosition, frames, list_segments, segment_path


class WorkError(ValueError):
    """A share the log cannot rebuild into the header it logged."""


@dataclass(frozen=True, slots=True)
class ProvenShare:
    """One accepted share with its job and rebuilt header (`hash`: its sha256d, as computed)."""

    position: LogPosition
    share: ShareRecord
    job: JobRecord
    header: bytes
    hash: bytes


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def proven_shares(directory: Path) -> Iterator[ProvenShare]:
    """Every share of the log that carries its header hash, rebuilt and checked, in log order.
    A job record seen once serves every later share of its key (the first record of a key
    wins; a node logs a job at most once per key, or again with the same content)."""
    jobs: dict[str, JobRecord] = {}
    for seq in list_segments(directory):
        data = segment_path(directory, seq).read_bytes()
        for start, _end, payload in frames(data):
            if payload[:1] == SHARE_PREFIX:
                if share_header_hash(payload) is None:
                    continue
                share = decode_share(payload)
                yield prove(LogPosition(seq, start), share, jobs.get(share.job))
            elif payload.startswith(b'{"t":"job"'):
                rec = decode_payload(payload)
                if rec is not None:
                    job = JobRecord.from_json(rec)
                    jobs.setdefault(job.key, job)


def prove(position: LogPosition, share: ShareRecord, job: JobRecord | None) -> ProvenShare:
    """Rebuild one share's header; `WorkError` naming the share when it cannot be."""
    where = f"share at {position.segment}:{position.offset} ({share.account}.{share.worker})"
    if share.hash is None:
        raise WorkError(f"{where} carries no header hash")
    if job is None:
        raise WorkError(f"{where}: no record of its job {share.job!r} precedes it")
    header = job.share_header(share)
    digest = sha256d(header)
    if digest != share.hash:
        raise WorkError(f"{where}: its rebuilt header does not hash to the hash it logged")
    return ProvenShare(position, share, job, header, digest)
