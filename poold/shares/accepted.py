"""An accepted share as it travels from a Stratum session to the share writer, and the two
seams it crosses: the `ShareSink` a session hands it to, and the `ShareOrigin` (the session)
that still holds its unsent `true` reply. Owning them here lets `shares` sit below `stratum`:
the writer never imports a session. Must not import asyncio, the Stratum side or the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from poold.jobs.job import Job
from poold.shares.validate import Accepted


class ShareOrigin(Protocol):
    """Where an accepted share came from: its miner's agent, and its reply to take back."""

    agent: str

    def revoke(self, share: AcceptedShare, reason: str) -> None:
        """The share log could not take `share`: its `true` (still unsent) becomes an error."""
        ...


@dataclass(slots=True)  # not frozen: one per accepted share on the hot path
class AcceptedShare:
    account: str
    worker: str
    job: Job
    difficulty: Fraction  # credited share difficulty
    extranonce1: bytes
    extranonce2: bytes
    ntime: int
    nonce: int
    verdict: Accepted
    time: float
    peer: str
    # Where its `true` reply waits, unsent, until the share log has the record: a share whose
    # record cannot be written has that reply replaced by an error (`ShareOrigin.revoke`).
    session: ShareOrigin
    reply_index: int
    req_id: int | str | None


class ShareSink(Protocol):
    """What a session hands accepted shares to (the share writer)."""

    def share_accepted(self, share: AcceptedShare) -> None: ...
