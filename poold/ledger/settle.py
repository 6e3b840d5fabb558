"""Settlement of found blocks (PPLNS, PROP, SOLO; FPPS blocks) and the journal check.

A block is settled once: the `settlements` row keyed `<scheme>:<block hash>` is inserted in the
same transaction as its journal entry, so running settlement again changes nothing. The split
itself is `accounting.pplns_split` over the slices (each slice is a row of summed difficulty;
one straddling the window edge is cut exactly). Postings (satoshis, debits positive), one
*pending* entry (poold.ledger.journal: posted at maturity, voided on orphan):
  + reward  pool:wallet                 the block's coinbase, spendable once mature
  - credit  miner:<account>             what each miner is owed once it matures
  - fee     pool:fee
  - rest    pool:unallocated            what an unfilled window leaves
(FPPS blocks: see `settle_block`; FPPS share credits: poold/ledger/fpps.py.)
Maturity and orphans resolve it (`ledger.maturity`); payouts pay posted balances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from accounting import pplns_split, prop_split, solo_split
from poold.ledger import credit_proofs, journal
from poold.ledger.credit_proofs import block_lines, commit_credits, exact
from poold.ledger.db import LedgerError, fenced, ledger_entry
from poold.ledger.journal import AlreadyPosted, post
from poold.ledger.models import (
    Account,
    Block,
    IngestCheckpoint,
    JournalEntry,
    JournalLine,
    Settlement,
    SettlementExclusion,
    ShareSlice,
    Worker,
)
from poold.ledger.slices import sums as slice_sums
from poold.ledger.slices.window import minute_of, round_effort, round_shares, window

#: Settlement key prefix of a found block, by payout scheme.
BLOCK_KEYS = {"pplns": "pplns:", "fpps": "fppsblock:", "prop": "prop:", "solo": "solo:"}
#: Journal entry kinds that credit miners for a found block (their credits mature with it).
CREDIT_KINDS = ("pplns_block", "prop_block", "solo_block")


@dataclass(frozen=True)
class Settled:
    block_hash: str
    credits: dict[str, int]
    pool_fee_sat: int
    unallocated_sat: int


@ledger_entry
def settle_block(
    engine: Engine,
    block_hash: str,
    *,
    factor: Fraction = Fraction(2),
    pool_fee: Fraction = Fraction(0),
    scheme: str = "pplns",
    excluded_nodes: Sequence[int] = (),
) -> Settled | None:
    """Settle one accepted block; None when it was already settled (nothing changes).
    `excluded_nodes`: nodes the gate gave up waiting for; what of each was in the ledger is
    recorded with the settlement (`SettlementExclusion`), so checks know what it counted.

    PPLNS splits the window (`window.window`), PROP the round since the previous accepted
    block (`window.round_shares`), SOLO gives the finder's account reward - fee; each posts
    the lines above. Under FPPS the miners were paid per share already: the block is the
    pool's own revenue (+ reward pool:wallet, - reward pool:blocks), pending until it
    matures the same way."""
    key = f"{BLOCK_KEYS[scheme]}{block_hash}"
    try:
        with fenced(engine) as conn:
            if conn.execute(select(Settlement.id).where(Settlement.key == key)).first():
                return None
            block = conn.execute(
                select(
                    Block.reward_sat,
                    Block.accepted,
                    Block.found_ms,
                    Account.name,
                    Block.height,
                    Block.id,
                )
                .join(Account, Block.account_id == Account.id)
                .where(Block.hash == block_hash)
            ).first()
            if block is None:
                raise LedgerError(f"no block {block_hash} in the ledger")
            reward_sat, accepted, found_ms, finder, height, block_id = block
            if not accepted:
                raise LedgerError(f"block {block_hash} was rejected by bitcoind: nothing to settle")
            # First, before the window is read: what of each excluded node the ledger holds.
            for node_id in excluded_nodes:
                _record_exclusion(conn, key, node_id)
            if scheme == "prop":
                waiting = _unknown_before(conn, found_ms)
                if waiting is not None:
                    raise LedgerError(
                        f"the PROP round of {block_hash} is not known yet: block {waiting} "
                        "before it has no answer from bitcoind"
                    )
            effort = round_effort(conn, found_ms, block_id)
            conn.execute(
                update(Block)
                .where(Block.hash == block_hash)
                .values(effort_num=effort.numerator, effort_den=effort.denominator)
            )
            if scheme == "fpps":
                credits: dict[str, int] = {}
                posts = [(journal.pool("blocks"), -reward_sat)]
                fee_sat = unallocated_sat = 0
            else:
                if scheme == "solo":
                    split = solo_split(reward_sat, finder, pool_fee=pool_fee)
                    scores, total = {finder: Fraction(1)}, Fraction(1)
                elif scheme == "prop":
                    split = prop_split(reward_sat, round_shares(conn, found_ms), pool_fee=pool_fee)
                    # PROP's round counts whole minutes (its score total, for the proofs)
                    scores, total = split.scores, sum(split.scores.values(), Fraction(0))
                else:
                    split = pplns_split(
                        reward_sat, window(conn, found_ms, factor), factor=factor, pool_fee=pool_fee
                    )
                    scores, total = split.scores, factor
                credits = dict(split.credits)
                fee_sat, unallocated_sat = split.pool_fee_sat, split.unallocated_sat
                commit_credits(
                    conn,
                    key=key,
                    kind=f"{scheme}_block",
                    reference=block_hash,
                    inputs={
                        "block_hash": block_hash,
                        "height": int(height),
                        "reward_sat": int(reward_sat),
                        "pool_fee": exact(Fraction(pool_fee)),
                        "fee_sat": fee_sat,
                        "unallocated_sat": unallocated_sat,
                        "score_total": exact(total),
                        # When the block was found: how old the settlement is, for verifiers
                        # that require an anchor once its grace has passed.
                        "found_s": int(found_ms) // 1000,
                    },
                    lines=block_lines(credits, scores),
                )
                posts = [(journal.miner(a), -c) for a, c in sorted(credits.items()) if c]
                posts += [
                    (journal.pool("fee"), -fee_sat),
                    (journal.pool("unallocated"), -unallocated_sat),
                ]
            post(  # pending until the coinbase matures (or voided if the block is orphaned)
                conn,
                kind=f"{scheme}_block",
                reference=block_hash,
                key=key,
                lines=[(journal.pool("wallet"), reward_sat), *posts],
                phase="pending",
            )
            return Settled(block_hash, credits, fee_sat, unallocated_sat)
    except AlreadyPosted:
        return None  # another settler won the race on the unique key: already settled
    except SQLAlchemyError as exc:
        raise LedgerError(
            f"settlement of {block_hash} failed, nothing was written: {exc}"
        ) from None


def _unknown_before(conn: Connection, found_ms: int) -> str | None:
    """A block found in an earlier minute whose submission got no answer yet: until block
    following resolves it, where the PROP round starts is not known."""
    found: str | None = conn.execute(
        select(Block.hash)
        .where(Block.status == "unknown", Block.found_ms < minute_of(found_ms) * 1000)
        .limit(1)
    ).scalar()
    return found


def _record_exclusion(conn: Connection, key: str, node_id: int) -> None:
    cp = conn.execute(
        select(
            IngestCheckpoint.segment, IngestCheckpoint.offset, IngestCheckpoint.through_ms
        ).where(IngestCheckpoint.node_id == node_id)
    ).first()
    last = conn.execute(
        select(func.coalesce(func.max(ShareSlice.id), 0)).where(ShareSlice.node_id == node_id)
    ).scalar()
    segment, offset, through = cp if cp is not None else (1, 0, 0)
    conn.execute(
        insert(SettlementExclusion).values(
            key=key,
            node_id=node_id,
            through_ms=through,
            slice_id=int(last or 0),
            segment=segment,
            offset=offset,
        )
    )


def exclusions(conn: Connection, key: str) -> dict[int, tuple[int, int, int]]:
    """The nodes settlement `key` was made without: node -> (last slice id counted, log
    segment, offset ingested then)."""
    return {
        int(n): (int(sid), int(seg), int(off))
        for n, sid, seg, off in conn.execute(
            select(
                SettlementExclusion.node_id,
                SettlementExclusion.slice_id,
                SettlementExclusion.segment,
                SettlementExclusion.offset,
            ).where(SettlementExclusion.key == key)
        )
    }


@ledger_entry
def settle_pending(
    engine: Engine,
    *,
    factor: Fraction = Fraction(2),
    pool_fee: Fraction = Fraction(0),
    scheme: str = "pplns",
    found_before_ms: int | None = None,
    excluded_nodes: Sequence[int] = (),
) -> list[Settled]:
    """Settle every accepted block that has no settlement yet, oldest first; with
    `found_before_ms`, only blocks found before it (the daemon passes the start of the current
    minute: the window counts whole minutes, so a block waits until its minute is closed and
    ingested). Under PROP a block waits while a block of an earlier minute has no answer
    from bitcoind (its round's start is not known yet)."""
    query = select(Block.hash).where(Block.accepted.is_(True)).order_by(Block.found_ms)
    if found_before_ms is not None:
        query = query.where(Block.found_ms < found_before_ms)
    with engine.connect() as conn:
        if scheme == "prop":
            first_unknown = conn.execute(
                select(func.min(Block.found_ms)).where(Block.status == "unknown")
            ).scalar()
            if first_unknown is not None:
                query = query.where(Block.found_ms < (minute_of(int(first_unknown)) + 60) * 1000)
        hashes = conn.execute(query).scalars().all()
    out = []
    for h in hashes:
        done = settle_block(
            engine,
            h,
            factor=factor,
            pool_fee=pool_fee,
            scheme=scheme,
            excluded_nodes=excluded_nodes,
        )
        if done is not None:
            out.append(done)
    return out


@ledger_entry
def verify(engine: Engine) -> list[str]:
    """Problems found in the ledger (empty = it balances): every entry sums to zero, so the
    whole journal does, every settlement points at an entry, and every share slice names a
    worker of its account (slices carry no foreign keys: see migration 0005), the slice
    sums add up to the slices they count, and the miners' credit chain and roots match the
    journal (`credit_proofs.check`)."""
    problems = []
    with engine.connect() as conn:
        for entry_id, total in conn.execute(
            select(JournalLine.entry_id, func.sum(JournalLine.amount_sat))
            .group_by(JournalLine.entry_id)
            .having(func.sum(JournalLine.amount_sat) != 0)
        ):
            problems.append(f"journal entry {entry_id} does not balance: sum {total} sat")
        grand = conn.execute(select(func.coalesce(func.sum(JournalLine.amount_sat), 0))).scalar()
        if grand != 0:
            problems.append(f"the journal does not sum to zero: {grand} sat")
        orphans = conn.execute(
            select(func.count())
            .select_from(Settlement)
            .outerjoin(JournalEntry, Settlement.entry_id == JournalEntry.id)
            .where(JournalEntry.id.is_(None))
        ).scalar()
        if orphans:
            problems.append(f"{orphans} settlements point at no journal entry")
        target = aliased(JournalEntry)
        for entry_id, phase, target_phase in conn.execute(
            select(JournalEntry.id, JournalEntry.phase, target.phase)
            .outerjoin(target, target.id == JournalEntry.pending_id)
            .where(JournalEntry.phase.in_(["post", "void"]))
        ):
            if target_phase != "pending":
                problems.append(f"journal entry {entry_id} ({phase}) resolves no pending entry")
        resolving_lines = conn.execute(
            select(func.count())
            .select_from(JournalLine)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalEntry.phase.in_(["post", "void"]))
        ).scalar()
        if resolving_lines:
            problems.append(f"{resolving_lines} lines on entries that only post or void")
        strays = conn.execute(
            select(func.count())
            .select_from(ShareSlice)
            .outerjoin(
                Worker,
                (Worker.id == ShareSlice.worker_id) & (Worker.account_id == ShareSlice.account_id),
            )
            .where(Worker.id.is_(None))
        ).scalar()
        if strays:
            problems.append(f"{strays} share slices name no worker of their account")
        problems += slice_sums.check(conn)
        problems += credit_proofs.check(conn)
    return problems


@ledger_entry
def balances(engine: Engine, phase: journal.Phase = "posted") -> dict[str, int]:
    """Each ledger account's balance, derived from the journal (satoshis): what counts now
    (`posted`), or what waits for blocks to mature (`pending`)."""
    with engine.connect() as conn:
        return journal.balances(conn, phase)
