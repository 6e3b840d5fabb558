"""Found blocks: submitted to bitcoind at once, recorded in the share log with bitcoind's
answer, announced as events. Imports bitcoind client, the share writer and the event hub;
never the ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from poold.bitcoind.client import Bitcoind, BitcoindError, BitcoindRefused
from poold.events import EventHub
from poold.metrics import Metrics
from poold.shares.accepted import AcceptedShare
from poold.shares.format import BlockRecord
from poold.shares.writer import ShareWriter

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FoundBlock:
    height: int
    hash_hex: str
    accepted: bool
    reason: str | None
    account: str
    worker: str
    commitment: str | None = None  # the statement commitment its coinbase carries (hex)
    credit_commitment: str | None = None  # the miners' credit commitment it carries (hex)


#: BIP22 answers that are not a refusal: bitcoind has the block already (our earlier
#: submission of it, whose answer was lost), so block following must look it up on the chain.
#: ("inconclusive", a valid block off the best chain, stays a refusal: a sibling of our own
#: block at the same height, which a reorg would rarely make ours.)
NOT_REFUSALS = frozenset({"duplicate"})


async def submit_outcome(bitcoind: Bitcoind, block_hex: str) -> tuple[bool | None, str | None]:
    """Submit a found block: (True, None) when bitcoind took it, (False, reason) when it
    refused, (None, why) when it did not answer or answered that it has the block already (it
    may be on the chain: block following asks the chain later)."""
    try:
        reason = await bitcoind.submit_block(block_hex)
    except BitcoindRefused as exc:  # an answer: bitcoind did not take it
        return False, f"submit refused: {exc}"
    except BitcoindError as exc:  # no answer
        return None, f"submit failed: {exc}"
    if reason in NOT_REFUSALS:
        return None, reason
    return reason is None, reason


def block_record(
    share: AcceptedShare, accepted: bool | None, reason: str | None, ts_ms: int, node_id: int
) -> BlockRecord:
    """The share-log record of a block `share` found, with bitcoind's answer: accepted, or
    refused for `reason`, or None when the submission got no answer (bitcoind may have taken
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
        commitment=_hex(share.job.statement_commitment),
        credit_commitment=_hex(share.job.credit_commitment),
    )


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


class BlockSubmitter:
    """Submits each found block in a task of its own and records the outcome after the
    finding share (`ShareWriter.record_block`); `on_found` asks for a new job at once."""

    def __init__(
        self,
        bitcoind: Bitcoind,
        writer: ShareWriter,
        metrics: Metrics,
        events: EventHub,
        *,
        node_id: int,
        clock: Callable[[], float],
        on_found: Callable[[], None],
    ) -> None:
        self.bitcoind, self.writer, self.metrics, self.events = bitcoind, writer, metrics, events
        self.node_id, self.clock, self.on_found = node_id, clock, on_found
        self.blocks: list[FoundBlock] = []  # every block this process found, in order
        self._in_flight: dict[asyncio.Task[None], int] = {}  # submission -> found at (ms)

    def submit_soon(self, share: AcceptedShare, block_hex: str) -> None:
        """Submit in a task of its own: the share's reply does not wait for bitcoind."""
        # Found when the finding share was: a slow submit must not move the window's end.
        found_ms = int(share.time * 1000)
        task = asyncio.get_running_loop().create_task(self._submit(share, block_hex, found_ms))
        self._in_flight[task] = found_ms
        task.add_done_callback(self._in_flight.pop)

    def oldest_unrecorded_ms(self) -> int | None:
        """When the oldest block whose record is not in the share log yet was found: its
        submission is in flight, or the log refused the record. A settlement that depends on
        every earlier block (PROP's round) must not pass it."""
        times = [*self._in_flight.values()]
        held = self.writer.oldest_held_ms()
        if held is not None:
            times.append(held)
        return min(times, default=None)

    async def _submit(self, share: AcceptedShare, block_hex: str, found_ms: int) -> None:
        height = share.job.template.height
        hash_hex = share.verdict.block_hash_hex
        outcome, reason = await submit_outcome(self.bitcoind, block_hex)
        accepted = outcome is True
        if accepted:
            self.metrics.blocks_accepted += 1
        else:
            self.metrics.blocks_rejected += 1
        self.writer.record_block(block_record(share, outcome, reason, found_ms, self.node_id))
        self.writer.flush()  # after the finding share's record; held if the log fails
        self.blocks.append(
            FoundBlock(
                height,
                hash_hex,
                accepted,
                reason,
                share.account,
                share.worker,
                _hex(share.job.statement_commitment),
                _hex(share.job.credit_commitment),
            )
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
        self.on_found()

    def abandon(self) -> None:
        """Drop every submission in flight, answered or not (the fault simulator's kill -9:
        their records die with the process)."""
        for task in list(self._in_flight):
            task.cancel()  # its done-callback drops it from `_in_flight`

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for submissions still in flight."""
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=timeout_s)
