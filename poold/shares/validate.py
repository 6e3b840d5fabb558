"""Share validation: one pure verdict per submission, exactly as the chain would judge the header.

Never asserts on miner input; every rejection is a `Rejected` with a Stratum code and a reason.
Must not import asyncio, read clocks (time comes in as `now`) or touch storage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from poold.chain.merkle import sha256d
from poold.jobs.job import Job

MAX_FUTURE_NTIME_S = 7200


class Reject(enum.IntEnum):
    """Stratum V1 error codes (de-facto convention)."""

    OTHER = 20
    STALE = 21  # "job not found"
    DUPLICATE = 22
    LOW_DIFFICULTY = 23
    UNAUTHORIZED = 24
    NOT_SUBSCRIBED = 25


@dataclass(frozen=True, slots=True)
class Rejected:
    code: Reject
    reason: str

    @property
    def label(self) -> str:
        return self.code.name.lower()


@dataclass(slots=True)  # not frozen: one per accepted share on the hot path
class Accepted:
    header: bytes
    hash_int: int  # header hash as a little-endian integer (what is compared with targets)
    version: int  # the full header version after rolling
    is_block: bool

    @property
    def block_hash_hex(self) -> str:
        return self.hash_int.to_bytes(32, "big").hex()


def validate_share(
    job: Job | None,
    extranonce1: bytes,
    extranonce2: bytes,
    ntime: int,
    nonce: int,
    version_bits: int | None,
    version_mask: int,
    share_target: int,
    now: int,
    middle: bytes | None = None,
) -> Accepted | Rejected:
    """Judge one `mining.submit`. On acceptance the duplicate key is recorded on the job.

    `middle` is `job.header_middle(extranonce1, extranonce2)` when the caller kept it from an
    earlier share (same job and extranonces); None computes it."""
    if job is None:
        return Rejected(Reject.STALE, "job not found")
    if len(extranonce2) != job.extranonce2_size:
        return Rejected(
            Reject.OTHER,
            f"extranonce2 must be {job.extranonce2_size} bytes, got {len(extranonce2)}",
        )
    if ntime < job.mintime:
        return Rejected(Reject.OTHER, "ntime too old")
    if ntime > now + MAX_FUTURE_NTIME_S:
        return Rejected(Reject.OTHER, "ntime too new")
    version = job.version
    if version_bits is not None:
        if version_bits & ~version_mask:
            return Rejected(Reject.OTHER, "version bits outside the negotiated mask")
        version = (version & ~version_mask) | version_bits
    if middle is None:
        middle = job.header_middle(extranonce1, extranonce2)
    header = job.header_from(middle, ntime, nonce, version)
    hash_int = int.from_bytes(sha256d(header), "little")
    if hash_int > share_target:
        return Rejected(Reject.LOW_DIFFICULTY, "low difficulty share")
    key = (extranonce1, extranonce2, ntime, nonce, version)
    if key in job.seen:
        return Rejected(Reject.DUPLICATE, "duplicate share")
    job.seen.add(key)
    return Accepted(header, hash_int, version, hash_int <= job.network_target)
